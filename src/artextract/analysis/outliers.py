"""Outlier scores: paintings that look like another class, or whose label is probably wrong.

Per labelled image of a task, four scores (higher = more suspicious) and their combination:
- `low_confidence`: 1 - p(given label); the original notebook's "correct but confidence < 0.5" is kept as the
  `notebook_flag` column;
- `disagreement`: probability margin of the most probable other class over the given label;
- `centre_distance`: cosine distance to the given label's class centre minus the distance to the nearest other
  centre (leave-one-out centres, embedding space);
- `knn_disagreement`: share of the k nearest paintings (cosine, excluding itself) labelled otherwise;
- `combined`: the mean of the four scores' percentile ranks.
Each image names the class it resembles (the most probable class other than its label) and, when flagged, its
nearest paintings of that class.

Validation: `inject_noise` flips a known share of labels, in two modes: `uniform` (to a random other class) and
`confusion` (to the class the true one is most often mistaken for on the selection set: the hard case, where a
wrong label looks plausible). Beside every score stand two baselines that never look at the image:
`label_prior` (-log of the given label's frequency: uniform flips often land on rare classes) and `random`.
The headline is `combined`, named here before any run, never the best of several.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from artextract.analysis.detection import auroc_draws, bootstrap_counts, interval
from artextract.analysis.probabilities import softmax
from artextract.analysis.similarity import nearest, unit_rows

SCORES = ("low_confidence", "disagreement", "centre_distance", "knn_disagreement", "combined")
BASELINES = ("label_prior", "random")
HEADLINE = "combined"
NOISE_MODES = ("uniform", "confusion")
KNN_K = 10
NEAREST_SHOWN = 3
MIN_FLAGGED = 12


def most_confused(labels: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    """Per true class, the other class it is most often predicted as (on the selection set); a class never
    mistaken there gets the other class predicted most often overall."""
    labelled = labels >= 0
    confusion = np.zeros((num_classes, num_classes))
    np.add.at(confusion, (labels[labelled], predicted[labelled]), 1)
    np.fill_diagonal(confusion, 0)
    overall = confusion.sum(axis=0)
    targets = np.empty(num_classes, dtype=np.int64)
    for c in range(num_classes):
        row = confusion[c] if confusion[c].any() else overall.copy()
        row[c] = -1
        targets[c] = int(np.argmax(row)) if row.max() > 0 else (c + 1) % num_classes
    return targets


def inject_noise(labels: np.ndarray, fraction: float, num_classes: int, seed: int | list[int],
                 confused_with: np.ndarray | None = None,
                 allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Labels with `fraction` of the labelled ones moved to another class, and which were moved: a random other
    class among `allowed` (default: every class; give the classes that have training images, or a flip to an
    empty class is found by any score), or with `confused_with` (from `most_confused`) the class the true one is
    most often mistaken for."""
    rng = np.random.default_rng(seed)
    labelled = np.flatnonzero(labels >= 0)
    flipped = rng.choice(labelled, size=round(fraction * len(labelled)), replace=False)
    noisy = labels.copy()
    if confused_with is not None:
        noisy[flipped] = confused_with[labels[flipped]]
    elif allowed is None:
        noisy[flipped] = (labels[flipped] + rng.integers(1, num_classes, size=len(flipped))) % num_classes
    else:
        targets = np.unique(allowed)
        for row in flipped:  # a uniform draw among the allowed classes other than the true one
            others = targets[targets != labels[row]]
            noisy[row] = others[rng.integers(len(others))] if len(others) else labels[row]
    mask = np.zeros(len(labels), dtype=bool)
    mask[flipped] = noisy[flipped] != labels[flipped]
    return noisy, mask


