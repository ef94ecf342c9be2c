"""`artextract predict`: the command's output formats (a terminal table, JSON, CSV) over the Python API of
artextract/predictor.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from artextract.core.safe_text import write_csv
from artextract.errors import ArtExtractError
from artextract.predictor import expand_inputs, load_model, to_frame

__all__ = ["expand_inputs", "format_predictions", "load_model", "output_format"]


def output_format(format_: str | None, output: Path | None) -> str:
    """The format asked for, else the one the output file's extension names, else the terminal table."""
    if format_ is None:
        suffix = output.suffix.lower().lstrip(".") if output is not None else ""
        if suffix not in ("", "json", "csv", "txt"):  # a p.xlsx holding a text table would mislead
            raise ArtExtractError(f"--output {output}: predict writes a table (.txt), JSON (.json) or CSV (.csv), "
                                  "not ." + suffix + "; name the file so, or pass --format")
        format_ = suffix if suffix in ("json", "csv") else "table"
    if format_ not in ("table", "json", "csv"):
        raise ArtExtractError(f"--format must be table, json or csv, got {format_!r}")
    return format_


def format_predictions(results: list[dict[str, Any]], format_: str) -> str:
    """Results as a terminal table, JSON, or CSV (one row per image, task and rank)."""
    import io
    import json

    if format_ == "json":
        return json.dumps(results, indent=2, ensure_ascii=False) + "\n"
    if format_ == "csv":
        buffer = io.StringIO()
        write_csv(to_frame(results), buffer, float_format="%.6f")
        return buffer.getvalue()
    from artextract.report.terminal import predictions_table

    return predictions_table(results)
