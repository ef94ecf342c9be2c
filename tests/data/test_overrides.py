"""Reviewed label corrections read back by `prepare --overrides`: applied and recorded, or refused with the row."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pandas as pd
import pytest

from artextract.config import PrepareConfig
from artextract.errors import DataError
from artextract.stages.prepare import prepare_dataset

COLUMNS = ["rank", "task", "path", "label_name", "suggested_name", "action", "new_label"]


def _write(path: Path, rows: list[dict[str, str]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, COLUMNS)
        writer.writeheader()
        for i, row in enumerate(rows, 1):
            writer.writerow({"rank": str(i), "label_name": "", "suggested_name": "", **row})
    return path


@pytest.fixture(scope="module")
def collection(make_synth, tmp_path_factory):
    root = make_synth(tmp_path_factory.mktemp("review"), artists=4, per_artist=12, size=40)
    out = tmp_path_factory.mktemp("review-data")
    result = prepare_dataset(root / "csv", root / "wikiart", out, PrepareConfig(cache_size=16, workers=1))
    return root, out, result.manifest, json.loads((out / "classes.json").read_text())


def _prepare(root: Path, out: Path, *overrides: Path):
    return prepare_dataset(root / "csv", root / "wikiart", out, PrepareConfig(cache_size=16, workers=1),
                           overrides=list(overrides))


def _training(manifest: pd.DataFrame) -> pd.DataFrame:
    return manifest[manifest["split"].isin(["train", "select"]) & (manifest["label_artist"] >= 0)]


def test_relabel_drop_and_keep_are_applied_and_recorded(collection, tmp_path):
    root, out, manifest, classes = collection
    rows = _training(manifest).iloc[:3]
    first, second, third = rows["path"].tolist()
    new = next(n for i, n in enumerate(classes["artist"]) if i != rows["label_artist"].iloc[0])
    review = _write(tmp_path / "label_issues_artist.csv", [
        {"task": "artist", "path": first, "action": "relabel", "new_label": new},
        {"task": "artist", "path": second, "action": " Drop ", "new_label": ""},
        {"task": "artist", "path": third, "action": "keep", "new_label": ""},
        {"task": "artist", "path": rows["path"].iloc[0], "action": "", "new_label": ""}])  # not reviewed: ignored
    result = _prepare(root, out, review)
    after = result.manifest.set_index("path")
    assert after.at[first, "label_artist"] == classes["artist"].index(new)
    assert after.at[second, "label_artist"] == -1 and after.at[second, "status"] == "ok"  # the image stays
    assert after.at[third, "label_artist"] == rows["label_artist"].iloc[2]
    assert after.at[first, "overridden"] == "artist" and after.at[third, "overridden"] == ""
    # The splits do not move when labels are corrected (stratified on the labels as given).
    assert (after["split"] == manifest.set_index("path")["split"]).all()
    section = result.report["overrides"]
    assert section["changed"] == 2 and section["counts"]["artist"] == {"relabel": 1, "drop": 1, "keep": 1}
    assert section["files"][0]["path"] == str(review.resolve())
    assert "Reviewed labels" in (out / "prepare_report.md").read_text()
    # An AUDIT folder stands for its label_issues_<task>.csv files.
    assert _prepare(root, out, tmp_path).report["overrides"]["changed"] == 2
    _prepare(root, out)  # without the review, the CSVs' labels are back


@pytest.mark.parametrize("row, message", [
    ({"task": "artist", "path": "Cubism/nobody_nothing.jpg", "action": "drop"}, "is not an image of these CSVs"),
    ({"task": "artist", "path": "{path}", "action": "relabel", "new_label": "Leonardo"}, "is not a artist class"),
    ({"task": "artist", "path": "{path}", "action": "relabel"}, "relabel needs the new class"),
    ({"task": "artist", "path": "{path}", "action": "fix"}, "action 'fix' is not one of keep, relabel, drop"),
    ({"task": "medium", "path": "{path}", "action": "drop"}, "task 'medium' is not one of"),
    ({"task": "artist", "path": "{path}", "action": "drop", "new_label": "{other}"}, "drop with new_label"),
    ({"task": "artist", "path": "{val}", "action": "drop"}, "is an official val painting"),
])
def test_a_bad_review_row_is_refused_with_its_line(collection, tmp_path, row, message):
    root, out, manifest, classes = collection
    values = {"path": _training(manifest)["path"].iloc[0], "other": classes["artist"][0],
              "val": manifest.loc[manifest["split"] == "eval", "path"].iloc[0]}
    filled = {key: value.format(**values) for key, value in {"new_label": "", **row}.items()}
    review = _write(tmp_path / "label_issues_artist.csv", [{"task": "artist", "path": values["path"],
                                                           "action": "keep", "new_label": ""}, filled])
    if filled["path"] == values["path"]:  # the same painting twice would be refused for that first
        review = _write(tmp_path / "label_issues_artist.csv", [filled])
    with pytest.raises(DataError, match=message) as raised:
        _prepare(root, out, review)
    assert f"{review}:" in str(raised.value)


def test_a_painting_reviewed_twice_is_refused_naming_both_rows(collection, tmp_path):
    root, out, manifest, _ = collection
    path = _training(manifest)["path"].iloc[0]
    one = _write(tmp_path / "one.csv", [{"task": "artist", "path": path, "action": "keep"}])
    two = _write(tmp_path / "two.csv", [{"task": "artist", "path": path, "action": "drop"}])
    with pytest.raises(DataError, match=rf"{two}:2: .* reviewed again for artist \(first at {one}:2\)"):
        _prepare(root, out, one, two)


def test_a_file_without_the_review_columns_is_refused(collection, tmp_path):
    root, out, _, _ = collection
    (tmp_path / "plain.csv").write_text("path,label\nx.jpg,1\n")
    with pytest.raises(DataError, match="has no column 'task'"):
        _prepare(root, out, tmp_path / "plain.csv")
    with pytest.raises(DataError, match="does not exist"):
        _prepare(root, out, tmp_path / "missing.csv")
    with pytest.raises(DataError, match="folder without label_issues"):
        _prepare(root, out, tmp_path / "empty" if (tmp_path / "empty").mkdir() is None else tmp_path)
