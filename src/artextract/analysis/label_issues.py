"""Label issues of a training set, from out-of-fold predictions: the project's scores beside cleanlab's.

Every training painting is predicted by a model that did not train on it (stages/audit.py), so a wrong label the
collection holds looks wrong to the model, not learnt. Per labelled painting of a task (higher = more suspicious):
- the project's outlier scores (analysis/outliers.py) on the out-of-fold probabilities and embeddings;
- `joint`: 1 - p(given label | the image, the painting's labels in the other tasks), by Bayes' rule with the
  other labels taken as independent given the class: p(c | image) x prod over other tasks of p(their label | c),
  the latter counted from the collection's own labels (leave-one-out, add-one smoothing). A painting labelled
  Rembrandt and Impressionism contradicts itself whatever the image shows; no parameter is tuned;
- cleanlab's label-quality scores on the same probabilities (`self_confidence`, `normalized_margin`,
  `confidence_weighted_entropy`; reported as 1 - quality), and its Confident Learning verdict
  (`cleanlab.filter.find_label_issues`, per-class thresholds);
- two image-blind baselines (the given label's rarity, chance).

The flagged quota is the number of issues Confident Learning estimates (`cleanlab.count.num_label_issues`): how
many labels look wrong is estimated from the data, never taken from a known count of flips.

HEADLINE is named here before any validation ran (docs/label-audit.md gives the validation, its draws and its
result); it is the audit's default ranking. Validated on the real sample, it beats cleanlab's best score in
average precision for uniform flips (every task) and for flips to the most confused class in style, while for
such flips in artist and genre cleanlab's normalized margin ranks better: `audit --rank-by` chooses another.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd

from artextract.analysis.detection import detection_figures
from artextract.analysis.outliers import BASELINES, score_task
from artextract.analysis.probabilities import softmax
from artextract.analysis.similarity import nearest, unit_rows

HEADLINE = "joint"
PROJECT_SCORES = ("low_confidence", "disagreement", "centre_distance", "knn_disagreement", "combined", "joint")
CLEANLAB_SCORES = ("self_confidence", "normalized_margin", "confidence_weighted_entropy")
NEAREST_SHOWN = 3


def joint_probabilities(probabilities: np.ndarray, labels: np.ndarray, others: dict[str, np.ndarray],
                        counted: np.ndarray) -> np.ndarray:
    """p(c | image, other labels) per row: the model's probabilities times p(other task's label | c) for each other
    task the row is labelled in, from the label pairs of the `counted` rows (each row's own pair left out)."""
    rows = np.arange(len(labels))
    joint = probabilities.astype(np.float64).copy()
    num_classes = probabilities.shape[1]
    for other in others.values():
        other = np.asarray(other, np.int64)
        width = int(other.max(initial=-1)) + 1
        if width == 0:
            continue
        pairs = counted & (other >= 0) & (labels >= 0)
        table = np.zeros((width, num_classes))  # other label x class
        np.add.at(table, (other[pairs], labels[pairs]), 1.0)
        known = other >= 0
        together = table[np.where(known, other, 0)]  # per row: counts of its other label with each class
        per_class = np.broadcast_to(table.sum(axis=0), together.shape).copy()
        own = rows[pairs]  # leave each counted row's own pair out
        together[own, labels[own]] -= 1
        per_class[own, labels[own]] -= 1
        likelihood = (together + 1) / (per_class + width)
        joint[known] *= likelihood[known]
    return joint / np.maximum(joint.sum(axis=1, keepdims=True), 1e-300)


def cleanlab_scores(labels: np.ndarray, probabilities: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray, int]:
    """(cleanlab's issue scores, its Confident Learning verdict per painting, its estimated number of issues). Only
    the classes that hold labelled paintings take part (cleanlab needs examples of every class it is given); the
    probabilities are renormalised over them."""
    from cleanlab.count import num_label_issues
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    present = np.unique(labels)
    remap = np.full(probabilities.shape[1], -1)
    remap[present] = np.arange(len(present))
    given = remap[labels]
    probs = probabilities[:, present]
    probs = probs / np.maximum(probs.sum(axis=1, keepdims=True), 1e-12)
    if len(present) < 2:
        return {name: np.zeros(len(labels)) for name in CLEANLAB_SCORES}, np.zeros(len(labels), bool), 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "may not flag all label issues in class c, it has too few examples"
        scores = {name: 1.0 - get_label_quality_scores(given, probs, method=name) for name in CLEANLAB_SCORES}
        verdict = find_label_issues(given, probs, n_jobs=1)
        count = int(num_label_issues(given, probs))
    return scores, verdict, count


def rankings() -> list[str]:
    """The names `audit --rank-by` takes: the project's scores and cleanlab's (as their CSV columns name them)."""
    return [*PROJECT_SCORES, *(f"cleanlab_{name}" for name in CLEANLAB_SCORES)]


def ranking_column(name: str) -> str:
    if name not in rankings():
        raise ValueError(f"--rank-by {name!r} is not one of {', '.join(rankings())}")
    return name if name.startswith("cleanlab_") else f"score_{name}"


def rank_label_issues(task: str, paths: np.ndarray, labels: np.ndarray, logits: np.ndarray, embeddings: np.ndarray,
                      class_names: list[str], others: dict[str, np.ndarray], counted: np.ndarray,
                      seed: int = 0, rank_by: str = HEADLINE) -> tuple[pd.DataFrame, int]:
    """(one row per labelled painting with every score, most suspicious by `rank_by` first; the flagged quota).
    `others`: the rows' labels in the other tasks (-1: none); `counted`: the rows whose label pairs make the
    co-occurrence counts of `joint` (the training paintings, not the extra copies of duplicate paintings)."""
    frame = score_task(task, paths, labels, logits, embeddings, class_names, seed=seed)
    order = pd.Series(np.arange(len(paths)), index=paths)[frame["path"]].to_numpy()  # frame row -> input row
    probabilities = softmax(logits[order])
    given = labels[order]
    mixed = joint_probabilities(probabilities, given, {t: v[order] for t, v in others.items()}, counted[order])
    frame["score_joint"] = 1.0 - mixed[np.arange(len(given)), given]
    suggested = mixed.copy()
    suggested[np.arange(len(given)), given] = -1.0
    frame["suggested"] = suggested.argmax(axis=1)
    frame["suggested_name"] = [class_names[i] for i in frame["suggested"]]
    scores, verdict, quota = cleanlab_scores(given, probabilities)
    for name, values in scores.items():
        frame[f"cleanlab_{name}"] = values
    frame["cleanlab_issue"] = verdict
    frame = frame.sort_values(ranking_column(rank_by), ascending=False, kind="stable").reset_index(drop=True)
    frame["rank"] = np.arange(1, len(frame) + 1)
    frame["flagged"] = frame["rank"] <= quota
    return frame.drop(columns=["nearest_of_resembled"]), quota


def nearest_of_suggested(frame: pd.DataFrame, embeddings_by_path: dict[str, np.ndarray]) -> list[str]:
    """Per row of `frame`, the nearest paintings labelled with the class it is suggested to be, as `;`-joined
    paths: what a reviewer compares the painting with. One search per class."""
    paths = frame["path"].to_numpy()
    unit = unit_rows(np.stack([embeddings_by_path[p] for p in paths]))
    labels, suggested = frame["label"].to_numpy(), frame["suggested"].to_numpy()
    shown = [""] * len(frame)
    for target in np.unique(suggested):
        queries, members = np.flatnonzero(suggested == target), np.flatnonzero(labels == target)
        if not len(members):
            continue
        found, _ = nearest(unit[queries], unit[members], NEAREST_SHOWN)
        for query, row in zip(queries, found, strict=True):
            shown[query] = ";".join(paths[members[row]])
    return shown


# ----------------------------------------------------------------- validation on flipped labels


def score_columns() -> dict[str, str]:
    """Every ranking the validation compares, by name: the project's, cleanlab's and the image-blind baselines."""
    return ({name: f"score_{name}" for name in PROJECT_SCORES}
            | {f"cleanlab {name}": f"cleanlab_{name}" for name in CLEANLAB_SCORES}
            | {f"baseline {name}": f"baseline_{name}" for name in BASELINES})


def detection(frame: pd.DataFrame, flipped: np.ndarray, quota: int, seed: int = 0) -> dict[str, dict[str, Any]]:
    """Per ranking of `score_columns`: AUROC, average precision, and precision and recall among its top `quota`,
    each with a bootstrap 95 % interval over paintings. `flipped` is aligned with `frame`'s rows."""
    truth = np.asarray(flipped, bool)
    if truth.all() or not truth.any():
        return {}
    return {name: detection_figures(truth, frame[column].to_numpy(np.float64), quota, seed)
            for name, column in score_columns().items()}
