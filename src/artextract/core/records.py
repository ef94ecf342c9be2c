"""Reading back the small JSON records the stages write (run.json, classes.json, inputs.json, metrics.json): a
damaged or hand-edited one is named in one line with the way to fix it, never met as a JSONDecodeError or a
KeyError further on."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from artextract.errors import ArtExtractError


def read_record(path: Path, fix: str, keys: tuple[str, ...] = ()) -> dict[str, Any]:
    """The JSON object in `path`, which must hold `keys`; ArtExtractError ending in `fix` otherwise."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ArtExtractError(f"{path} is missing; {fix}") from None
    except (OSError, ValueError) as err:  # ValueError: bad JSON or bytes that are not UTF-8
        reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err).splitlines()[0]
        raise ArtExtractError(f"{path} is damaged ({reason}); {fix}") from None
    if not isinstance(value, dict):
        raise ArtExtractError(f"{path} is damaged (a JSON {type(value).__name__}, not an object); {fix}")
    missing = [key for key in keys if key not in value]
    if missing:
        raise ArtExtractError(f"{path} is damaged (no {missing[0]!r}); {fix}")
    return value


def read_classes(path: Path, fix: str) -> dict[str, list[str]]:
    """A classes.json (DATA's or EVAL's): a non-empty list of class names per task."""
    classes = read_record(path, fix)
    if not classes or not all(isinstance(names, list) and names for names in classes.values()):
        raise ArtExtractError(f"{path} is damaged (not a list of class names per task); {fix}")
    return classes


def file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB blocks (checkpoints are too large to read whole)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
