"""One task's evaluation from its predictions: metrics, calibration, examples of confused pairs, outlier scores and
(with injected label noise) how well those scores find the flipped labels. Pure: arrays in, figures out, no files.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from artextract.analysis.calibration import calibration_report
from artextract.analysis.metrics import classification_metrics
from artextract.analysis.open_set import open_set_report
from artextract.analysis.outliers import HEADLINE, NOISE_MODES, inject_noise, most_confused, noise_detection, score_task
from artextract.analysis.probabilities import softmax

CONFUSED_EXAMPLES = 3  # thumbnails per confused pair of classes
_GALLERY_MODE = "uniform"  # the outlier frame the report shows when noise is injected (both modes are scored)


def stack(column: pd.Series) -> np.ndarray:
    """A column of equal-length arrays (logits, embeddings) as one N x D array."""
    return np.stack(column.to_numpy()) if len(column) else np.zeros((0, 0), np.float32)


def confused_examples(pairs: list[dict[str, Any]], labels: np.ndarray, logits: np.ndarray, paths: np.ndarray,
                      cache_rows: np.ndarray) -> None:
    """Adds to each confused pair up to CONFUSED_EXAMPLES paintings of its true class predicted as the other
    class, the most confidently wrong first."""
    predicted, confidence = logits.argmax(axis=1), softmax(logits).max(axis=1)
    for pair in pairs:
        rows = np.flatnonzero((labels == pair["true"]) & (predicted == pair["predicted"]))
        rows = rows[np.argsort(-confidence[rows], kind="stable")[:CONFUSED_EXAMPLES]]
        pair["examples"] = [{"path": str(paths[i]), "cache_index": int(cache_rows[i])} for i in rows]


def analyse_task(task: str, names: list[str], scored: pd.DataFrame, select: pd.DataFrame, embeddings: np.ndarray,
                 inject: float, seed: int, open_set: tuple[float, float, float] | None = None,
                 ) -> tuple[dict[str, Any], pd.DataFrame | None]:
    """(metrics, outlier frame) of `task` on the `scored` predictions; the selection split's predictions fit the
    temperature and say which classes get confused (for the "confusion" noise mode); `open_set` (the model
    file's temperature, threshold and accepted share) adds the flag rates. The frame is None when no scored image
    is labelled for the task."""
    labels = scored[f"label_{task}"].to_numpy()
    logits = stack(scored[f"logits_{task}"])
    metrics = classification_metrics(labels, logits, names, seed=seed)
    if metrics["images"] == 0:
        return metrics, None
    select_logits = stack(select[f"logits_{task}"]) if len(select) else np.zeros((0, len(names)))
    select_labels = select[f"label_{task}"].to_numpy() if len(select) else np.zeros(0, np.int64)
    metrics["calibration"] = calibration_report(labels, logits, select_labels, select_logits)
    if open_set is not None:
        metrics["open_set"] = open_set_report(labels, logits, *open_set)
    paths = scored["path"].to_numpy()
    confused_examples(metrics["most_confused"], labels, logits, paths, scored["cache_index"].to_numpy())
    if inject > 0:
        confused_with = most_confused(select_labels, select_logits.argmax(axis=1), len(names))
        modes, frames = {}, {}
        for mode in NOISE_MODES:
            noisy, flipped = inject_noise(labels, inject, len(names), seed,
                                          confused_with if mode == "confusion" else None)
            frames[mode] = score_task(task, paths, noisy, logits, embeddings, names, seed=seed)
            flipped_paths = dict(zip(paths, flipped, strict=True))
            modes[mode] = {"flipped": int(flipped.sum()), "scores": noise_detection(frames[mode], flipped_paths)}
            if mode == _GALLERY_MODE:
                frames[mode] = frames[mode].assign(injected_noise=frames[mode]["path"].map(flipped_paths))
        metrics["noise_detection"] = {"fraction": inject, "headline": HEADLINE, "modes": modes}
        original = dict(zip(paths, labels, strict=True))
        frame = frames[_GALLERY_MODE].assign(original_label=frames[_GALLERY_MODE]["path"].map(original))
    else:
        frame = score_task(task, paths, labels, logits, embeddings, names, seed=seed)
    frame["cache_index"] = frame["path"].map(dict(zip(scored["path"], scored["cache_index"], strict=True)))
    return metrics, frame
