"""Output folders: created on demand, never silently overwritten, checked for writability up front."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from artextract.errors import ArtExtractError


def is_empty_dir(path: Path) -> bool:
    return path.is_dir() and not any(path.iterdir())


def prepare_output_dir(path: str | os.PathLike[str], force: bool = False, resumable_marker: str | None = None) -> Path:
    """Create `path` (and parents) and check it can be written.

    A non-empty folder is refused unless `force` is set, or unless it contains `resumable_marker`
    (a file a previous run of the same stage left behind, so that rerunning resumes that run).
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ArtExtractError(f"{path} exists and is not a folder: choose another --out")
    resumable = resumable_marker is not None and (path / resumable_marker).exists()
    if path.is_dir() and not is_empty_dir(path) and not force and not resumable:
        raise ArtExtractError(f"{path} is not empty: choose an empty or new folder, or pass --force to write into it")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".artextract-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        reason = err.strerror or str(err)
        raise ArtExtractError(f"cannot write to {path} ({reason}): choose a folder you can write to") from None
    return path


@contextmanager
def undo_on_failure(path: Path, keep: Callable[[], bool] = lambda: False) -> Iterator[Path]:
    """On an error inside the block, remove what the block added to `path`, and `path` itself if the block created
    it, unless `keep()` says the partial result is worth keeping (a resumable checkpoint, say)."""
    path = Path(path)
    existed = path.exists()
    before = set(path.iterdir()) if path.is_dir() else set()
    try:
        yield path
    except BaseException:
        if not keep() and path.is_dir():
            for entry in set(path.iterdir()) - before:
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)
            if not existed and not any(path.iterdir()):
                path.rmdir()
        raise
