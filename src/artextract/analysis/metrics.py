"""Classification metrics for one task, with bootstrap 95 % confidence intervals.

Everything is computed from (true label, logits) pairs; the point figures are scikit-learn's, the intervals come
from a vectorised percentile bootstrap over images (seeded).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    precision_recall_fscore_support,
    top_k_accuracy_score,
)

BOOTSTRAP_SAMPLES = 1000


def _f1_from_confusion(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-class F1 and recall from B x C x C confusion counts; classes without support get NaN recall."""
    tp = np.diagonal(counts, axis1=1, axis2=2).astype(np.float64)
    support = counts.sum(axis=2)
    predicted = counts.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(support > 0, tp / support, np.nan)
        f1 = np.where(precision + np.nan_to_num(recall) > 0,
                      2 * precision * np.nan_to_num(recall) / (precision + np.nan_to_num(recall)), 0.0)
    return f1, recall


def _resampled(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int,
               draws: np.ndarray) -> dict[str, np.ndarray]:
    """Accuracy, balanced accuracy and macro-F1 of each resample (one row of `draws` = one resample of images).

    Macro-F1 averages over the classes that have support or predictions in each resample, as scikit-learn does.
    """
    samples = len(draws)
    cells = (y_true * num_classes + y_pred)[draws]
    offsets = (np.arange(samples) * num_classes * num_classes)[:, None]
    counts = np.bincount((cells + offsets).ravel(), minlength=samples * num_classes * num_classes)
    counts = counts.reshape(samples, num_classes, num_classes)
    f1, recall = _f1_from_confusion(counts)
    present = (counts.sum(axis=2) + counts.sum(axis=1)) > 0
    return {"accuracy": (y_true == y_pred)[draws].mean(axis=1), "balanced_accuracy": np.nanmean(recall, axis=1),
            "macro_f1": (f1 * present).sum(axis=1) / present.sum(axis=1)}


def _interval(values: np.ndarray) -> list[float]:
    return [float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))]


def bootstrap_intervals(y_true: np.ndarray, y_pred: np.ndarray, in_top5: np.ndarray, num_classes: int,
                        samples: int = BOOTSTRAP_SAMPLES, seed: int = 0) -> dict[str, list[float]]:
    """95 % percentile intervals of accuracy, top-5 accuracy, balanced accuracy and macro-F1."""
    draws = np.random.default_rng(seed).integers(0, len(y_true), size=(samples, len(y_true)))
    statistics = _resampled(y_true, y_pred, num_classes, draws) | {"top5_accuracy": in_top5[draws].mean(axis=1)}
    return {name: _interval(statistics[name]) for name in ("accuracy", "top5_accuracy", "balanced_accuracy",
                                                            "macro_f1")}


def seed_mean_metrics(y_true: np.ndarray, predictions: np.ndarray, num_classes: int,
                      samples: int = BOOTSTRAP_SAMPLES, seed: int = 0) -> dict[str, Any]:
    """Accuracy and macro-F1 averaged over several runs (rows of `predictions`, S x N) on the same images, with
    95 % intervals from one bootstrap of the images shared by every run (so they cover the image sampling of
    the seed-averaged figure). Also each run's own figures."""
    from sklearn.metrics import f1_score

    labelled = y_true >= 0
    y_true, predictions = y_true[labelled], predictions[:, labelled]
    draws = np.random.default_rng(seed).integers(0, len(y_true), size=(samples, len(y_true)))
    per_run = [_resampled(y_true, p, num_classes, draws) for p in predictions]
    result: dict[str, Any] = {"images": len(y_true), "runs": len(predictions)}
    for name in ("accuracy", "macro_f1"):
        points = [float((y_true == p).mean()) if name == "accuracy"
                  else float(f1_score(y_true, p, average="macro", zero_division=0)) for p in predictions]
        result[name] = float(np.mean(points))
        result[f"{name}_per_run"] = points
        result[f"{name}_interval_95"] = _interval(np.mean([r[name] for r in per_run], axis=0))
    return result


def _balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    with warnings.catch_warnings():
        # Predicting a class that no image of this split carries is normal here, not a problem to warn about.
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        return float(balanced_accuracy_score(y_true, y_pred))


def classification_metrics(y_true: np.ndarray, logits: np.ndarray, class_names: list[str],
                           seed: int = 0) -> dict[str, Any]:
    """Point figures, intervals, the per-class report and the confusion matrix for the labelled images."""
    labelled = y_true >= 0
    y_true, logits = y_true[labelled], logits[labelled]
    num_classes = len(class_names)
    if len(y_true) == 0:
        return {"images": 0}
    y_pred = logits.argmax(axis=1)
    labels = np.arange(num_classes)
    k = min(5, num_classes)
    in_top5 = (np.argsort(-logits, axis=1)[:, :k] == y_true[:, None]).any(axis=1)
    present = np.union1d(np.unique(y_true), np.unique(y_pred))
    result: dict[str, Any] = {
        "images": len(y_true),
        "classes_with_images": len(np.unique(y_true)),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        # scikit-learn's top_k_accuracy_score where it is defined (k below the class count); trivially 1 otherwise.
        "top5_accuracy": float(top_k_accuracy_score(y_true, logits, k=k, labels=labels))
        if num_classes > k else 1.0,
        "balanced_accuracy": _balanced_accuracy(y_true, y_pred),
    }
    for average in ("macro", "weighted"):
        p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, labels=present, average=average,
                                                     zero_division=0)
        result |= {f"{average}_precision": float(p), f"{average}_recall": float(r), f"{average}_f1": float(f)}
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, average=None, zero_division=0)
    result["per_class"] = [{"class": name, "precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
                            "support": int(s[i])} for i, name in enumerate(class_names)]
    result["confusion"] = confusion_matrix(y_true, y_pred, labels=labels).tolist()
    result["intervals_95"] = bootstrap_intervals(y_true, y_pred, in_top5, num_classes, seed=seed)
    return result
