"""How well a score finds known bad labels: AUROC, average precision, precision and recall at a quota, each with a
bootstrap 95 % interval over paintings.

All bootstrap draws are computed at once: a draw is a vector of counts (how often each painting was drawn), and
each figure is a weighted sum over the paintings sorted once by score, ties grouped (tied paintings share one
threshold, as scikit-learn counts them). Exact against scikit-learn on every draw (tests/analysis).
"""

from __future__ import annotations

import numpy as np

DRAWS = 200


def bootstrap_counts(size: int, seed: int = 0, draws: int = DRAWS) -> np.ndarray:
    """`draws` x `size` multiplicities of a bootstrap resample of `size` items."""
    return np.random.default_rng(seed).multinomial(size, np.full(size, 1 / size), size=draws).astype(np.float64)


def _grouped(truth: np.ndarray, values: np.ndarray, weights: np.ndarray, descending: bool) -> tuple[np.ndarray, ...]:
    """Weighted positives and negatives per group of tied values, the groups in score order."""
    order = np.argsort(-values if descending else values, kind="stable")
    ordered = values[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    positive = truth[order].astype(bool)
    w = weights[:, order]
    return np.add.reduceat(w * positive, starts, axis=1), np.add.reduceat(w * ~positive, starts, axis=1)


def auroc_draws(truth: np.ndarray, values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The AUROC of each weighted draw (Mann-Whitney, ties count half); NaN where a draw holds one class only."""
    pos, neg = _grouped(truth, values, weights, descending=False)
    below = np.cumsum(neg, axis=1) - neg  # negatives strictly below each group
    pairs = pos.sum(axis=1) * neg.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(pairs > 0, (pos * (below + 0.5 * neg)).sum(axis=1) / pairs, np.nan)


def average_precision_draws(truth: np.ndarray, values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Average precision of each weighted draw: the precision at each threshold, weighted by the positives it
    adds (scikit-learn's definition); NaN where a draw holds no positive."""
    pos, neg = _grouped(truth, values, weights, descending=True)
    found = np.cumsum(pos, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = found / np.maximum(found + np.cumsum(neg, axis=1), 1e-12)
        return (pos * precision).sum(axis=1) / pos.sum(axis=1)


def interval(values: np.ndarray) -> list[float]:
    finite = values[np.isfinite(values)]
    return [float(v) for v in np.percentile(finite, [2.5, 97.5])] if len(finite) else [float("nan")] * 2


FIGURES = ("auroc", "average_precision", "precision", "recall")


def figure_draws(truth: np.ndarray, values: np.ndarray, quota: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Each figure on the sample itself (element 0) and on every bootstrap draw (the draws depend only on the
    number of paintings and `seed`, so two scores of the same paintings are paired draw by draw): AUROC, average
    precision, and precision and recall among the top `quota` by `values` (higher = more suspicious)."""
    truth = np.asarray(truth, bool)
    values = np.asarray(values, np.float64)
    weights = np.vstack([np.ones(len(truth)), bootstrap_counts(len(truth), seed)])
    top = np.zeros(len(truth), bool)
    top[np.argsort(-values, kind="stable")[:quota]] = True
    with np.errstate(invalid="ignore", divide="ignore"):
        flagged_hits = (weights * (top & truth)).sum(axis=1)
        return {"auroc": auroc_draws(truth, values, weights),
                "average_precision": average_precision_draws(truth, values, weights),
                "precision": flagged_hits / (weights * top).sum(axis=1),
                "recall": flagged_hits / (weights * truth).sum(axis=1)}


def detection_figures(truth: np.ndarray, values: np.ndarray, quota: int, seed: int = 0) -> dict[str, object]:
    """`figure_draws` as {"value", "ci"} per figure, with the quota; `truth` marks the bad labels."""
    draws = figure_draws(truth, values, quota, seed)
    result: dict[str, object] = {name: {"value": float(d[0]), "ci": interval(d[1:])} for name, d in draws.items()}
    result["quota"] = int(quota)
    return result
