"""From CSV rows to one record per image, and the split each image is used in.

Leak-free protocol (default): an image listed in any task's official val split is an evaluation image and
is never trained on, whatever other tasks say; its labels count only for the tasks whose val split lists it.
The selection set (early stopping) is carved out of the remaining training images, stratified and seeded, after
duplicate paintings were merged (data/duplicates.py, `merge_duplicates`): a painting filed under several names is
one image with its copies beside it, so its copies can never land on both sides of a split.
Inner-join protocol: only images labelled in every task with the same official split in each, the common
intersection-only variant of published work, kept for comparison and labelled as such.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from artextract.config import TASKS
from artextract.data.artgan_files import CsvFolder, SplitRow
from artextract.data.path_index import PathIndex
from artextract.errors import DataError

PROTOCOLS = ("leak-free", "inner-join")


@dataclass
class ImageRecord:
    path: str  # real relative path (below any wrapper folder of the source)
    labels: dict[str, int] = field(default_factory=dict)  # task -> class index, -1 = none
    official: dict[str, str] = field(default_factory=dict)  # task -> "train" | "val" | "" (not listed)
    split: str = ""  # "train" | "select" | "eval"
    # The labels before any reviewed override (stratification uses these, so that correcting labels never moves a
    # painting between the selection, test and training splits); None: no override touched this image.
    given: dict[str, int] | None = None
    group: int = -1  # its duplicate group (data/duplicates.py), -1 for none
    duplicate_of: str = ""  # the kept copy's path, for a copy left out as a duplicate


@dataclass
class Collected:
    images: dict[str, ImageRecord]
    unmatched: list[dict[str, Any]]
    repairs: list[dict[str, Any]]
    duplicates: list[dict[str, Any]]  # same image listed again with the same label
    conflicts: list[dict[str, Any]]  # same image listed with different labels: label excluded


CLOSEST_HINTS = 100  # unmatched rows that get a closest-name suggestion (the report shows the first ones)


def collect_images(csvs: CsvFolder, index: PathIndex) -> Collected:
    """Resolve every row against the real files and merge rows of the same image."""
    tasks = list(csvs.classes)
    entries: dict[tuple[str, str], list[tuple[str, SplitRow]]] = defaultdict(list)
    unmatched, repairs = [], []
    for (task, split), rows in csvs.rows.items():
        for row in rows:
            found = index.resolve(row.path)
            if found is None:
                # The closest name is a hint for the first rows a user reads; searching it for every row of an
                # archive that holds only part of WikiArt (68,000 rows of the real sample) would take hours.
                hint = index.closest(row.path) if len(unmatched) < CLOSEST_HINTS else None
                unmatched.append({"file": row.file, "line": row.line, "path": row.path, "closest": hint})
                continue
            if found.how != "exact":
                repairs.append({"file": row.file, "line": row.line, "csv_path": row.path, "path": found.path,
                                "repair": found.how})
            entries[found.path, task].append((split, row))

    images: dict[str, ImageRecord] = {}
    duplicates, conflicts = [], []
    for (path, task), listed in sorted(entries.items()):
        record = images.setdefault(path, ImageRecord(path, dict.fromkeys(tasks, -1), dict.fromkeys(tasks, "")))
        labels = sorted({row.label for _, row in listed})
        splits = {split for split, _ in listed}
        # Listed in this task's val split at all: it is a val image of this task (never trained on).
        record.official[task] = "val" if "val" in splits else "train"
        where = [f"{row.file}:{row.line}" for _, row in listed]
        if len(labels) > 1:
            conflicts.append({"path": path, "task": task, "labels": labels, "rows": where})
            continue
        if len(listed) > 1:
            duplicates.append({"path": path, "task": task, "label": labels[0], "rows": where})
        record.labels[task] = labels[0]
    return Collected(images, unmatched, repairs, duplicates, conflicts)


@dataclass
class ProtocolResult:
    images: list[ImageRecord]  # sorted by path, split assigned
    leakage: list[dict[str, Any]]  # images in one task's train split and another task's (or the same) val split
    dropped: list[dict[str, Any]]  # images (inner-join) or labels (leak-free) left out, with the reason


def _leaks(record: ImageRecord) -> bool:
    return "train" in record.official.values() and "val" in record.official.values()


def _leakage_entry(record: ImageRecord) -> dict[str, Any]:
    return {"path": record.path,
            "train": sorted(t for t, s in record.official.items() if s == "train"),
            "val": sorted(t for t, s in record.official.items() if s == "val")}


def apply_protocol(collected: Collected, protocol: str) -> ProtocolResult:
    """Which images are kept, and which of them are evaluation images (split "eval"; the others "train")."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; expected one of {PROTOCOLS}")
    records = [collected.images[p] for p in sorted(collected.images)]
    leakage = [_leakage_entry(r) for r in records if _leaks(r)]
    dropped: list[dict[str, Any]] = []
    kept: list[ImageRecord] = []
    for record in records:
        if protocol == "leak-free":
            if "val" in record.official.values():
                record.split = "eval"
                for task, split in record.official.items():
                    if split == "train" and record.labels[task] >= 0:
                        dropped.append({"path": record.path, "task": task, "label": record.labels[task],
                                        "reason": "train label of an image in another task's val split"})
                        record.labels[task] = -1
            else:
                record.split = "train"
        else:  # inner-join
            splits = set(record.official.values())
            if "" in splits or any(label < 0 for label in record.labels.values()):
                dropped.append({"path": record.path, "reason": "not labelled in every task"})
                continue
            if len(splits) > 1:
                dropped.append({"path": record.path, "reason": "official splits disagree between tasks"})
                continue
            record.split = "eval" if splits == {"val"} else "train"
        # A label removed by a reviewed override keeps its image (and the cache's layout): it may still hold others.
        if any(label >= 0 for label in (record.given or record.labels).values()):
            kept.append(record)
        elif protocol == "leak-free":
            dropped.append({"path": record.path, "reason": "no usable label left"})
    return ProtocolResult(kept, leakage, dropped)


