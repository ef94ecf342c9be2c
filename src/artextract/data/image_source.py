"""Where the images are: a folder or a zip archive (wikiart.zip read in place, never extracted).

Reading one file either returns its bytes or raises `UnreadableFile` with the reason the report shows: a member
with a bad CRC, an encrypted member, an unsupported compression method (deflate64), a file over the size limit
(checked before inflating, and again while streaming, since a header may lie), a symlink loop, a FIFO or device
(never opened for blocking reads, so nothing hangs).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import zipfile
import zlib
from pathlib import Path
from typing import Protocol

from artextract.config import DEFAULT_MAX_FILE_MB
from artextract.data.names import outside_reason
from artextract.errors import DataError

_UTF8_FLAG, _ENCRYPTED_FLAG = 0x800, 0x1
_MB = 1 << 20
DEFAULT_MAX_BYTES = DEFAULT_MAX_FILE_MB * _MB
# The methods Python's zipfile inflates; others (deflate64 = 9, PPMd, ...) raise NotImplementedError deep inside.
_ZIP_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate", zipfile.ZIP_BZIP2: "bzip2",
                zipfile.ZIP_LZMA: "lzma"}
_ZIP_METHOD_NAMES = {9: "deflate64", 98: "PPMd", 93: "zstandard", 95: "xz", 12: "bzip2", 14: "lzma"}


class UnreadableFile(Exception):
    """One file cannot be read; the message is the reason (the file is skipped, the run goes on)."""


def _too_large(size: int, max_bytes: int) -> UnreadableFile:
    return UnreadableFile(f"{size / _MB:,.0f} MB, over the {max_bytes / _MB:,.0f} MB limit for one image file "
                          "(raise it with --set prepare.max_file_mb=N)")


def read_regular_file(path: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """The bytes of a regular file of at most `max_bytes`; UnreadableFile for anything else."""
    try:
        # O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as err:
        raise UnreadableFile(_os_reason(err)) from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise UnreadableFile("is a folder")
        if not stat.S_ISREG(info.st_mode):
            raise UnreadableFile("not a regular file (a FIFO, socket or device)")
        if info.st_size > max_bytes:
            raise _too_large(info.st_size, max_bytes)
        try:
            data = handle.read(max_bytes + 1)
        except OSError as err:
            raise UnreadableFile(_os_reason(err)) from None
    if len(data) > max_bytes:  # it grew while being read
        raise _too_large(len(data), max_bytes)
    return data


def _identity(*parts: object) -> int:
    """64 bits that change when a file is replaced (0 is kept for "cannot tell": the row is decoded again)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") or 1


def _os_reason(err: OSError) -> str:
    if isinstance(err, FileNotFoundError):
        return "file not found"
    return f"cannot read the file ({err.strerror or err})"  # ELOOP: "Too many levels of symbolic links"


class ImageSource(Protocol):
    """Lists the files under one root and reads them by relative POSIX path."""

    location: str
    max_bytes: int  # larger files are skipped unread
    refused: list[tuple[str, str]]  # (name, why) of entries list_files left out: never read, reported by prepare

    def list_files(self) -> list[str]: ...

    def read(self, path: str) -> bytes: ...

    def identity(self, path: str) -> int: ...


