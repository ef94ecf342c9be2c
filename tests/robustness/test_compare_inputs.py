"""`compare` never reports statistics from predictions that disagree with their evaluation (issue 21, item 4):
edited predictions or metrics are refused in one line, runs are paired only when they scored the same images with
the same labels and class names, and every pair left out says why."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

Edit = Callable[[Path], None]


def _edit_predictions(change: Callable[[pd.DataFrame], pd.DataFrame]) -> Edit:
    def edit(folder: Path) -> None:
        frame = pd.read_parquet(folder / "predictions.parquet")
        change(frame).to_parquet(folder / "predictions.parquet", index=False)
    return edit


def _edit_metrics(change: Callable[[dict], None]) -> Edit:
    def edit(folder: Path) -> None:
        metrics = json.loads((folder / "metrics.json").read_text())
        change(metrics)
        (folder / "metrics.json").write_text(json.dumps(metrics))
    return edit


def _set(column: str, value: object) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def change(frame: pd.DataFrame) -> pd.DataFrame:
        frame[column] = frame[column].astype("float64") if value != value else frame[column]
        frame.loc[frame.index[3], column] = value
        return frame
    return change


def _perfect(frame: pd.DataFrame) -> pd.DataFrame:
    labelled = frame["label_artist"] >= 0
    frame.loc[labelled, "pred_artist"] = frame.loc[labelled, "label_artist"]
    return frame


REFUSED = {
    "a prediction out of range": (_edit_predictions(_set("pred_artist", 999)), "pred_artist"),
    "a NaN prediction": (_edit_predictions(_set("pred_artist", float("nan"))), "pred_artist"),
    "predictions set to the labels": (_edit_predictions(_perfect), "disagree on artist"),
    "a duplicated row": (_edit_predictions(lambda f: pd.concat([f, f.iloc[:1]], ignore_index=True)),
                         "more than once"),
    "a dropped column": (_edit_predictions(lambda f: f.drop(columns=["pred_style"])), "no column 'pred_style'"),
    "metrics without intervals": (_edit_metrics(lambda m: m["tasks"]["artist"].pop("intervals_95")),
                                  "intervals_95 missing or not numbers"),
    "a metric as a string": (_edit_metrics(lambda m: m["tasks"]["artist"].update(accuracy="0.9")),
                             "not numbers"),
    "an edited accuracy": (_edit_metrics(lambda m: m["tasks"]["style"].update(accuracy=0.5)),
                           "disagree on style"),
}


@pytest.fixture
def two_copies(evaluated_run: Path, tmp_path: Path) -> tuple[Path, Path]:
    return (Path(shutil.copytree(evaluated_run / "eval", tmp_path / "first")),
            Path(shutil.copytree(evaluated_run / "eval", tmp_path / "second")))


@pytest.mark.parametrize("case", list(REFUSED))
def test_edited_predictions_or_metrics_are_refused_in_one_line(run_cli, two_copies, case):
    edit, message = REFUSED[case]
    first, second = two_copies
    edit(second)
    result = run_cli("compare", first, second)
    assert result.code == 2, (case, result.stdout)
    assert message in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert result.stdout == ""  # no table from edited inputs


def _reverse_classes(folder: Path) -> None:
    classes = json.loads((folder / "classes.json").read_text())
    classes["artist"] = classes["artist"][::-1]
    (folder / "classes.json").write_text(json.dumps(classes))


def _shift_labels(frame: pd.DataFrame) -> pd.DataFrame:
    """Other labels with the same accuracy (predictions shifted alike): consistent, but not the same task."""
    count = int(np.stack(frame["logits_genre"]).shape[1])
    labelled = frame["label_genre"] >= 0
    for column in ("label_genre", "pred_genre"):
        frame.loc[labelled, column] = (frame.loc[labelled, column] + 1) % count
    return frame


@pytest.mark.parametrize(("edit", "task", "why"), [
    (_reverse_classes, "artist", "class names differ"),
    (_edit_predictions(_shift_labels), "genre", "labels differ on"),
])
def test_runs_are_paired_only_on_the_same_images_labels_and_classes(run_cli, two_copies, tmp_path, edit, task, why):
    first, second = two_copies
    edit(second)
    result = run_cli("compare", first, second, "--output", tmp_path / "c.json")
    assert result.code == 0, result.stderr
    saved = json.loads((tmp_path / "c.json").read_text())
    assert task not in {pair["task"] for pair in saved["pairs"]}  # the other tasks are still paired
    assert len(saved["pairs"]) == 2
    (skipped,) = saved["skipped"]
    assert skipped["task"] == task and why in skipped["why"]
    assert f"first and second, {task}: " in result.stdout and why in result.stderr


def test_hostile_run_names_cannot_break_the_markdown_table(run_cli, evaluated_run, tmp_path):
    first = shutil.copytree(evaluated_run / "eval", tmp_path / "a|b <img src=x onerror=alert(1)>")
    second = shutil.copytree(evaluated_run / "eval", tmp_path / "second")
    result = run_cli("compare", first, second)
    assert result.code == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith("| a")]
    columns = [len(re.findall(r"(?<!\\)\|", row)) - 1 for row in rows]
    assert columns == [7] * 3 + [8] * 3  # the runs' table, then the pairs' table: no cell split by the name
    assert "a\\|b &lt;img" in rows[0] and "<img" not in result.stdout
