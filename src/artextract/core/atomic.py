"""Atomic file writes: a reader (or a crash) never sees a half-written file.

Everything is written to a temporary file in the destination folder, flushed to disk and then
renamed over the destination, which POSIX makes atomic within one file system.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


def _default_file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


_FILE_MODE = _default_file_mode()


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success it is renamed to `path`, on error removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    os.chmod(tmp, _FILE_MODE)  # mkstemp makes files private (0600); outputs should be as readable as any file
    try:
        yield tmp
        # Again: some writers (safetensors) recreate the file, which makes it 0600 again.
        os.chmod(tmp, _FILE_MODE)
        _fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "w", **open_kwargs: Any) -> Iterator[IO[Any]]:
    """Open a file for writing that appears at `path` only once it is complete."""
    if not mode.startswith("w"):
        raise ValueError(f"atomic_open only writes whole files, got mode {mode!r}")
    with atomic_path(path) as tmp, open(tmp, mode, **open_kwargs) as handle:
        yield handle


def write_text(path: str | os.PathLike[str], text: str, newline: str | None = None) -> None:
    with atomic_open(path, "w", encoding="utf-8", newline=newline) as handle:
        handle.write(text)


def write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_open(path, "wb") as handle:
        handle.write(data)


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n")


def write_with(path: str | os.PathLike[str], writer: Callable[[Path], None]) -> None:
    """Atomically write a file produced by `writer(tmp_path)`, e.g. `df.to_parquet`."""
    with atomic_path(path) as tmp:
        writer(tmp)


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Remove the temporary files that writes killed midway (SIGKILL, power loss) left in `folder` and its direct
    subfolders (checkpoints/, cache/, explain/). Only call it while holding the folder's lock exclusively: a live
    writer's temporary file looks the same."""
    if not folder.is_dir():
        return []
    folders = [folder, *(p for p in folder.iterdir() if p.is_dir() and not p.is_symlink())]
    stale = [p for f in folders for p in f.glob(".*.tmp") if p.is_file() and not p.is_symlink()]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())
