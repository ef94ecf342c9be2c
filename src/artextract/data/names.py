"""Spelling variants of image file names: mojibake, Unicode normal forms, case and apostrophes.

The ArtGAN style/genre CSVs carry ~1,300 names that were UTF-8, read as Latin-1 and then lower-cased
(`grégoire` became `grã©goire`), while image archives in circulation spell names in proper UTF-8, NFC or
NFD. `name_key` maps every spelling of a name to one key, so CSV rows can be matched against real files.
"""

from __future__ import annotations

import re
import unicodedata

_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "\u00b4": "'", "`": "'"})


def to_mojibake(name: str) -> str:
    """The damage seen in the real CSVs: UTF-8 bytes decoded as Latin-1, then lower-cased."""
    return name.encode("utf-8").decode("latin-1").lower()


def _is_continuation(byte: int) -> bool:
    return 0x80 <= byte <= 0xBF


def repair_mojibake(name: str) -> str:
    """Undo `to_mojibake` where the text shows it; return `name` unchanged where it does not.

    Lower-casing turned the UTF-8 lead bytes 0xC0-0xDE into 0xE0-0xFE (`Ã` into `ã`), so a plain
    Latin-1 round trip fails; lead bytes are restored where that makes valid UTF-8.
    """
    if all(ord(ch) < 0x80 for ch in name) or any(ord(ch) > 0xFF for ch in name):
        return name
    data = name.encode("latin-1")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    fixed = bytearray()
    i = 0
    while i < len(data):
        byte = data[i]
        is_three_byte = (0xE0 <= byte <= 0xEF and i + 2 < len(data)
                         and _is_continuation(data[i + 1]) and _is_continuation(data[i + 2]))
        if not is_three_byte and 0xE2 <= byte <= 0xFE and i + 1 < len(data) and _is_continuation(data[i + 1]):
            byte -= 0x20  # a lower-cased two-byte lead: 0xE3 ('ã') was 0xC3 ('Ã')
        fixed.append(byte)
        i += 1
    try:
        return bytes(fixed).decode("utf-8")
    except UnicodeDecodeError:
        return name


def name_key(name: str) -> str:
    """One key for every spelling of a relative path: mojibake repaired, NFC, case-folded, plain apostrophes."""
    repaired = repair_mojibake(unicodedata.normalize("NFC", name))
    return unicodedata.normalize("NFC", repaired).translate(_APOSTROPHES).casefold()


def outside_reason(path: str) -> str | None:
    """Why a relative path from a CSV row or an archive member would point outside its root (absolute, a drive,
    or `..`), or None when it stays inside."""
    if path.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:[\\/]", path):
        return "absolute path (paths must be relative to the image root)"
    if ".." in path.replace("\\", "/").split("/"):
        return "path escapes the image root ('..')"
    return None
