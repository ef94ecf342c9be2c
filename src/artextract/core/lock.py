"""Advisory locks on the folders ArtExtract writes, so that a second process is refused at once instead of mixing
its files with the first one's.

A folder's lock is `.artextract.lock` inside it, taken with `flock` (which Linux also honours over NFS). Writers
take it exclusively; readers and cooperating writers (the shards of one `prepare`) share it. The exclusive holder
writes who it is into the file, so that the refusal can name it. The lock goes with the process: a killed run
leaves no lock behind, only the (harmless) file.
"""

from __future__ import annotations

import errno
import os
import socket
import stat
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from artextract.core.progress import log
from artextract.errors import ArtExtractError

try:
    import fcntl
except ImportError:  # Windows: no flock; runs there are not protected against a concurrent second run
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".artextract.lock"
SHARED_WAIT_S = 5.0  # how long a process wanting the lock shared waits for an exclusive holder


class FolderBusy(ArtExtractError):
    """Another process holds the folder's lock."""


class FolderLock:
    """One lock file, open; `try_exclusive()` / `shared()` take or change the lock, `release()` drops it."""

    def __init__(self, folder: Path, name: str = LOCK_NAME) -> None:
        self.folder, self.path = folder, folder / name
        self._fd = _open_lock_file(self.path)

    def __enter__(self) -> FolderLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def try_exclusive(self) -> bool:
        """Take the lock exclusively if nobody else holds it, shared or not; False (nothing changed) otherwise."""
        if self._fd is None:
            return True
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        _write_holder(self._fd)
        return True

    def exclusive(self, why: str = "") -> None:
        if not self.try_exclusive():
            raise self.busy(why)

    def wait_exclusive(self, what: str) -> None:
        """Take the lock exclusively, waiting (with a log line saying for whom) while another process holds it: for
        work that a second process should reuse rather than be refused from (the same feature maps)."""
        if self.try_exclusive():
            return
        holder = self.holder()
        who = f" ({holder})" if holder else ""
        log.info("%s: another artextract process%s is %s; waiting for it", self.folder, who, what)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        _write_holder(self._fd)

    def shared(self) -> None:
        """Share the lock (or turn an exclusive one into a shared one). An exclusive holder is waited for up to
        SHARED_WAIT_S, since some hold it only for a moment (prepare, while it checks the cache's layout)."""
        if self._fd is None:
            return
        deadline = time.monotonic() + SHARED_WAIT_S
        while True:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise self.busy() from None
                time.sleep(0.1)

    def busy(self, why: str = "") -> FolderBusy:
        """The error for a refused process, naming the exclusive holder when one wrote its name."""
        holder = self.holder()
        who = f" ({holder})" if holder else ""
        return FolderBusy(f"{self.folder} is in use by another artextract process{who}{why}: wait for it to finish, "
                          "or choose another folder")

    def holder(self) -> str:
        """Who holds the lock exclusively, as the holder wrote it ("" when unknown)."""
        if self._fd is None:
            return ""
        with suppress(OSError):
            return os.pread(self._fd, 300, 0).decode("utf-8", "replace").strip()
        return ""

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None


@contextmanager
def folder_lock(folder: Path, exclusive: bool = True) -> Iterator[FolderLock]:
    """Hold `folder`'s lock for the block: exclusive (a writer alone) or shared. Raises FolderBusy at once, naming
    the holder, when another process holds it in a conflicting way. A folder that cannot hold a lock file (read-only,
    say) is used unlocked: nobody can write it then, or only its owner."""
    with FolderLock(folder) as lock:
        if exclusive:
            lock.exclusive()
        else:
            lock.shared()
        yield lock


def writer_of(folder: Path) -> str | None:
    """Who holds `folder`'s lock exclusively now, as the holder wrote it ("another artextract process" if it did
    not), or None when nobody does. Takes nothing and creates nothing: for readers that go on but should say so."""
    path = folder / LOCK_NAME
    if fcntl is None or not path.is_file():
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return None  # shared at once: no writer
    except BlockingIOError:
        with suppress(OSError):
            return os.pread(fd, 300, 0).decode("utf-8", "replace").strip() or "another artextract process"
        return "another artextract process"
    finally:
        os.close(fd)  # drops the shared lock, if taken


def _open_lock_file(path: Path) -> int | None:
    if fcntl is None:
        return None
    for flags in (os.O_RDWR | os.O_CREAT, os.O_RDONLY):
        try:
            # O_NONBLOCK: a FIFO planted under the lock's name must not hang the open.
            fd = os.open(path, flags | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0), 0o666)
        except (PermissionError, FileNotFoundError) as err:
            if isinstance(err, FileNotFoundError) and not path.parent.is_dir():
                raise ArtExtractError(f"cannot lock {path.parent}: the folder does not exist") from None
            continue  # a read-only folder (or file): try to share the lock read-only, else go unlocked
        except OSError as err:
            if err.errno != errno.EROFS:
                raise ArtExtractError(f"cannot lock {path.parent} ({err.strerror or err})") from None
            continue
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise ArtExtractError(f"{path} is not a regular file; remove it and rerun")
        return fd
    return None


def _write_holder(fd: int) -> None:
    """Record who holds the lock, for the message of the process that is refused."""
    command = " ".join(["artextract", *sys.argv[1:2]]) if sys.argv else "artextract"
    text = f"pid {os.getpid()} on {socket.gethostname()}, `{command}`, since {time.strftime('%Y-%m-%d %H:%M:%S')}"
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, text.encode(), 0)
    except OSError:
        pass  # a read-only lock file still locks; the message is then less precise