def check_fractions(records: list[ImageRecord], select_fraction: float, test_fraction: float) -> None:
    """Refuse a test split for a collection with official val images, or shares that leave nothing to train on
    (checked before the cache is built, so that the mistake costs nothing)."""
    if test_fraction <= 0:
        return
    if any(record.split == "eval" for record in records):
        raise DataError("--test-fraction carves a test split out of train for a collection without val images, "
                        "but these CSVs list official val images: evaluate on those (leave --test-fraction at 0)")
    if select_fraction + test_fraction >= 1:
        raise DataError(f"--select-fraction {select_fraction} and --test-fraction {test_fraction} leave no "
                        "training image: their sum must stay below 1")


def carve_splits(records: list[ImageRecord], select_fraction: float, seed: int, test_fraction: float = 0.0) -> None:
    """Carve the selection split (and with `test_fraction` a test split, scored as `eval`) out of the training
    images. Both fractions are shares of the training images: the test split is carved first, for a collection
    with no official val image; the two never overlap, and both are stratified and seeded. A duplicate copy
    follows its kept copy into whichever split that lands in."""
    check_fractions(records, select_fraction, test_fraction)
    representatives = [r for r in records if not r.duplicate_of]
    if test_fraction > 0:
        _carve(representatives, test_fraction, [seed, 1], "eval")
        select_fraction /= 1 - test_fraction  # still a share of all the training images
    _carve(representatives, select_fraction, seed, "select")
    split_of = {r.path: r.split for r in representatives}
    for record in records:
        if record.duplicate_of:
            record.split = split_of[record.duplicate_of]


def _stratum(record: ImageRecord) -> str:
    """Stratify by the first labelled task in priority order: artist (the smallest task), style, genre; on the
    labels the CSVs gave, before any override."""
    labels = record.given or record.labels
    for task in TASKS:
        if labels.get(task, -1) >= 0:
            return f"{task}:{labels[task]}"
    return ""


def _carve(records: list[ImageRecord], fraction: float, seed: int | list[int], split: str) -> None:
    """Move `fraction` of each stratum of the training images to `split` (seeded)."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"the share moved to {split} must be in [0, 1), got {fraction}")
    strata: dict[str, list[ImageRecord]] = defaultdict(list)
    for record in records:
        if record.split == "train":
            strata[_stratum(record)].append(record)
    rng = np.random.default_rng(seed)
    for key in sorted(strata):
        members = strata[key]  # already sorted by path
        count = round(fraction * len(members))
        for i in rng.permutation(len(members))[:count]:
            members[i].split = split
