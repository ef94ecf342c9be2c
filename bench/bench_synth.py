"""Synthetic-dataset generation rate: all cores against one core, measured in the same run.

Usage: python bench/bench_synth.py [--images 1000] [--size 256]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from artextract.config import SynthConfig
from artextract.data.synth import generate_dataset


def _rate(images: int, size: int, workers: int) -> float:
    artists = 20
    config = SynthConfig(artists=artists, per_artist=max(2, images // artists), size=size, workers=workers)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        summary = generate_dataset(Path(tmp), config)
        return summary.images / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--size", type=int, default=256)
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    single = _rate(max(100, args.images // 5), args.size, workers=1)
    parallel = _rate(args.images, args.size, workers=0)
    print(f"synth {args.images} images at {args.size} px on {cores} cores")
    print(f"  one core : {single:8.1f} images/s")
    print(f"  all cores: {parallel:8.1f} images/s  ({parallel / single:.2f}x one core, "
          f"{args.images / parallel:.1f} s for {args.images} images)")


if __name__ == "__main__":
    main()
