"""The input pipeline from the prepare cache: workers only copy uint8 rows; the device crops, flips, normalises.

`CachedSplit` reads whole batches from the memory-mapped cache (one sorted fancy index per batch, a memory copy),
`batch_indices` decides which rows each process reads in each epoch (seeded by epoch, so a resumed run reads the
same batches), and `augment`/`center_view` turn uint8 N x S x S x 3 batches into normalised float N x 3 x s x s
tensors on the device, with per-sample random resized crops and flips done by one `grid_sample` call.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from artextract.data.cache import IMAGES_FILE, images_complete, open_cache, read_layout
from artextract.data.prepare import MANIFEST
from artextract.errors import DataError


@dataclass
class DataInfo:
    folder: Path
    classes: dict[str, list[str]]
    manifest: pd.DataFrame
    cache_size: int


def load_data_folder(folder: Path) -> DataInfo:
    """The manifest, classes and cache layout of a prepared DATA folder, checked for completeness."""
    if not (folder / MANIFEST).is_file():
        raise DataError(f"{folder} has no {MANIFEST}: run `artextract prepare ... --out {folder}` first")
    try:
        classes = json.loads((folder / "classes.json").read_text(encoding="utf-8"))
        manifest = pd.read_parquet(folder / MANIFEST)
    except (OSError, ValueError) as err:
        raise DataError(f"{folder} is incomplete or damaged ({err}); rerun artextract prepare") from None
    layout = read_layout(folder / "cache")
    if layout is None or layout.count != len(manifest):
        raise DataError(f"{folder}/cache does not match the manifest; rerun artextract prepare on {folder}")
    if not images_complete(folder / "cache", layout):
        raise DataError(f"{folder / 'cache' / IMAGES_FILE} is missing or shorter than the manifest needs; rerun "
                        f"artextract prepare on {folder} (it resumes and rebuilds what is missing)")
    pending = int((manifest["status"] == "pending").sum())
    if pending:
        raise DataError(f"{folder}: {pending} images are not cached yet (a shard is missing); run the remaining "
                        "shards, then prepare once more without --shard")
    return DataInfo(folder, classes, manifest, layout.image_size)


class CachedSplit(torch.utils.data.Dataset):
    """The usable images of one split; `dataset[rows]` returns (uint8 N x S x S x 3, labels N x T, rows)."""

    def __init__(self, info: DataInfo, split: str, tasks: list[str]) -> None:
        usable = info.manifest[(info.manifest["split"] == split) & (info.manifest["status"] == "ok")]
        labels = usable[[f"label_{t}" for t in tasks]].to_numpy(np.int64)
        keep = (labels >= 0).any(axis=1)  # an image with no label for any trained task teaches nothing
        self.cache_rows = usable["cache_index"].to_numpy(np.int64)[keep]
        self.labels = labels[keep]
        self.paths = usable["path"].to_numpy()[keep]
        self.tasks = tasks
        self._folder = info.folder
        self._images: np.memmap | None = None  # opened lazily, once per worker process

    def __len__(self) -> int:
        return len(self.cache_rows)

    def __getitem__(self, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self._images is None:
            self._images = open_cache(self._folder / "cache")
        rows = np.asarray(rows)
        order = np.argsort(self.cache_rows[rows], kind="stable")  # sequential reads of the file
        sorted_rows = rows[order]
        images = np.ascontiguousarray(self._images[self.cache_rows[sorted_rows]])
        return (torch.from_numpy(images), torch.from_numpy(self.labels[sorted_rows]),
                torch.from_numpy(sorted_rows))


def batch_indices(size: int, batch_size: int, epoch: int, seed: int, rank: int = 0, world: int = 1,
                  shuffle: bool = True, weights: np.ndarray | None = None, drop_last: bool = True) -> list[np.ndarray]:
    """This process's batches for one epoch: a seeded permutation (or weighted draw), dealt out by rank.

    Training drops the incomplete tail so that every process takes the same number of steps.
    """
    rng = np.random.default_rng([seed, epoch])
    if weights is not None:
        order = rng.choice(size, size=size, replace=True, p=weights / weights.sum())
    else:
        order = rng.permutation(size) if shuffle else np.arange(size)
    mine = order[rank::world]
    if drop_last:
        per_rank = size // world
        mine = mine[: per_rank - per_rank % batch_size] if per_rank >= batch_size else mine[:per_rank]
        if len(mine) == 0:
            return []
    return [mine[i: i + batch_size] for i in range(0, len(mine), batch_size)]


def _normalise(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    return (images - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)


def _to_float_nchw(batch: torch.Tensor, channels_last: bool) -> torch.Tensor:
    images = batch.permute(0, 3, 1, 2).float().div_(255.0)
    return images.contiguous(memory_format=torch.channels_last) if channels_last else images.contiguous()


def augment(batch: torch.Tensor, out_size: int, mean: torch.Tensor, std: torch.Tensor, generator: torch.Generator,
            min_scale: float = 0.35, hflip: bool = True, channels_last: bool = False) -> torch.Tensor:
    """Random resized crop (area share in [min_scale, 1], aspect ratio in [3/4, 4/3]) and horizontal flip of a
    uint8 N x S x S x 3 batch, on the batch's device; returns normalised N x 3 x out x out floats.

    No colour jitter: colour is evidence of the artist.
    """
    n, device = batch.shape[0], batch.device
    images = _to_float_nchw(batch, channels_last)
    uniform = torch.rand(n, 5, generator=generator, device=generator.device).to(device)
    area = min_scale + (1.0 - min_scale) * uniform[:, 0]
    log_ratio = math.log(3 / 4) + (math.log(4 / 3) - math.log(3 / 4)) * uniform[:, 1]
    ratio = torch.exp(log_ratio)
    # Crop width and height as fractions of the square, clipped to fit.
    width = torch.sqrt(area * ratio).clamp(max=1.0)
    height = torch.sqrt(area / ratio).clamp(max=1.0)
    centre_x = (1 - width) * (2 * uniform[:, 2] - 1)
    centre_y = (1 - height) * (2 * uniform[:, 3] - 1)
    flip = torch.where((uniform[:, 4] < 0.5) & hflip, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3, device=device)
    theta[:, 0, 0] = width * flip
    theta[:, 0, 2] = centre_x
    theta[:, 1, 1] = height
    theta[:, 1, 2] = centre_y
    grid = F.affine_grid(theta, [n, 3, out_size, out_size], align_corners=False)
    crops = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return _normalise(crops, mean.to(device), std.to(device))


def center_view(batch: torch.Tensor, out_size: int, cache_size: int, mean: torch.Tensor, std: torch.Tensor,
                channels_last: bool = False) -> torch.Tensor:
    """Evaluation view: the central `out_size / cache_size` of the cached square (224 of 256, as resize-256 +
    centre-crop-224 does), resized to `out_size` when the cache is smaller."""
    images = _to_float_nchw(batch, channels_last)
    if out_size < cache_size:
        offset = (cache_size - out_size) // 2
        images = images[:, :, offset: offset + out_size, offset: offset + out_size]
    elif out_size > cache_size:
        images = F.interpolate(images, size=(out_size, out_size), mode="bilinear", align_corners=False,
                               antialias=False)
    return _normalise(images, mean.to(images.device), std.to(images.device))
