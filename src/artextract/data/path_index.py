"""Match the paths written in the CSVs to the files that really exist, whatever their spelling.

Tried in order: the exact path; the normalising key (mojibake repaired, Unicode NFC, case-folded, plain
apostrophes); the same key with apostrophes removed. Archives often wrap everything in one top folder
(`wikiart/...`): that prefix is detected and dropped.
"""

from __future__ import annotations

import difflib
import unicodedata
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from artextract.data.names import name_key, repair_mojibake


@dataclass(frozen=True)
class Resolution:
    path: str  # the file's real relative path
    how: str  # "exact" | "mojibake" | "unicode" | "case" | "apostrophe"


def _loose_key(path: str) -> str:
    return name_key(path).replace("'", "")


def _how(csv_path: str, real: str) -> str:
    if repair_mojibake(csv_path) != csv_path:
        return "mojibake"
    if unicodedata.normalize("NFC", csv_path) == unicodedata.normalize("NFC", real):
        return "unicode"
    if csv_path.casefold() == real.casefold():
        return "case"
    return "apostrophe"


class PathIndex:
    def __init__(self, files: Iterable[str], csv_top_folders: set[str] | None = None) -> None:
        files = list(files)
        self.prefix = _common_wrapper(files, csv_top_folders or set())
        # path below the wrapper -> real member path (strays outside the wrapper keep their own names)
        self.files = {f.removeprefix(self.prefix): f for f in files}
        self._by_key: dict[str, list[str]] = defaultdict(list)
        self._by_loose_key: dict[str, list[str]] = defaultdict(list)
        self._by_folder: dict[str, list[str]] = defaultdict(list)
        for path in self.files:
            self._by_key[name_key(path)].append(path)
            self._by_loose_key[_loose_key(path)].append(path)
            self._by_folder[name_key(path.rpartition("/")[0])].append(path)

    def resolve(self, csv_path: str) -> Resolution | None:
        """The real file for a CSV path (its path below any wrapper folder), or None."""
        if csv_path in self.files:
            return Resolution(csv_path, "exact")
        for table, key in ((self._by_key, name_key(csv_path)), (self._by_loose_key, _loose_key(csv_path))):
            matches = table.get(key)
            if matches:
                real = min(matches)  # several spellings of one name on disk: pick one deterministically
                return Resolution(real, _how(csv_path, real))
        return None

    def member(self, path: str) -> str:
        """The name to read from the source (with the wrapper folder, if any)."""
        return self.files[path]

    def closest(self, csv_path: str) -> str | None:
        """The most similar existing name in the same folder, to help the user see what went wrong."""
        folder, _, name = csv_path.rpartition("/")
        candidates = self._by_folder.get(name_key(folder)) or []
        names = {c.rpartition("/")[2]: c for c in candidates}
        best = difflib.get_close_matches(name, list(names), n=1, cutoff=0.5)
        return names[best[0]] if best else None


MACOS_FORKS = "__MACOSX"


def _common_wrapper(files: list[str], csv_top_folders: set[str]) -> str:
    """`wikiart/` when the image files sit under that one folder and the CSVs do not name it.

    Archives often carry strays beside it: files at the top level (README.txt) and macOS's `__MACOSX/` resource
    forks. Neither is an image folder, so neither stops the wrapper from being recognised.
    """
    tops = {f.split("/", 1)[0] for f in files if "/" in f} - {MACOS_FORKS}
    if len(tops) != 1:
        return ""
    (top,) = tops
    return "" if top in csv_top_folders else top + "/"
