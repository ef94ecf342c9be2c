"""What the two resumable array files (DATA's image cache, data/cache.py, and the feature maps, engine/features.py)
share: rows written into a memory-mapped file in any order, and a record of which rows are done saved now and
then, never before the rows themselves are on disk, so that a kill loses at most the last few seconds of work."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from artextract.core.atomic import atomic_path

SAVE_EVERY_S = 5.0  # seconds of work a kill may lose; the saves cost well under 1 % of either build


def sync_file(path: Path) -> None:
    """Flush the rows written through memory maps (by this process or its workers) to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_array(path: Path, array: np.ndarray) -> None:
    """An .npy record (the done or status rows), written whole or not at all."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.save(handle, array, allow_pickle=False)


class _Periodic:
    def __init__(self, save: Callable[[], None], every_s: float) -> None:
        self.save, self.every_s, self.last = save, every_s, time.monotonic()

    def tick(self) -> None:
        """Save when the last save is older than the interval."""
        if time.monotonic() - self.last > self.every_s:
            self.save()
            self.last = time.monotonic()


@contextmanager
def saving_progress(save: Callable[[], None], every_s: float | None = None) -> Iterator[_Periodic]:
    """`tick()` after each piece of work saves every `every_s` seconds (SAVE_EVERY_S by default); leaving saves
    once more, whatever ended the work (Ctrl-C included): what is done stays done."""
    periodic = _Periodic(save, SAVE_EVERY_S if every_s is None else every_s)
    try:
        yield periodic
    finally:
        save()
