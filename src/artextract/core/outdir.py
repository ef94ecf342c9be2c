"""Output folders: created on demand, never silently overwritten, checked for writability up front, and (for the
stages that own one) locked against a second process for as long as the stage writes them."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from artextract.core.atomic import remove_stale_temporaries
from artextract.core.lock import LOCK_NAME, folder_lock
from artextract.core.progress import log
from artextract.errors import ArtExtractError


def is_empty_dir(path: Path) -> bool:
    """No entry but (perhaps) the lock file of a run that stopped before writing anything."""
    return path.is_dir() and all(entry.name == LOCK_NAME for entry in path.iterdir())


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
        raise ArtExtractError(f"cannot write to {path} ({_reason(path, err)}): choose a folder you can write to") \
            from None
    return path


@contextmanager
def claimed_output_dir(path: str | os.PathLike[str], force: bool = False, resumable_marker: str | None = None,
                       earlier_outputs: Callable[[], Iterable[Path]] = tuple) -> Iterator[Path]:
    """`prepare_output_dir`, with the folder locked for the block, so that two runs given the same new folder
    cannot both pass the emptiness check and then mix their files. With `force`, what `earlier_outputs()` names
    (the files an earlier run of the stage wrote there) is removed first, so that the run starts clean; anything
    else in the folder is left alone."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ArtExtractError(f"{path} exists and is not a folder: choose another --out")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ArtExtractError(f"cannot create {path} ({_reason(path, err)}): choose a folder you can write to") \
            from None
    lock_existed = (path / LOCK_NAME).exists()
    with folder_lock(path) as lock:
        try:
            prepare_output_dir(path, force, resumable_marker)
        except ArtExtractError:
            if not lock_existed:  # leave a folder that was refused as it was
                lock.path.unlink(missing_ok=True)
            raise
        if force:
            remove_outputs(path, earlier_outputs())
        clean_temporaries(path)
        yield path


def clean_temporaries(folder: Path) -> None:
    """With `folder` locked: drop what killed writes left (see core.atomic)."""
    stale = remove_stale_temporaries(folder)
    if stale:
        log.info("removed %d unfinished temporary file(s) that a killed run left in %s", len(stale), folder)


def remove_outputs(folder: Path, outputs: Iterable[Path]) -> None:
    removed = []
    for entry in outputs:
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        elif entry.exists() or entry.is_symlink():
            entry.unlink()
        else:
            continue
        removed.append(entry.name)
    if removed:
        log.info("--force: removed the earlier run's %s from %s", ", ".join(sorted(removed)), folder)


def require_free_space(folder: Path, need_bytes: int, what: str) -> None:
    """Refuse, before the work, a write that the file system cannot hold (a memory-mapped write into a full disk
    kills the process with SIGBUS; a full disk mid-checkpoint loses the epoch)."""
    free = shutil.disk_usage(folder).free
    if need_bytes > free:
        raise ArtExtractError(f"{what} needs about {_size(need_bytes)} more on the file system of {folder}, which has "
                              f"{_size(free)} free: free some space, or choose a folder on a larger disk")


def require_writable_file(path: Path) -> None:
    """Check, before the work, that a file can be created at `path` (its folder exists or can be made)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".probe"):
            pass
    except OSError as err:
        raise ArtExtractError(f"cannot write {path} ({_reason(path.parent, err)}): choose a place you can write to") \
            from None


def _reason(path: Path, err: OSError) -> str:
    """Why `path` (a folder to be) cannot be made: a file standing where one of its folders should be is named, the
    rest is the system's word for it."""
    blocked = next((p for p in reversed([path, *path.parents]) if p.exists() and not p.is_dir()), None)
    return f"{blocked} is a file, not a directory" if blocked is not None else err.strerror or str(err)


def _size(nbytes: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if nbytes < 1024 or unit == "GB":
            return f"{nbytes:,.0f} {unit}" if unit == "bytes" else f"{nbytes:,.1f} {unit}"
        nbytes /= 1024
    raise AssertionError


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
