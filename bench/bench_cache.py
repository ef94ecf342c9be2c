"""Cache building and reading rates, each against a reference measured in the same run.

1. Build: `prepare`'s cache builder on all cores against (a) plain Pillow decoding of the same originals
   (full decode, convert, resize; one core) and (b) the single-core draft-mode decode rate x cores, the
   target's yardstick (issue 3: at least 80 % of it).
2. Read (the training side): random batches from the uint8 array cache against decoding the same images
   stored as pre-resized JPEGs (the other cache format considered).

Usage: python bench/bench_cache.py [--images 160] [--original-size 1200] [--image-size 256]
"""

from __future__ import annotations

import argparse
import io
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from artextract.config import SynthConfig
from artextract.data.cache import build_cache
from artextract.data.cache_files import open_images
from artextract.data.decode import decode_square
from artextract.data.image_source import FolderSource
from artextract.data.synth import generate_dataset

MAX_PIXELS = 120_000_000


def _plain_pillow(paths: list[Path], size: int) -> float:
    start = time.perf_counter()
    for path in paths:
        with Image.open(path) as image:
            image.convert("RGB").resize((size, size), Image.Resampling.BICUBIC)
    return len(paths) / (time.perf_counter() - start)


def _draft_decode(paths: list[Path], size: int) -> float:
    start = time.perf_counter()
    for path in paths:
        decode_square(path.read_bytes(), size, MAX_PIXELS)
    return len(paths) / (time.perf_counter() - start)


def _read_rate_array(images: np.ndarray, batch: int, batches: int, rng: np.random.Generator) -> float:
    start = time.perf_counter()
    for _ in range(batches):
        rows = np.sort(rng.integers(0, len(images), batch))
        np.ascontiguousarray(images[rows])
    return batch * batches / (time.perf_counter() - start)


def _read_rate_jpeg(encoded: list[bytes], batch: int, batches: int, rng: np.random.Generator) -> float:
    start = time.perf_counter()
    for _ in range(batches):
        for row in rng.integers(0, len(encoded), batch):
            np.asarray(Image.open(io.BytesIO(encoded[row])).convert("RGB"))
    return batch * batches / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=160)
    parser.add_argument("--original-size", type=int, default=1200, help="short side of the generated originals")
    parser.add_argument("--image-size", type=int, default=256)
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        per_artist = max(2, args.images // 8)
        generate_dataset(root / "synth", SynthConfig(artists=8, per_artist=per_artist, size=args.original_size))
        source = FolderSource(root / "synth" / "wikiart")
        members = source.list_files()
        paths = [source.root / m for m in members]
        mean_bytes = sum(p.stat().st_size for p in paths) / len(paths)
        sample = paths[:: 4]  # every fourth, across all styles
        _draft_decode(sample[:4], args.image_size)  # warm the page cache and imports
        plain = _plain_pillow(sample, args.image_size)
        draft = _draft_decode(sample, args.image_size)
        start = time.perf_counter()
        result = build_cache(source, members, members, root / "cache", args.image_size, MAX_PIXELS, workers=0)
        build = len(members) / (time.perf_counter() - start)
        assert result.built_now == len(members)

        images = np.asarray(open_images(root / "cache", result.layout))
        rng = np.random.default_rng(0)
        encoded = []
        for array in images:
            buffer = io.BytesIO()
            Image.fromarray(array).save(buffer, format="JPEG", quality=90)
            encoded.append(buffer.getvalue())
        batch = min(256, len(images))
        array_rate = _read_rate_array(open_images(root / "cache", result.layout), batch, 20, rng)
        jpeg_rate = _read_rate_jpeg(encoded, batch, 2, rng)

    print(f"{len(members)} originals, short side {args.original_size} px, {mean_bytes / 1e3:.0f} kB each; "
          f"cache {args.image_size} px; {cores} cores")
    print(f"  plain Pillow decode+resize, 1 core : {plain:8.1f} img/s")
    print(f"  draft-mode decode, 1 core          : {draft:8.1f} img/s  ({draft / plain:.2f}x plain)")
    print(f"  cache build, {cores} workers            : {build:8.1f} img/s  ({build / (draft * cores):.0%} of "
          f"draft x cores, target 80%; {build / plain:.1f}x plain Pillow)")
    print(f"  read uint8 cache, batch {batch}       : {array_rate:8.0f} img/s")
    print(f"  read JPEG cache (q90), 1 core      : {jpeg_rate:8.0f} img/s  (uint8 is {array_rate / jpeg_rate:.1f}x)")


if __name__ == "__main__":
    main()