def baseline_scores(labels: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """Scores that never look at the image: the given label's rarity, and chance."""
    frequency = np.bincount(labels) / len(labels)
    return {"label_prior": -np.log(frequency[labels]),
            "random": np.random.default_rng([seed, 7]).random(len(labels))}


def _centre_scores(unit: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    sums = np.zeros((num_classes, unit.shape[1]), dtype=np.float64)
    np.add.at(sums, labels, unit)
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    own_sum = sums[labels] - unit  # leave-one-out: an image does not pull its own centre
    own_count = counts[labels] - 1
    own_centre = own_sum / np.maximum(own_count, 1)[:, None]
    centres = sums / np.maximum(counts, 1)[:, None]

    def cosine_distance(vectors: np.ndarray, centre: np.ndarray) -> np.ndarray:
        norms = np.linalg.norm(centre, axis=-1)
        return 1.0 - (vectors * centre).sum(axis=-1) / np.maximum(norms, 1e-12)

    own = np.where(own_count > 0, cosine_distance(unit, own_centre), 1.0)
    others = 1.0 - (unit @ centres.T) / np.maximum(np.linalg.norm(centres, axis=1), 1e-12)
    others[:, counts == 0] = np.inf
    others[np.arange(len(labels)), labels] = np.inf
    nearest_other = others.min(axis=1)
    return own - np.where(np.isfinite(nearest_other), nearest_other, 1.0)


def _knn_disagreement(unit: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Share of each image's k nearest other images (cosine) whose label differs from its own."""
    if min(k, len(labels) - 1) <= 0:
        return np.zeros(len(labels))
    neighbours, _ = nearest(unit, unit, k, skip=np.arange(len(labels)))  # never its own neighbour
    return (labels[neighbours] != labels[:, None]).mean(axis=1)


def _percentile_rank(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(len(values))
    return ranks / max(1, len(values) - 1)


def score_task(task: str, paths: np.ndarray, labels: np.ndarray, logits: np.ndarray, embeddings: np.ndarray,
               class_names: list[str], flag_fraction: float = 0.02, seed: int = 0) -> pd.DataFrame:
    """One row per labelled image, most suspicious first."""
    keep = labels >= 0
    paths, labels, logits = paths[keep], labels[keep], logits[keep]
    unit = unit_rows(embeddings[keep])
    num_classes = len(class_names)
    probabilities = softmax(logits)
    rows = np.arange(len(labels))
    p_label = probabilities[rows, labels]
    others = probabilities.copy()
    others[rows, labels] = -1.0
    resembles = others.argmax(axis=1)
    predicted = probabilities.argmax(axis=1)
    frame = pd.DataFrame({
        "task": task, "path": paths, "label": labels, "label_name": [class_names[i] for i in labels],
        "predicted": predicted, "predicted_name": [class_names[i] for i in predicted],
        "p_label": p_label, "p_predicted": probabilities.max(axis=1),
        "score_low_confidence": 1.0 - p_label,
        "score_disagreement": others.max(axis=1) - p_label,
        "score_centre_distance": _centre_scores(unit, labels, num_classes),
        "score_knn_disagreement": _knn_disagreement(unit, labels, KNN_K),
        "notebook_flag": (predicted == labels) & (probabilities.max(axis=1) < 0.5),
        "resembles": resembles, "resembles_name": [class_names[i] for i in resembles],
    })
    parts = [f"score_{name}" for name in SCORES[:-1]]
    frame["score_combined"] = np.mean([_percentile_rank(frame[c].to_numpy()) for c in parts], axis=0)
    for name, values in baseline_scores(labels, seed).items():
        frame[f"baseline_{name}"] = values
    frame = frame.sort_values("score_combined", ascending=False, kind="stable").reset_index(drop=True)
    # The top `flag_fraction`, and never fewer than a gallery's worth on small sets.
    flagged = max(math.ceil(flag_fraction * len(frame)), min(MIN_FLAGGED, len(frame)))
    frame["rank"] = np.arange(1, len(frame) + 1)
    frame["flagged"] = frame["rank"] <= flagged
    frame["nearest_of_resembled"] = ""
    position = {path: i for i, path in enumerate(paths)}
    for index in np.flatnonzero(frame["flagged"].to_numpy()):
        me = position[frame.at[index, "path"]]
        members = np.flatnonzero(labels == frame.at[index, "resembles"])
        if len(members):
            found, _ = nearest(unit[me][None], unit[members], NEAREST_SHOWN)
            frame.at[index, "nearest_of_resembled"] = ";".join(paths[members[found[0]]])
    return frame


def nearest_rows(frame: pd.DataFrame, row: Any) -> list[tuple[str, int]]:
    """(path, cache index) of the nearest paintings of the class an outlier resembles, from its task's frame."""
    paths = [p for p in str(row.get("nearest_of_resembled") or "").split(";") if p]
    index = dict(zip(frame["path"], frame["cache_index"], strict=True))
    return [(p, int(index[p])) for p in paths if p in index]


# Fewer flipped labels than this and an AUROC says little (its interval spans most of [0, 1]): the report says so.
MIN_FLIPPED_TO_CONCLUDE = 10


def _auroc_interval(truth: np.ndarray, values: np.ndarray, seed: int = 0) -> list[float]:
    """Bootstrap 95 % interval of the AUROC over images (draws holding one class only are skipped)."""
    return interval(auroc_draws(truth, values, bootstrap_counts(len(truth), seed)))


def noise_detection(frame: pd.DataFrame, flipped: dict[str, bool]) -> dict[str, dict[str, float]]:
    """AUROC (with its bootstrap 95 % interval) and precision@k of each score and baseline at finding the flipped
    labels, with k = the number flipped (so recall@k would be the same number)."""
    truth = frame["path"].map(flipped).fillna(False).to_numpy(bool)
    k = int(truth.sum())
    result: dict[str, dict[str, float]] = {}
    if k == 0 or k == len(truth):
        return result
    columns = {name: f"score_{name}" for name in SCORES} | {f"baseline {name}": f"baseline_{name}"
                                                            for name in BASELINES}
    for name, column in columns.items():
        values = frame[column].to_numpy()
        top = np.argsort(-values, kind="stable")[:k]
        result[name] = {"auroc": float(roc_auc_score(truth, values)), "auroc_ci": _auroc_interval(truth, values),
                        "precision_at_k": int(truth[top].sum()) / k, "k": k}
    return result


def summarise(frames: dict[str, pd.DataFrame]) -> dict[str, Any]:
    return {task: {"images": len(f), "flagged": int(f["flagged"].sum()),
                   "notebook_flags": int(f["notebook_flag"].sum())} for task, f in frames.items()}
