"""An epoch's reads of cached feature maps from a cold page cache, against the same reads warm, in one run.

Training from cached maps reads every training row once per epoch, in the sampler's shuffled order (each batch's
rows sorted, as `CachedSplit` does). Warm, the rows come from memory; cold (the file's pages dropped with
posix_fadvise(DONTNEED), which needs no root), from the disk. The question (issue 24): does an epoch fall far below
its warm speed when the maps are not in memory? Compare the cold read rate with the training step rate
(docs/benchmarks.md): an epoch waits on reads only where reading is the slower of the two.

Usage: python bench/bench_cold_cache.py --data DATA [--folder DATA/features/NAME] [--batch 64]
The folder defaults to the largest one under DATA/features/.
"""

from __future__ import annotations

import argparse
import gc
import os
import time
from pathlib import Path

import numpy as np

from artextract.engine.data import CachedSplit, load_data_folder
from artextract.engine.features import FEATURES_FILE, FeatureCache, _read_layout


def _page_cache_mb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("Cached:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _drop_pages(path: Path) -> float:
    """Ask the kernel to drop the file's cached pages; returns how many MB the page cache shrank by."""
    before = _page_cache_mb()
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    return before - _page_cache_mb()


def _epoch_reads(split: CachedSplit, batch: int, seed: int) -> float:
    """Images per second for one shuffled pass over the split's rows."""
    order = np.random.default_rng(seed).permutation(len(split))
    started = time.perf_counter()
    for start in range(0, len(order), batch):
        split[order[start: start + batch]]
    return len(order) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--folder", type=Path, help="a feature folder (default: the largest under DATA/features)")
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    info = load_data_folder(args.data)
    folder = args.folder or max((p for p in (args.data / "features").iterdir() if (p / FEATURES_FILE).is_file()),
                                key=lambda p: (p / FEATURES_FILE).stat().st_size)
    layout = _read_layout(folder)
    if layout is None:
        raise SystemExit(f"{folder} is not a feature folder")
    split = CachedSplit(info, "train", list(info.classes), FeatureCache(folder, layout))
    maps = folder / FEATURES_FILE
    size_mb = maps.stat().st_size / 1e6
    _epoch_reads(split, args.batch, seed=0)  # brings the file into memory
    warm = _epoch_reads(split, args.batch, seed=1)
    rows = len(split)
    del split  # unmapped first: the kernel keeps pages that a live mapping still holds
    gc.collect()
    dropped = _drop_pages(maps)
    split = CachedSplit(info, "train", list(info.classes), FeatureCache(folder, layout))  # a fresh memory map
    cold = _epoch_reads(split, args.batch, seed=2)
    assert len(split) == rows
    print(f"{folder.name}: {len(split):,} training rows of {layout.row_bytes / 1e3:,.1f} kB "
          f"({size_mb:,.0f} MB file), batch {args.batch}, shuffled")
    print(f"  warm (page cache)                {warm:10,.0f} img/s")
    print(f"  cold (pages dropped: {dropped:,.0f} MB)  {cold:10,.0f} img/s  ({cold / warm:6.1%} of warm)")


if __name__ == "__main__":
    main()
