"""Class and file names from data never pick an output path, and never run as spreadsheet formulas (issue 21)."""

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from artextract.core.safe_text import FORMULA_STARTS, slug

# OWASP's CSV injection payloads, one per leading character, and path-like names.
FORMULAS = ["=1+2", "+1+2", "-1+2", "@SUM(1+2)", "\t=1+2", "\r=1+2", '=HYPERLINK("http://x.invalid","y")']
PATHS = ["../../../escaped", "/tmp/artextract-escaped", "a/b/c", "..", ".hidden", "", "名前"]


def _with_classes(model_file, out, rename) -> None:
    with safe_open(str(model_file), framework="pt") as handle:
        metadata = dict(handle.metadata())
    classes = json.loads(metadata["classes"])
    metadata["classes"] = json.dumps({task: rename(task, names) for task, names in classes.items()})
    save_file(load_file(str(model_file)), str(out), metadata=metadata)


@pytest.mark.parametrize("name", PATHS)
def test_slug_is_one_safe_file_name_part(name):
    part = slug(name)
    assert part and "/" not in part and "\\" not in part and not part.startswith(".")
    assert all(c.isascii() and (c.isalnum() or c in "._-") for c in part)


def test_predict_cam_writes_only_inside_its_folder_whatever_the_class_names(run_cli, evaluated_run, tmp_path):
    hostile = tmp_path / "hostile.safetensors"
    names = PATHS + FORMULAS

    _with_classes(evaluated_run / "model.safetensors", hostile,
                  lambda task, classes: [names[i % len(names)] for i in range(len(classes))])
    image = tmp_path / "painting.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(image)
    cams = tmp_path / "deep" / "deeper" / "cams"
    before = set(tmp_path.rglob("*"))
    result = run_cli("predict", "--model", hostile, image, "--cam", cams)
    assert result.code == 0, result.stderr
    written = {path for path in set(tmp_path.rglob("*")) - before if path.is_file()}
    assert written and all(path.parent == cams and path.suffix == ".png" for path in written), sorted(written)
    assert not Path("/tmp/artextract-escaped.png").exists()


def _is_number(cell: str) -> bool:
    try:
        float(cell)
        return True
    except ValueError:
        return False


def _cells(path):
    """Every text cell of a CSV file as a spreadsheet reads it (numbers such as -0.12 are numbers, not formulas)."""
    with open(path, newline="", encoding="utf-8") as handle:
        return [cell for row in csv.reader(handle) for cell in row if not _is_number(cell)]


@pytest.mark.filterwarnings("ignore:Glyph:UserWarning")  # matplotlib has no glyph for a tab in a class name
def test_no_csv_output_holds_a_formula(run_cli, evaluated_run, tmp_path):
    out = tmp_path / "eval"
    shutil.copytree(evaluated_run / "eval", out, ignore=shutil.ignore_patterns(".artextract.lock"))
    classes = json.loads((out / "classes.json").read_text())
    classes = {task: [FORMULAS[i % len(FORMULAS)] + f"{i}" for i in range(len(names))]
               for task, names in classes.items()}
    (out / "classes.json").write_text(json.dumps(classes))
    predictions = pd.read_parquet(out / "predictions.parquet")
    predictions["path"] = [FORMULAS[i % len(FORMULAS)] + p for i, p in enumerate(predictions["path"])]
    predictions.to_parquet(out / "predictions.parquet", index=False)
    result = run_cli("evaluate", "--run", evaluated_run, "--out", out, "--from-predictions")
    assert result.code == 0, result.stderr
    written = sorted(out.glob("*.csv"))
    assert any(p.name == "outliers.csv" for p in written) and any(p.name.startswith("confusion_") for p in written)
    for path in written:
        bad = [cell for cell in _cells(path) if cell.startswith(FORMULA_STARTS)]
        assert not bad, (path.name, bad[:3])
    outliers = pd.read_csv(out / "outliers.csv")
    assert outliers["path"].str.startswith("'=").any()  # kept, shown as text

    hostile = tmp_path / "hostile.safetensors"
    _with_classes(evaluated_run / "model.safetensors", hostile, lambda task, names: classes[task])
    image = tmp_path / "=cmd.png"
    Image.fromarray(np.zeros((64, 64, 3), dtype=np.uint8)).save(image)
    table = tmp_path / "predictions.csv"
    assert run_cli("predict", "--model", hostile, image, "--output", table).code == 0
    cells = _cells(table)
    assert not [cell for cell in cells if cell.startswith(FORMULA_STARTS)]
    assert any(cell.startswith("'=") for cell in cells)


def test_prepare_names_path_like_class_names_and_keeps_them_as_labels(make_synth, tmp_path, caplog):
    from artextract.config import PrepareConfig
    from artextract.stages.prepare import prepare_dataset

    synth = make_synth(tmp_path / "synth", artists=3, per_artist=6, size=40)
    class_file = synth / "csv" / "artist_class"
    lines = class_file.read_text().splitlines()
    hostile = ["../../../escaped", "a/b"]
    lines[:2] = [f"{i} {name}" for i, name in enumerate(hostile)]
    class_file.write_text("\n".join(lines) + "\n")
    result = prepare_dataset(synth / "csv", synth / "wikiart", tmp_path / "data", PrepareConfig(cache_size=24,
                                                                                               workers=1))
    classes = json.loads((tmp_path / "data" / "classes.json").read_text())
    assert classes["artist"][:2] == hostile and (result.manifest["status"] == "ok").any()
    warned = [r.getMessage() for r in caplog.records if "looks like a file path" in r.getMessage()]
    assert len(warned) == 2 and "'../../../escaped'" in warned[0] and "'a/b'" in warned[1]
