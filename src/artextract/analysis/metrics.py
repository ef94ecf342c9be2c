"""Classification metrics for one task, with bootstrap 95 % confidence intervals.

Everything is computed from (true label, logits) pairs; the point figures are scikit-learn's, the intervals come
from a vectorised percentile bootstrap over images (seeded), stratified by true class: each resample keeps every
class's number of images, so every class the point figure averages over is in every resample. (An unstratified
resample drops rare classes, and macro-F1 over the classes left is biased upward: on a long tail the point sat
at the bottom of its own interval.)
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
CONFUSED_PAIRS = 6  # the report shows the most confused pairs of classes, largest first


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


def stratified_draws(y_true: np.ndarray, samples: int, rng: np.random.Generator) -> np.ndarray:
    """`samples` x N image indices: each row resamples, with replacement, the images of each true class among
    themselves (so the class counts of `y_true` hold in every row)."""
    draws = np.empty((samples, len(y_true)), dtype=np.int64)
    for label in np.unique(y_true):
        members = np.flatnonzero(y_true == label)
        draws[:, members] = members[rng.integers(0, len(members), size=(samples, len(members)))]
    return draws


def resampled_metrics(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int,
               draws: np.ndarray) -> dict[str, np.ndarray]:
    """Accuracy, balanced accuracy and macro-F1 of each resample (one row of `draws` = one resample of images).

    Macro-F1 averages over one fixed set of classes, the point figure's: those with images or predictions in the
    whole sample (a class predicted in the sample but not in a resample counts with F1 0, as it does in the
    point figure whenever it has no image)."""
    samples = len(draws)
    cells = (y_true * num_classes + y_pred)[draws]
    offsets = (np.arange(samples) * num_classes * num_classes)[:, None]
    counts = np.bincount((cells + offsets).ravel(), minlength=samples * num_classes * num_classes)
    counts = counts.reshape(samples, num_classes, num_classes)
    f1, recall = _f1_from_confusion(counts)
    present = np.zeros(num_classes, dtype=bool)
    present[np.union1d(y_true, y_pred)] = True
    return {"accuracy": (y_true == y_pred)[draws].mean(axis=1), "balanced_accuracy": np.nanmean(recall, axis=1),
            "macro_f1": f1[:, present].mean(axis=1)}


def _interval(values: np.ndarray) -> list[float]:
    return [float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))]


def bootstrap_intervals(y_true: np.ndarray, y_pred: np.ndarray, in_top5: np.ndarray, num_classes: int,
                        samples: int = BOOTSTRAP_SAMPLES, seed: int = 0) -> dict[str, list[float]]:
    """95 % percentile intervals of accuracy, top-5 accuracy, balanced accuracy and macro-F1 (stratified)."""
    draws = stratified_draws(y_true, samples, np.random.default_rng(seed))
    statistics = resampled_metrics(y_true, y_pred, num_classes, draws) | {"top5_accuracy": in_top5[draws].mean(axis=1)}
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
    draws = stratified_draws(y_true, samples, np.random.default_rng(seed))
    per_run = [resampled_metrics(y_true, p, num_classes, draws) for p in predictions]
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
    matrix = confusion_matrix(y_true, y_pred, labels=labels)
    result["per_class"] = per_class_report(y_true, y_pred, class_names)
    result["confusion"] = matrix.tolist()
    result["most_confused"] = confused_pairs(matrix, class_names)
    result["intervals_95"] = bootstrap_intervals(y_true, y_pred, in_top5, num_classes, seed=seed)
    return result


def per_class_report(y_true: np.ndarray, y_pred: np.ndarray, class_names: list[str]) -> list[dict[str, Any]]:
    """scikit-learn's per-class precision, recall and F1, with None (n/a) where a figure is undefined: recall
    and F1 of a class without evaluation images, precision of a class never predicted. A class that is absent
    from the evaluation images has no F1; drawing it as 0 would read as a failure."""
    labels = np.arange(len(class_names))
    p, r, f, support = precision_recall_fscore_support(y_true, y_pred, labels=labels, average=None,
                                                       zero_division=0)
    predicted = np.bincount(y_pred, minlength=len(class_names))
    return [{"class": name, "precision": float(p[i]) if predicted[i] else None,
             "recall": float(r[i]) if support[i] else None, "f1": float(f[i]) if support[i] else None,
             "support": int(support[i]), "predicted": int(predicted[i])} for i, name in enumerate(class_names)]


def confused_pairs(matrix: np.ndarray, class_names: list[str], count: int = CONFUSED_PAIRS) -> list[dict[str, Any]]:
    """The `count` largest off-diagonal cells of a confusion matrix (rows true, columns predicted), largest
    first, each with its share of the true class's images."""
    off = np.array(matrix, dtype=np.int64)
    np.fill_diagonal(off, 0)
    order = np.argsort(-off, axis=None, kind="stable")[:count]
    support = np.asarray(matrix).sum(axis=1)
    pairs = []
    for flat in order:
        true, predicted = np.unravel_index(flat, off.shape)
        if off[true, predicted] == 0:
            break
        pairs.append({"true": int(true), "predicted": int(predicted), "true_name": class_names[true],
                      "predicted_name": class_names[predicted], "count": int(off[true, predicted]),
                      "share_of_true": float(off[true, predicted] / support[true])})
    return pairs
