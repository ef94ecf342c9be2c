"""Selection-set metrics computed once over gathered predictions (no per-process averaging)."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, f1_score


def task_metrics(labels: np.ndarray, predictions: np.ndarray) -> dict[str, float]:
    """Accuracy and macro-F1 over the images that carry a label (label >= 0)."""
    labelled = labels >= 0
    if not labelled.any():
        return {"acc": float("nan"), "macro_f1": float("nan")}
    y_true, y_pred = labels[labelled], predictions[labelled]
    return {"acc": float(accuracy_score(y_true, y_pred)),
            "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0))}
