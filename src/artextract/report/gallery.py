"""What `evaluate` draws into EVAL besides the numbers: each task's figures (confusion matrices, F1 per class,
reliability), and the gallery of explained paintings (thumbnails and Grad-CAM / attention heat maps of the view
the model saw) that report.html shows.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from artextract.analysis.outliers import nearest_rows
from artextract.core.atomic import write_bytes, write_with
from artextract.core.safe_text import write_csv
from artextract.layout import EvalFolder
from artextract.report import plots

EXPLAIN_OUTLIERS, EXPLAIN_CORRECT = 12, 6  # per task, as many as the report shows


def write_task_figures(out: EvalFolder, task: str, names: list[str], task_metrics: dict[str, Any],
                       trained: list[int] | None = None) -> None:
    """The confusion matrix (counts and row-normalised, CSV and PNG), F1 per class and the reliability diagram.
    `trained`: training images per class, when known (the PNG leaves out columns of classes without any that
    were never predicted; the CSV keeps every class)."""
    matrix = np.array(task_metrics["confusion"])
    for normalised in (False, True):
        suffix = "_normalised" if normalised else ""
        values = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1) if normalised else matrix
        table = pd.DataFrame(values, index=pd.Index(names, name="true \\ predicted"), columns=names)
        write_with(out.confusion(task, suffix, "csv"),
                   lambda tmp, t=table, f="%.4f" if normalised else None: write_csv(t, tmp, index=True, float_format=f))
        title = f"{task}: confusion matrix{' (row-normalised)' if normalised else ''}"
        write_bytes(out.confusion(task, suffix, "png"), plots.confusion_png(matrix, names, title, normalised, trained))
    write_bytes(out.figure("f1", task), plots.per_class_f1_png(task_metrics["per_class"], f"{task}: F1 per class"))
    write_bytes(out.figure("reliability", task),
                plots.reliability_png(task_metrics["calibration"], f"{task}: reliability"))


def explain_examples(model: Any, preprocessing: Any, images: np.ndarray, out: EvalFolder, outliers: pd.DataFrame,
                     metrics: dict[str, Any], seed: int) -> None:
    """Thumbnails and heat maps of the flagged outliers (evidence for the class each resembles) and of a sample
    of correct predictions (evidence for the predicted class), per task, each of the view the model saw; and
    thumbnails of the other paintings the report shows (nearest paintings, examples of confused pairs).
    `images` is DATA's image cache (uint8 rows)."""
    import torch

    from artextract.engine.explain import attention_maps, grad_cam
    from artextract.report.images import REPORT_FORMAT, blend, encode

    for task, chosen in explained_rows(outliers, seed).items():
        cache_rows = chosen["cache_index"].to_numpy(np.int64)
        batch = torch.from_numpy(np.ascontiguousarray(images[cache_rows]))
        targets = torch.tensor(chosen["target"].to_numpy(np.int64))
        cams = grad_cam(model, batch, task, targets, preprocessing)
        attention = attention_maps(model, batch, preprocessing)
        for i, row in enumerate(cache_rows):
            seen = preprocessing.visible(batch[i].numpy())
            write_bytes(out.heatmap(row, task, "cam"), encode(blend(seen, cams[i]), REPORT_FORMAT))
            if attention is not None:
                write_bytes(out.heatmap(row, task, "attention"), encode(blend(seen, attention[i]), REPORT_FORMAT))
    for row in sorted(thumbnail_rows(outliers, metrics, seed)):
        picture = preprocessing.visible(np.ascontiguousarray(images[row]))
        write_bytes(out.thumbnail(row), encode(picture, REPORT_FORMAT))


def explained_rows(outliers: pd.DataFrame, seed: int) -> dict[str, pd.DataFrame]:
    """Per task, the rows that get heat maps, with the class each map explains (`target`): the flagged outliers
    the gallery shows (for the class they resemble) and a seeded sample of correct predictions."""
    rng = np.random.default_rng(seed)
    chosen = {}
    for task, frame in outliers.groupby("task", sort=False):
        flagged = frame[frame["flagged"]].head(EXPLAIN_OUTLIERS)
        correct = frame[frame["predicted"] == frame["label"]]
        sample = correct.iloc[np.sort(rng.permutation(len(correct))[:EXPLAIN_CORRECT])]
        rows = pd.concat([flagged.assign(target=flagged["resembles"]), sample.assign(target=sample["predicted"])])
        if not rows.empty:
            chosen[str(task)] = rows
    return chosen


def thumbnail_rows(outliers: pd.DataFrame, metrics: dict[str, Any], seed: int) -> set[int]:
    """Cache indices of every painting report.html shows as a thumbnail."""
    rows: set[int] = set()
    for task, chosen in explained_rows(outliers, seed).items():
        rows.update(chosen["cache_index"].astype(int))
        frame = outliers[outliers["task"] == task]
        for _, outlier in chosen[chosen["flagged"]].iterrows():
            rows.update(index for _, index in nearest_rows(frame, outlier))
    for task_metrics in metrics["tasks"].values():
        for pair in task_metrics.get("most_confused", []):
            rows.update(example["cache_index"] for example in pair.get("examples", []))
    return rows
