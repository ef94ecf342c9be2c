"""The image cache's files as everything else reads them: its layout (size, row count, limits, fingerprint), the
digests that key what is computed from it, and the read-only memory map of its images. How the cache is built and
resumed is data/cache.py."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from artextract.errors import DataError

IMAGES_FILE, LAYOUT_FILE = "images.u8", "layout.json"


@dataclass(frozen=True)
class CacheLayout:
    image_size: int
    count: int
    fingerprint: str
    format: str = "uint8 NxHxWx3, C order"
    max_pixels: int = 0  # 0: a layout.json of an older ArtExtract, which did not record them
    max_file_bytes: int = 0

    @property
    def row_bytes(self) -> int:
        return self.image_size * self.image_size * 3

    def describe(self, other: CacheLayout | None = None) -> str:
        """'N images at S px', with the limits when they are what differs from `other`."""
        text = f"{self.count} images at {self.image_size} px"
        if other is not None and (other.count, other.image_size) == (self.count, self.image_size):
            text += (f" with limits of {self.max_pixels:,} pixels and {self.max_file_bytes >> 20:,} MB per file"
                     if self.max_pixels else " by an older ArtExtract")
        return text


def fingerprint(paths: Sequence[str], image_size: int, max_pixels: int, max_file_bytes: int) -> str:
    digest = hashlib.sha256(f"{image_size}\n{max_pixels}\n{max_file_bytes}\n".encode())
    for path in paths:
        digest.update(path.encode("utf-8") + b"\n")
    return digest.hexdigest()


def contents_digest(fingerprint: str, pixels: Sequence[int] | np.ndarray | None) -> str:
    """What the cache holds: its layout and every row's pixel digest (None: DATA of an older ArtExtract, which
    did not record them; its layout fingerprint then, as that version keyed its feature maps)."""
    if pixels is None:
        return fingerprint
    digest = hashlib.sha256(fingerprint.encode())
    digest.update(np.asarray(pixels, dtype="<u8").tobytes())
    return digest.hexdigest()


def pixels_digest(array: np.ndarray) -> int:
    return int.from_bytes(hashlib.blake2b(array.tobytes(), digest_size=8).digest(), "little")


def open_images(cache_dir: Path, layout: CacheLayout, mode: str = "r") -> np.memmap:
    """The cached images as a read-only (or `r+`) memory map of shape N x S x S x 3."""
    shape = (layout.count, layout.image_size, layout.image_size, 3)
    return np.memmap(cache_dir / IMAGES_FILE, dtype=np.uint8, mode=mode, shape=shape)


def images_complete(cache_dir: Path, layout: CacheLayout) -> bool:
    """Whether the images file exists and holds every row of `layout` (it may have been deleted or cut short)."""
    path = cache_dir / IMAGES_FILE
    return path.is_file() and path.stat().st_size >= layout.count * layout.row_bytes


def open_cache(cache_dir: Path) -> np.memmap:
    """The cached images of a prepared DATA folder, read-only; a clear error when the cache is unusable."""
    layout = read_layout(cache_dir)
    if layout is None or not images_complete(cache_dir, layout):
        raise DataError(f"{cache_dir} holds no complete image cache; rerun artextract prepare on {cache_dir.parent} "
                        "(it resumes and rebuilds what is missing)")
    return open_images(cache_dir, layout)


def read_layout(cache_dir: Path) -> CacheLayout | None:
    try:
        return CacheLayout(**json.loads((cache_dir / LAYOUT_FILE).read_text()))
    except (OSError, ValueError, TypeError):
        return None
