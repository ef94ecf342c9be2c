"""Names from data (class names, file names) made safe where they leave the program: file names and CSV cells.

A class file may carry any name (`../../tmp/x`, `=HYPERLINK(...)`); `prepare` copies it into DATA and the model.
Output file names are built from `slug` (never from a name as it is), every CSV goes through `write_csv`,
which defuses cells a spreadsheet would run as a formula, and Markdown cells through `markdown_cell`.
"""

from __future__ import annotations

import csv
import html
import re
import unicodedata
from pathlib import Path
from typing import IO, Any

import pandas as pd

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
# A cell starting with one of these is a formula (or becomes one) in Excel, LibreOffice and Google Sheets (OWASP).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n")


def slug(text: str, limit: int = 40) -> str:
    """`text` as a file-name part: ASCII letters, digits, `.`, `_`, `-` only, no leading dot, at most `limit`
    characters, never empty. Not unique: callers add an index."""
    ascii_text = unicodedata.normalize("NFKD", str(text)).encode("ascii", "ignore").decode()
    cleaned = _UNSAFE.sub("_", ascii_text).lstrip(".")[:limit]
    return cleaned or "x"


def spreadsheet_safe(value: Any) -> Any:
    """A text cell that a spreadsheet would run as a formula, prefixed with `'` (shown as text); others unchanged."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def _texts(values: pd.Series | pd.Index) -> bool:
    return values.dtype == object or pd.api.types.is_string_dtype(values)


def _safe_frame(frame: pd.DataFrame) -> pd.DataFrame:
    safe = frame.copy()
    for column in safe.columns:
        if _texts(safe[column]):
            safe[column] = safe[column].map(spreadsheet_safe)
    safe.columns = [spreadsheet_safe(c) for c in safe.columns]
    if _texts(safe.index):
        safe.index = pd.Index([spreadsheet_safe(i) for i in safe.index], name=spreadsheet_safe(safe.index.name))
    return safe


def _has_carriage_return(frame: pd.DataFrame) -> bool:
    texts = [frame[c] for c in frame.columns if _texts(frame[c])] + [pd.Series(frame.columns, dtype=object),
                                                                    pd.Series(frame.index, dtype=object)]
    return any(values.map(lambda v: isinstance(v, str) and "\r" in v).any() for values in texts)


def write_csv(frame: pd.DataFrame, target: Path | IO[str], index: bool = False, **options: Any) -> None:
    """`frame.to_csv` with every text cell, header and index label made spreadsheet-safe: the one CSV writer."""
    safe = _safe_frame(frame)
    if _has_carriage_return(safe):  # "\n" rows leave a bare CR unquoted: it would start a row of its own
        options.setdefault("quoting", csv.QUOTE_NONNUMERIC)
    safe.to_csv(target, index=index, **options)


def markdown_cell(value: Any) -> str:
    """Text shown as itself in a Markdown table cell or list: no column break (`|`), no line break, no HTML tag
    (`<img onerror=...>`), no link or code span from a class or file name. Underscores stay: tf_efficientnet_lite0
    reads as itself in the terminal, and emphasis is harmless."""
    text = html.escape(" ".join(str(value).split()), quote=False)
    return re.sub(r"([\\`|\[\]])", r"\\\1", text)
