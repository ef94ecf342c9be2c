"""No code from a file, no script in a report (issue 13, items 1 and 2): a planted pickle is refused wherever a
file is loaded, and its code never runs; hostile class names and paths are shown as text in report.html."""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import pandas as pd
import pytest

import artextract
from artextract.config import ModelConfig
from artextract.errors import ArtExtractError
from artextract.models import build_model
from artextract.stages.train import train

from conftest import tiny_train_config


class _Planted:
    """Unpickling this runs `touch marker`: the marker's existence is the proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _plant(path: Path, key: str) -> Path:
    marker = path.parent / "code-ran"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps({key: _Planted(marker)}))
    return marker


def test_resume_refuses_a_planted_checkpoint(prepared_small, tmp_path):
    config = tiny_train_config(epochs=2)
    assert train(prepared_small, tmp_path / "run", config, should_stop=lambda epoch: epoch == 1).interrupted
    marker = _plant(tmp_path / "run" / "checkpoints" / "last.pt", "model")
    with pytest.raises(ArtExtractError, match="refused to unpickle"):
        train(prepared_small, tmp_path / "run", config, resume=True)
    assert not marker.exists()


@pytest.mark.parametrize("suffix", [".pt", ".pth"])
def test_a_pickled_model_file_is_refused_and_never_run(run_cli, tmp_path, suffix):
    evil = tmp_path / f"model{suffix}"
    marker = _plant(evil, "state_dict")
    (tmp_path / "x.jpg").write_bytes(b"")
    result = run_cli("predict", "--model", evil, tmp_path / "x.jpg")
    assert result.code == 2 and "refused" in result.stderr
    with pytest.raises(ArtExtractError, match="refused"):
        artextract.load_model(evil)
    assert not marker.exists()


def test_pickled_backbone_weights_are_refused_and_never_run(tmp_path):
    evil = tmp_path / "evil.pth"
    marker = _plant(evil, "state_dict")
    classes = {"artist": ["a", "b"], "style": ["s", "t"], "genre": ["g", "h"]}
    with pytest.raises(ArtExtractError, match="refused to unpickle"):
        build_model(ModelConfig(backbone="resnet18", weights=str(evil)), classes)
    assert not marker.exists()


def test_hostile_class_names_and_paths_are_escaped_in_the_report(run_cli, evaluated_run, tmp_path):
    out = tmp_path / "eval"
    shutil.copytree(evaluated_run / "eval", out, ignore=shutil.ignore_patterns(".artextract.lock"))
    hostile = '<img src=x onerror="alert(1)">'
    classes = json.loads((out / "classes.json").read_text())
    classes["artist"] = [hostile + name for name in classes["artist"]]
    (out / "classes.json").write_text(json.dumps(classes))
    predictions = pd.read_parquet(out / "predictions.parquet")
    predictions["path"] = "<script>alert(2)</script>" + predictions["path"]
    predictions.to_parquet(out / "predictions.parquet", index=False)
    result = run_cli("evaluate", "--run", evaluated_run, "--out", out, "--from-predictions")
    assert result.code == 0, result.stderr
    html = (out / "report.html").read_text()
    assert hostile not in html and "<script>alert(2)" not in html
    assert "&lt;img src=x onerror=" in html and "&lt;script&gt;alert(2)" in html
    markdown = (out / "report.md").read_text()  # issue 21: report.md carried them raw, and `|` split its cells
    assert "<img" not in markdown and "<script" not in markdown and "&lt;img src=x onerror=" in markdown
