"""Reviewed label corrections: a label audit's CSVs (AUDIT/label_issues_<task>.csv), filled in by a reviewer,
read back by `prepare --overrides` so that the next training learns the corrected labels.

A reviewed row says, in its `action` column, `keep` (the label stands), `relabel` (to the class named in
`new_label`) or `drop` (the painting is not trained on nor scored for that task); an empty action is a row not
reviewed. Every refusal names the file and line and what to do: an unknown path, task, class or action, a relabel
without its class, or a painting reviewed twice for one task (in one file or across several).

Only training paintings can be corrected: an official val painting (or one of a carved test split) keeps the
labels it is scored with.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from artextract.data.protocol import Collected
from artextract.errors import DataError

ACTIONS = ("keep", "relabel", "drop")
REVIEW_COLUMNS = ("action", "new_label")  # what a reviewer fills in an audit's CSV (stages/audit.py writes them)
NEEDED = ("path", "task", *REVIEW_COLUMNS)
FILE_PATTERN = "label_issues_*.csv"


@dataclass(frozen=True)
class Override:
    path: str
    task: str
    action: str  # keep | relabel | drop
    label: int  # the new class (relabel), -1 (drop) or the class kept
    where: str  # file:line, for messages and the report


def override_files(given: list[Path]) -> list[Path]:
    """The files named, an AUDIT folder standing for its label_issues_<task>.csv files."""
    files: list[Path] = []
    for path in given:
        if path.is_dir():
            found = sorted(path.glob(FILE_PATTERN))
            if not found:
                raise DataError(f"--overrides {path} is a folder without {FILE_PATTERN} files: give the reviewed "
                                "CSV files, or the AUDIT folder written by `artextract audit`")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise DataError(f"--overrides {path} does not exist: give a reviewed label_issues_<task>.csv")
    return files


def read_overrides(files: list[Path], classes: dict[str, list[str]]) -> list[Override]:
    """Every reviewed row of `files`, checked against the class lists."""
    reviewed: dict[tuple[str, str], Override] = {}
    for file in files:
        for line, row in _rows(file):
            action = (row.get("action") or "").strip().lower()
            if not action:
                continue
            where = f"{file}:{line}"
            override = _parse(row, action, where, classes)
            earlier = reviewed.get((override.path, override.task))
            if earlier is not None:
                raise DataError(f"{where}: {override.path} is reviewed again for {override.task} (first at "
                                f"{earlier.where}); keep one row per painting and task")
            reviewed[override.path, override.task] = override
    return list(reviewed.values())


def _rows(file: Path) -> list[tuple[int, dict[str, str]]]:
    try:
        with open(file, newline="", encoding="utf-8-sig") as handle:  # a spreadsheet may add a BOM
            reader = csv.DictReader(handle)
            missing = [c for c in NEEDED if c not in (reader.fieldnames or [])]
            if missing:
                raise DataError(f"{file} has no column {missing[0]!r}: overrides are read from the label_issues_"
                                "<task>.csv files of `artextract audit`, with the action and new_label columns filled")
            return [(reader.line_num, row) for row in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise DataError(f"cannot read --overrides {file} ({err}); save it as UTF-8 CSV") from None


def _parse(row: dict[str, str], action: str, where: str, classes: dict[str, list[str]]) -> Override:
    path, task = (row.get("path") or "").strip(), (row.get("task") or "").strip()
    new = (row.get("new_label") or "").strip()
    if action not in ACTIONS:
        raise DataError(f"{where}: action {action!r} is not one of {', '.join(ACTIONS)}")
    if task not in classes:
        raise DataError(f"{where}: task {task!r} is not one of this DATA's tasks ({', '.join(classes)})")
    if not path:
        raise DataError(f"{where}: the row names no painting (empty path)")
    if action == "relabel":
        if not new:
            raise DataError(f"{where}: relabel needs the new class in new_label (e.g. the suggested_name column)")
        if new not in classes[task]:
            raise DataError(f"{where}: {new!r} is not a {task} class; new_label takes one of the class names "
                            f"({', '.join(classes[task][:5])}, ...)")
        return Override(path, task, action, classes[task].index(new), where)
    if new and action == "drop":
        raise DataError(f"{where}: drop with new_label {new!r}: write relabel to change the label, or empty "
                        "new_label to drop it")
    return Override(path, task, action, -1, where)


def apply_overrides(collected: Collected, overrides: list[Override]) -> list[dict[str, Any]]:
    """Change the labels of `collected` (before the protocol and the duplicate merge, so a reviewer settles a
    duplicate painting's conflicting labels by correcting one copy); returns the changes for the report. Each
    touched record keeps its labels as given in `given`, which the split carving stratifies on."""
    changes = []
    for override in overrides:
        record = collected.images.get(override.path)
        if record is None:
            raise DataError(f"{override.where}: {override.path} is not an image of these CSVs and images: was the "
                            "audit made on another DATA folder?")
        if "val" in record.official.values():
            raise DataError(f"{override.where}: {override.path} is an official val painting; its labels are what "
                            "it is scored with, and only training labels can be corrected")
        if record.given is None:
            record.given = dict(record.labels)
        before = record.labels[override.task]
        after = before if override.action == "keep" else override.label
        record.labels[override.task] = after
        changes.append({"path": override.path, "task": override.task, "action": override.action,
                        "before": before, "after": after, "row": override.where})
    return changes


def describe_files(files: list[Path]) -> list[dict[str, str]]:
    """Each overrides file with the SHA-256 of its contents: the report says which review was applied."""
    return [{"path": str(f.resolve()), "sha256": hashlib.sha256(f.read_bytes()).hexdigest()} for f in files]
