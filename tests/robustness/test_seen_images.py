"""A run's figures are held out only if the run never saw the scored paintings: `evaluate` compares the images
a run trained and selected on (recorded by content when it started) with what it is asked to score, and leaves
out, or refuses, the ones it saw, even under other names in another DATA folder."""

from __future__ import annotations

import json
import shutil
import zlib
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from conftest import tiny_train_config


def _keep_rows(csv_dir: Path, split: str, keep: Callable[[bytes], bool]) -> None:
    """Only the rows of `split`'s CSVs whose image path passes `keep` (the same images in every task)."""
    for path in csv_dir.iterdir():
        if split not in path.name:
            continue
        lines = path.read_bytes().split(b"\n")
        kept = [line for line in lines if b"," not in line or b"Path to image" in line
                or keep(line.split(b",")[0].strip())]
        path.write_bytes(b"\n".join(kept))


def _collection_without_val(make_synth: Callable[..., Path], root: Path, **config: object) -> Path:
    """A generated collection whose val images are withheld, as in the real sample: --test-fraction carves a test
    split from train."""
    source = make_synth(root, **config)
    for csv in (source / "csv").glob("*val*"):
        for line in csv.read_text(encoding="utf-8").splitlines():
            if "," in line and "Path to image" not in line:
                (source / "wikiart" / line.split(",")[0].strip()).unlink(missing_ok=True)
    return source


def _rename_some_images(root: Path, every: int = 3) -> list[str]:
    """Every `every`-th image renamed on disk and in every CSV: the same file under another name."""
    renamed = []
    for index, image in enumerate(sorted((root / "wikiart").rglob("*.jpg"))):
        if index % every:
            continue
        old = image.relative_to(root / "wikiart").as_posix()
        new = old.replace(".jpg", "-copy.jpg")
        image.rename(root / "wikiart" / new)
        for csv in (root / "csv").iterdir():
            csv.write_bytes(csv.read_bytes().replace(old.encode(), new.encode()))
        renamed.append(new)
    return renamed


def test_evaluate_on_another_data_folder_leaves_out_what_the_run_saw(run_cli, make_synth, tmp_path):
    from artextract.stages.train import train

    source = _collection_without_val(make_synth, tmp_path / "synth", artists=4, per_artist=16, size=40)
    half = shutil.copytree(source, tmp_path / "half")
    _keep_rows(half / "csv", "train", lambda path: zlib.crc32(path) % 2 == 0)
    assert run_cli("prepare", "--csv-dir", half / "csv", "--images", half / "wikiart", "--out", tmp_path / "a",
                   "--cache-size", "32").code == 0
    run = tmp_path / "run"
    train(tmp_path / "a", run, tiny_train_config(epochs=1))
    assert (run / "seen_images.parquet").is_file()

    # Every painting, a third of them renamed, with a test split carved from train.
    renamed = shutil.copytree(source, tmp_path / "renamed")
    new_names = set(_rename_some_images(renamed))
    prepared = run_cli("prepare", "--csv-dir", renamed / "csv", "--images", renamed / "wikiart", "--out",
                       tmp_path / "b", "--cache-size", "32", "--test-fraction", "0.4")
    assert prepared.code == 0, prepared.stderr
    a = pd.read_parquet(tmp_path / "a" / "manifest.parquet")
    b = pd.read_parquet(tmp_path / "b" / "manifest.parquet")
    seen = set(a.loc[a["split"].isin(["train", "select"]) & (a["status"] == "ok"), "content_sha256"])
    b_eval = b[(b["split"] == "eval") & (b["status"] == "ok")]
    overlap = b_eval[b_eval["content_sha256"].isin(seen)]
    assert 0 < len(overlap) < len(b_eval) and overlap["path"].isin(new_names).any()  # renamed copies among them

    result = run_cli("evaluate", "--run", run, "--data", tmp_path / "b", "--out", tmp_path / "e", "--batch-size", "32")
    assert result.code == 0, result.stderr
    stderr = " ".join(result.stderr.split())
    assert f"left out {len(overlap)} of the {len(b_eval)} eval images" in stderr
    inputs = json.loads((tmp_path / "e" / "inputs.json").read_text())
    assert inputs["left_out_seen_by_run"]["eval"] == len(overlap)
    scored = pd.read_parquet(tmp_path / "e" / "predictions.parquet")
    assert set(scored.loc[scored["split"] == "eval", "path"]) == set(b_eval["path"]) - set(overlap["path"])
    assert "image(s) left out of the scores" in (tmp_path / "e" / "report.md").read_text()


def test_a_run_scored_on_its_own_data_prepared_again_with_a_test_split_is_refused(run_cli, make_synth, tmp_path):
    """README's prepare rerun with --test-fraction: the new test split was the run's training split."""
    from artextract.stages.train import train

    source = _collection_without_val(make_synth, tmp_path / "synth", artists=3, per_artist=10, size=40)
    args = ["prepare", "--csv-dir", source / "csv", "--images", source / "wikiart", "--out", tmp_path / "data",
            "--cache-size", "32"]
    assert run_cli(*args).code == 0
    run = tmp_path / "run"
    train(tmp_path / "data", run, tiny_train_config(epochs=1))
    again = run_cli(*args, "--test-fraction", "0.2")
    assert again.code == 0, again.stderr
    assert "changed split" in " ".join(again.stderr.split())
    result = run_cli("evaluate", "--run", run, "--out", tmp_path / "e")
    assert result.code == 2 and "is one that" in result.stderr and "trained or selected on" in result.stderr
    assert "Traceback" not in result.stderr
    # Runs trained on the new DATA are scored on its test split, and each model scored there is counted.
    for count, seed in ((1, 0), (2, 1), (2, 1)):
        fresh = tmp_path / f"fresh{seed}"
        if not fresh.exists():
            train(tmp_path / "data", fresh, tiny_train_config(epochs=1, seed=seed, batch_size=8))
        scored = run_cli("evaluate", "--run", fresh, "--force")
        assert scored.code == 0, scored.stderr
        inputs = json.loads((fresh / "eval" / "inputs.json").read_text())
        assert inputs["left_out_seen_by_run"] == {} and inputs["test_split"]["models_scored"] == count
    assert "has now been scored by 2 different models" in " ".join(scored.stderr.split())
    assert "by 2 model(s) of this DATA folder so far" in (fresh / "eval" / "report.html").read_text()
