"""What finding duplicate paintings costs `prepare`: the fingerprint of one image (SHA-256 of its bytes, phash and
dhash of its cached square) against decoding it into the cache, and the pair search over all fingerprints against
a full N x N comparison on one thread (the reference, measured in the same run).

    python bench/bench_duplicates.py [--images 400] [--count 81446] [--side 1200]

The images are generated JPEGs of the given side (WikiArt's originals are about 1,200-1,600 px); the hashes for
the pair search are random 64-bit values (the search does the same work whatever they hold).
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import time
from datetime import date

import numpy as np
from PIL import Image

from artextract.data.decode import decode_square
from artextract.data.duplicates import NEAR_BITS, image_fingerprint, near_pairs


def _jpegs(count: int, side: int) -> list[bytes]:
    rng = np.random.default_rng(0)
    files = []
    for _ in range(count):
        small = rng.integers(0, 256, (side // 16, side // 16, 3), dtype=np.uint8)
        image = Image.fromarray(small).resize((side, side * 3 // 4), Image.Resampling.BICUBIC)
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=90)
        files.append(buffer.getvalue())
    return files


def _reference_pairs(phash: np.ndarray, dhash: np.ndarray) -> int:
    """Every row against every row, one thread: the plain way."""
    found = 0
    for start in range(0, len(phash), 256):
        close = np.bitwise_count(phash[start: start + 256, None] ^ phash[None, :]) <= NEAR_BITS
        close &= np.bitwise_count(dhash[start: start + 256, None] ^ dhash[None, :]) <= NEAR_BITS
        found += int(close.sum())
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--side", type=int, default=1200)
    parser.add_argument("--count", type=int, default=81_446)
    parser.add_argument("--cache-size", type=int, default=256)
    args = parser.parse_args()
    files = _jpegs(args.images, args.side)

    started = time.perf_counter()
    squares = [decode_square(data, args.cache_size, 10**9)[0] for data in files]
    decoding = time.perf_counter() - started
    started = time.perf_counter()
    for data, square in zip(files, squares, strict=True):
        image_fingerprint(data, square)
    hashing = time.perf_counter() - started
    print(f"{platform.machine()}, {os.cpu_count()} cores, {date.today()}: {args.images} JPEGs of "
          f"{args.side} x {args.side * 3 // 4} px, cache {args.cache_size} px")
    print(f"  decode into the cache: {args.images / decoding:,.0f} img/s on one core")
    print(f"  fingerprint (SHA-256 + phash + dhash): {args.images / hashing:,.0f} img/s on one core, "
          f"{hashing / decoding:.1%} of the decoding time")

    rng = np.random.default_rng(1)
    phash = rng.integers(0, 2**63, args.count, dtype=np.int64).astype(np.uint64)
    dhash = rng.integers(0, 2**63, args.count, dtype=np.int64).astype(np.uint64)
    started = time.perf_counter()
    pairs = near_pairs(phash, dhash)
    ours = time.perf_counter() - started
    reference_count = min(args.count, 20_000)  # the reference grows as N^2: timed on a part, scaled up
    started = time.perf_counter()
    _reference_pairs(phash[:reference_count], dhash[:reference_count])
    reference = (time.perf_counter() - started) * (args.count / reference_count) ** 2
    print(f"  pair search over {args.count:,} fingerprints: {ours:.1f} s ({len(pairs)} pairs); full N x N on one "
          f"thread {reference:.1f} s{' (scaled from 20,000)' if reference_count < args.count else ''}: "
          f"{reference / ours:.1f}x")


if __name__ == "__main__":
    main()