class FolderSource:
    def __init__(self, root: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.root = root.resolve()
        self.location = str(self.root)
        self.max_bytes = max_bytes
        self.refused: list[tuple[str, str]] = []

    def list_files(self) -> list[str]:
        files, self.refused = [], []
        for dirpath, _dirnames, filenames in os.walk(self.root):
            for name in filenames:
                full = Path(dirpath) / name
                relative = full.relative_to(self.root).as_posix()
                # A link pointing outside the root would let a listing reach files it must not open.
                if full.is_symlink() and not _inside(full, self.root):
                    self.refused.append((relative, "a symbolic link to a file outside the image folder"))
                    continue
                files.append(relative)
        return sorted(files)

    def read(self, path: str) -> bytes:
        return read_regular_file(self.root / path, self.max_bytes)

    def identity(self, path: str) -> int:
        """Size, modification time and inode: a file replaced (copied over, re-downloaded) gets another."""
        try:
            info = os.stat(self.root / path)
        except OSError:
            return 0
        return _identity(info.st_size, info.st_mtime_ns, info.st_ino)


def _inside(link: Path, root: Path) -> bool:
    """Whether a link resolves inside root; a loop is kept (reading it is reported as one)."""
    try:
        return link.resolve().is_relative_to(root)
    except (RuntimeError, OSError):  # RuntimeError: a symlink loop, before Python 3.13
        return True



def _member_name(info: zipfile.ZipInfo) -> str:
    """The member's name as its creator meant it: names without the UTF-8 flag are often UTF-8 anyway."""
    name = info.filename
    if not info.flag_bits & _UTF8_FLAG:
        with contextlib.suppress(UnicodeEncodeError, UnicodeDecodeError):
            name = name.encode("cp437").decode("utf-8")
    return name


class ZipSource:
    def __init__(self, archive: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.archive = archive.resolve()
        self.location = str(self.archive)
        self.max_bytes = max_bytes
        self._zip: zipfile.ZipFile | None = None
        self._members: dict[str, zipfile.ZipInfo] | None = None
        self._pid = 0
        self.refused: list[tuple[str, str]] = []

    def __getstate__(self) -> dict[str, object]:
        # Worker processes open their own handle; a ZipFile cannot be shared across processes.
        return {"archive": self.archive, "location": self.location, "max_bytes": self.max_bytes, "_zip": None,
                "_members": None, "_pid": 0, "refused": self.refused}

    def _open(self) -> tuple[zipfile.ZipFile, dict[str, zipfile.ZipInfo]]:
        # A forked worker inherits the parent's handle, whose file offset the processes would share.
        if self._zip is None or self._members is None or self._pid != os.getpid():
            self._pid = os.getpid()
            try:
                self._zip = zipfile.ZipFile(self.archive)
            except (zipfile.BadZipFile, OSError) as err:
                raise DataError(f"cannot read the zip archive {self.archive}: {err}") from None
            named = [(_member_name(i), i) for i in self._zip.infolist() if not i.is_dir()]
            # Nothing is ever extracted, but such a name (../../x.jpg, /tmp/x.jpg) is hostile or broken: left
            # out and reported, so that it neither reaches a path nor hides the archive's wrapper folder.
            outside = {name: outside_reason(name) for name, _ in named}
            self.refused = [(name, f"its name points outside the archive: {why}")
                            for name, why in outside.items() if why]
            self._members = {name: info for name, info in named if not outside[name]}
        return self._zip, self._members

    def list_files(self) -> list[str]:
        return sorted(self._open()[1])

    def identity(self, path: str) -> int:
        """The member's CRC-32 of its content and its size: the same painting in a rebuilt archive keeps it."""
        info = self._open()[1].get(path)
        return 0 if info is None else _identity(info.CRC, info.file_size)

    def read(self, path: str) -> bytes:
        archive, members = self._open()
        info = members[path]
        if info.flag_bits & _ENCRYPTED_FLAG:
            raise UnreadableFile("encrypted in the archive (needs a password); store it unencrypted")
        if info.compress_type not in _ZIP_METHODS:
            method = _ZIP_METHOD_NAMES.get(info.compress_type, f"method {info.compress_type}")
            raise UnreadableFile(f"compressed with {method}, which Python's zipfile cannot inflate; re-create the "
                                 "archive with deflate (zip -r, or Python's shutil.make_archive)")
        if info.file_size > self.max_bytes:
            raise _too_large(info.file_size, self.max_bytes)
        try:
            with archive.open(info) as member:
                data = member.read(self.max_bytes + 1)  # streamed: never more than the limit in memory
        except zipfile.BadZipFile as err:  # "Bad CRC-32 for file ...", a damaged local header
            raise UnreadableFile(f"damaged in the archive ({err}); the archive may be incomplete, download it "
                                 "again") from None
        except (zlib.error, EOFError, OSError, NotImplementedError, RuntimeError) as err:
            raise UnreadableFile(f"damaged in the archive ({type(err).__name__}: {err})") from None
        if len(data) > self.max_bytes:
            raise _too_large(len(data), self.max_bytes)
        return data


def open_source(path: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> ImageSource:
    if path.is_dir():
        return FolderSource(path, max_bytes)
    if path.is_file():
        if not zipfile.is_zipfile(path):
            raise DataError(f"--images {path} is neither a folder nor a zip archive")
        return ZipSource(path, max_bytes)
    raise DataError(f"--images {path} does not exist; point it at the image folder or at wikiart.zip")
