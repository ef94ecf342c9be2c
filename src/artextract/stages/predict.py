"""`artextract predict`: the command's output formats (a terminal table, JSON, CSV) over the Python API of
artextract/predictor.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from artextract.core.safe_text import write_csv
from artextract.errors import ArtExtractError
from artextract.predictor import expand_inputs, load_model, to_frame

__all__ = ["expand_inputs", "format_predictions", "format_similar", "load_model", "output_format"]


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


def format_similar(results: list[dict[str, Any]], format_: str) -> str:
    """`similar`'s results as a terminal table, JSON, or CSV (one row per query image and neighbour)."""
    import io
    import json

    import pandas as pd

    if format_ == "json":
        return json.dumps(results, indent=2, ensure_ascii=False) + "\n"
    if format_ == "csv":
        rows = [{"source": r["source"], "status": r["status"], "rank": rank, "path": n["path"],
                 "similarity": n["similarity"], "split": n["split"],
                 **{f"label_{t}": v for t, v in n["labels"].items()},
                 **{f"predicted_{t}": v for t, v in n["predicted"].items()}}
                for r in results for rank, n in enumerate(r["similar"], start=1)]
        rows += [{"source": r["source"], "status": r["status"]} for r in results if not r["similar"]]
        buffer = io.StringIO()
        write_csv(pd.DataFrame(rows), buffer, float_format="%.6f")
        return buffer.getvalue()
    from artextract.report.terminal import similar_table

    return similar_table(results)
