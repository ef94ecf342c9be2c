"""A prepared DATA folder as training and evaluation read it: manifest, classes, and the memory-mapped cache.

`CachedSplit` reads whole batches from the cache (one sorted fancy index per batch, a memory copy); workers only
copy uint8 rows, and the device crops, flips and normalises them (engine/preprocessing.py).
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd
import torch

from artextract.data.cache_files import IMAGES_FILE, contents_digest, images_complete, open_cache, read_layout
from artextract.errors import DataError
from artextract.layout import DataFolder


class RowSource(Protocol):
    """Arrays indexed like the image cache's rows, read in place of its images (engine/features.py's FeatureCache:
    a frozen backbone's maps). The split loader needs no more than this, so it does not import the features."""

    @property
    def maps(self) -> np.ndarray: ...

    def check(self) -> None:
        """Raise a clear error if the arrays' file went away or was cut short since it was opened."""


@dataclass
class DataInfo:
    folder: DataFolder
    classes: dict[str, list[str]]
    manifest: pd.DataFrame
    cache_size: int


def load_data_folder(folder: Path) -> DataInfo:
    """The manifest, classes and cache layout of a prepared DATA folder, checked for completeness."""
    data = DataFolder(Path(folder))
    data.require_prepared()
    try:
        classes = data.read_classes()
        manifest = pd.read_parquet(data.manifest)
    except (OSError, ValueError) as err:
        raise DataError(f"{folder} is incomplete or damaged ({err}); rerun artextract prepare") from None
    layout = read_layout(data.cache)
    if layout is None or layout.count != len(manifest):
        raise DataError(f"{data.cache} does not match the manifest; rerun artextract prepare on {folder}")
    if not images_complete(data.cache, layout):
        raise DataError(f"{data.cache / IMAGES_FILE} is missing or shorter than the manifest needs; rerun "
                        f"artextract prepare on {folder} (it resumes and rebuilds what is missing)")
    check_manifest(manifest, classes, layout.count, data.manifest)
    pending = int((manifest["status"] == "pending").sum())
    if pending:
        raise DataError(f"{folder}: {pending} images are not cached yet (a shard is missing); run the remaining "
                        "shards, then prepare once more without --shard")
    return DataInfo(data, classes, manifest, layout.image_size)


_SPLITS, _STATUSES = {"train", "select", "eval"}, {"ok", "skipped", "pending", "duplicate"}


def check_manifest(manifest: pd.DataFrame, classes: dict[str, list[str]], cache_rows: int, path: Path) -> None:
    """Refuse values no `prepare` writes (a hand edit, a damaged file): a label outside its class list would fail
    deep inside the loss, a cache index outside the cache would read another painting or crash."""
    fix = "was it edited by hand? Rerun artextract prepare to rebuild it"
    needed = ["path", "split", "status", "cache_index", *(f"label_{task}" for task in classes)]
    missing = [column for column in needed if column not in manifest.columns]
    if missing:
        raise DataError(f"{path} has no column {missing[0]!r}; {fix}")

    def refuse(bad: pd.Series, what: str) -> None:
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            value = manifest[what].iloc[row]
            value = value.item() if isinstance(value, np.generic) else value  # 99, not np.int16(99)
            more = f" (and {int(bad.sum()) - 1} more rows)" if bad.sum() > 1 else ""
            raise DataError(f"{path} row {row} ({manifest['path'].iloc[row]}): {what} {value!r} is not valid{more}; "
                            f"{fix}")

    refuse(~manifest["split"].astype(str).isin(_SPLITS), "split")
    refuse(~manifest["status"].astype(str).isin(_STATUSES), "status")
    for task, names in classes.items():
        labels = pd.to_numeric(manifest[f"label_{task}"], errors="coerce")
        refuse(labels.isna() | (labels < -1) | (labels >= len(names)), f"label_{task}")
    index = pd.to_numeric(manifest["cache_index"], errors="coerce")
    ok = manifest["status"].astype(str) == "ok"
    refuse(index.isna() | (ok & ((index < 0) | (index >= cache_rows))), "cache_index")


def cache_contents(info: DataInfo) -> str:
    """A digest of what DATA's image cache holds (its layout and every row's pixels, as prepare recorded them)."""
    layout = read_layout(info.folder.cache)
    pixels = info.manifest["pixels_digest"].to_numpy() if "pixels_digest" in info.manifest.columns else None
    return contents_digest(layout.fingerprint if layout else "", pixels)


def data_key(info: DataInfo) -> str:
    """Changes when what a run learns from changes: the cached images, the classes, the labels and splits."""
    digest = hashlib.sha256(json.dumps([cache_contents(info), info.classes]).encode())
    columns = ["path", "split", "status", *(c for c in info.manifest.columns if c.startswith("label_"))]
    digest.update(pd.util.hash_pandas_object(info.manifest[columns].astype(str), index=False).to_numpy().tobytes())
    return digest.hexdigest()[:16]


class CachedSplit(torch.utils.data.Dataset):
    """The usable images of one split; `dataset[rows]` returns (uint8 N x S x S x 3, labels N x T, rows).

    With `features` (a RowSource: a frozen backbone's maps) the same rows come as float16 feature maps instead.
    """

    def __init__(self, info: DataInfo, split: str, tasks: list[str], features: RowSource | None = None) -> None:
        usable = info.manifest[(info.manifest["split"] == split) & (info.manifest["status"] == "ok")]
        labels = usable[[f"label_{t}" for t in tasks]].to_numpy(np.int64)
        keep = (labels >= 0).any(axis=1)  # an image with no label for any trained task teaches nothing
        self.cache_rows = usable["cache_index"].to_numpy(np.int64)[keep]
        self.labels = labels[keep]
        self.paths = usable["path"].to_numpy()[keep]
        self.tasks = tasks
        self.features = features
        self._folder = info.folder
        self._images: np.memmap | None = None  # opened lazily, once per worker process

    @property
    def from_features(self) -> bool:
        return self.features is not None

    def with_features(self, features: RowSource | None) -> CachedSplit:
        """The same rows, read from `features` (None: from the images)."""
        other = copy.copy(self)
        other.features, other._images = features, None
        return other

    def __len__(self) -> int:
        return len(self.cache_rows)

    def __getitem__(self, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self._images is None:
            self._images = self.features.maps if self.features is not None else open_cache(self._folder.cache)
        if self.features is not None:
            self.features.check()
        rows = np.asarray(rows)
        order = np.argsort(self.cache_rows[rows], kind="stable")  # sequential reads of the file
        sorted_rows = rows[order]
        images = np.ascontiguousarray(self._images[self.cache_rows[sorted_rows]])
        return (torch.from_numpy(images), torch.from_numpy(self.labels[sorted_rows]),
                torch.from_numpy(sorted_rows))
