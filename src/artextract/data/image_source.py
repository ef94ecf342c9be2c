"""Where the images are: a folder or a zip archive (wikiart.zip read in place, never extracted)."""

from __future__ import annotations

import contextlib
import os
import zipfile
from pathlib import Path
from typing import Protocol

from artextract.errors import DataError

_UTF8_FLAG = 0x800


class ImageSource(Protocol):
    """Lists the files under one root and reads them by relative POSIX path."""

    location: str

    def list_files(self) -> list[str]: ...

    def read(self, path: str) -> bytes: ...


class FolderSource:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.location = str(self.root)

    def list_files(self) -> list[str]:
        files = []
        for dirpath, _dirnames, filenames in os.walk(self.root):
            for name in filenames:
                full = Path(dirpath) / name
                # A link pointing outside the root would let a listing reach files it must not open.
                if full.is_symlink() and not full.resolve().is_relative_to(self.root):
                    continue
                files.append(full.relative_to(self.root).as_posix())
        return sorted(files)

    def read(self, path: str) -> bytes:
        return (self.root / path).read_bytes()


def _member_name(info: zipfile.ZipInfo) -> str:
    """The member's name as its creator meant it: names without the UTF-8 flag are often UTF-8 anyway."""
    name = info.filename
    if not info.flag_bits & _UTF8_FLAG:
        with contextlib.suppress(UnicodeEncodeError, UnicodeDecodeError):
            name = name.encode("cp437").decode("utf-8")
    return name


class ZipSource:
    def __init__(self, archive: Path) -> None:
        self.archive = archive.resolve()
        self.location = str(self.archive)
        self._zip: zipfile.ZipFile | None = None
        self._members: dict[str, zipfile.ZipInfo] | None = None
        self._pid = 0

    def __getstate__(self) -> dict[str, object]:
        # Worker processes open their own handle; a ZipFile cannot be shared across processes.
        return {"archive": self.archive, "location": self.location, "_zip": None, "_members": None, "_pid": 0}

    def _open(self) -> tuple[zipfile.ZipFile, dict[str, zipfile.ZipInfo]]:
        # A forked worker inherits the parent's handle, whose file offset the processes would share.
        if self._zip is None or self._members is None or self._pid != os.getpid():
            self._pid = os.getpid()
            try:
                self._zip = zipfile.ZipFile(self.archive)
            except (zipfile.BadZipFile, OSError) as err:
                raise DataError(f"cannot read the zip archive {self.archive}: {err}") from None
            self._members = {_member_name(i): i for i in self._zip.infolist() if not i.is_dir()}
        return self._zip, self._members

    def list_files(self) -> list[str]:
        return sorted(self._open()[1])

    def read(self, path: str) -> bytes:
        archive, members = self._open()
        return archive.read(members[path])


def open_source(path: Path) -> ImageSource:
    if path.is_dir():
        return FolderSource(path)
    if path.is_file():
        if not zipfile.is_zipfile(path):
            raise DataError(f"--images {path} is neither a folder nor a zip archive")
        return ZipSource(path)
    raise DataError(f"--images {path} does not exist; point it at the image folder or at wikiart.zip")
