"""The evaluation files the explorer reads, checked once when it starts: a damaged or hand-edited file is refused in
one line naming it and the command that writes it again, instead of answering 500 on the pages that read it.

predictions.parquet and classes.json are checked where they are read (layout.EvalFolder.read_predictions); here:
outliers.csv and metrics.json (both recomputed from the predictions by `evaluate --from-predictions`), and what
ties the predictions to DATA's cache and to each other (cache rows in range, one embedding width).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from artextract.core.records import read_record
from artextract.errors import ArtExtractError

# what the pages read of outliers.csv (serve/collection.py's task view, the painting page)
OUTLIER_COLUMNS = ("task", "path", "score_combined", "flagged", "rank", "resembles_name")


def _recompute(run: Path) -> str:
    return f"`artextract evaluate --run {run} --from-predictions` writes it again"


def read_outliers(path: Path, run: Path) -> pd.DataFrame:
    """outliers.csv with the columns the pages read (an evaluation without labelled images may have none)."""
    if not path.is_file():
        return pd.DataFrame()
    try:
        outliers = pd.read_csv(path)
    except (ValueError, UnicodeDecodeError, pd.errors.EmptyDataError, pd.errors.ParserError) as err:
        raise ArtExtractError(f"{path} is damaged ({type(err).__name__}); {_recompute(run)}") from None
    missing = [column for column in OUTLIER_COLUMNS if column not in outliers.columns]
    if missing:
        raise ArtExtractError(f"{path} has no column {missing[0]!r}; {_recompute(run)}")
    if not pd.api.types.is_numeric_dtype(outliers["score_combined"]):
        raise ArtExtractError(f"{path}: score_combined is not a number in every row; {_recompute(run)}")
    return outliers


def read_metrics(path: Path, classes: dict[str, list[str]], run: Path) -> dict[str, Any]:
    """metrics.json, with a square confusion matrix of counts per task, one row per class."""
    metrics = read_record(path, _recompute(run))
    for task, names in classes.items():
        record = (metrics.get("tasks") or {}).get(task) if isinstance(metrics.get("tasks"), dict) else None
        if isinstance(record, dict) and record.get("images") == 0:
            continue  # no labelled painting of the task in the scored split: no matrix to show (its page is 404)
        matrix = record.get("confusion") if isinstance(record, dict) else None
        try:
            counts = np.asarray(matrix, dtype=np.int64)
        except (TypeError, ValueError):
            counts = np.zeros((0,), np.int64)
        if counts.shape != (len(names), len(names)) or (counts < 0).any():
            raise ArtExtractError(f"{path}: the {task} confusion matrix is not {len(names)} x {len(names)} counts; "
                                  f"{_recompute(run)}")
    return metrics


def check_predictions(predictions: pd.DataFrame, path: Path, cache_rows: int, run: Path) -> None:
    """Every painting's cache row exists in DATA's cache, and every embedding has the same width."""
    fix = f"`artextract evaluate --run {run} --force` writes it again"
    index = pd.to_numeric(predictions["cache_index"], errors="coerce")
    bad = ~index.between(0, cache_rows - 1)
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise ArtExtractError(f"{path} row {row}: cache_index {predictions['cache_index'].iloc[row]!r} is not a row "
                              f"of the DATA folder's cache ({cache_rows} images); {fix}")
    widths = predictions["embedding"].map(lambda value: len(value) if hasattr(value, "__len__") else -1)
    if len(widths) and (widths != widths.iloc[0]).any():
        row = int(np.flatnonzero((widths != widths.iloc[0]).to_numpy())[0])
        raise ArtExtractError(f"{path} row {row}: an embedding of width {widths.iloc[row]}, not "
                              f"{widths.iloc[0]} like the others; {fix}")
