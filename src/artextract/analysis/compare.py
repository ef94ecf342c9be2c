"""Paired comparison of two models scored on the same images: is the difference real?

Every statistic uses the pairing (the same image seen by both models), which is far more sensitive than comparing
two independent intervals. With one training run per model, McNemar's exact test looks only at the images where
exactly one model is right. With several runs per model (seeds), `seeded_paired_test` includes the training
variance as well: a one-seed comparison can be significant by the luck of one seed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.stats import binomtest, norm
from sklearn.metrics import f1_score

from artextract.analysis.metrics import BOOTSTRAP_SAMPLES, resampled_metrics, stratified_draws

METRICS = ("accuracy", "macro_f1")
SIGNIFICANCE = 0.05  # the family-wise error rate every verdict table holds, by Holm's correction


def mcnemar_exact(a_correct: np.ndarray, b_correct: np.ndarray) -> dict[str, Any]:
    """Two-sided exact McNemar test: under "equally accurate", the discordant images split 50/50."""
    only_a = int((a_correct & ~b_correct).sum())
    only_b = int((~a_correct & b_correct).sum())
    discordant = only_a + only_b
    p_value = 1.0 if discordant == 0 else float(binomtest(only_a, discordant, 0.5).pvalue)
    return {"only_a_right": only_a, "only_b_right": only_b, "p_value": p_value}


def paired_difference(a_correct: np.ndarray, b_correct: np.ndarray, samples: int = BOOTSTRAP_SAMPLES,
                      seed: int = 0) -> dict[str, Any]:
    """Accuracy of b minus accuracy of a, with a 95 % bootstrap interval over the same resampled images."""
    n = len(a_correct)
    draws = np.random.default_rng(seed).integers(0, n, size=(samples, n))
    differences = b_correct[draws].mean(axis=1) - a_correct[draws].mean(axis=1)
    return {"images": n, "accuracy_a": float(a_correct.mean()), "accuracy_b": float(b_correct.mean()),
            "difference": float(b_correct.mean() - a_correct.mean()),
            "interval_95": [float(np.percentile(differences, 2.5)), float(np.percentile(differences, 97.5))]}


def _points(y_true: np.ndarray, predictions: np.ndarray, metric: str) -> np.ndarray:
    if metric == "accuracy":
        return (predictions == y_true).mean(axis=1)
    return np.array([f1_score(y_true, p, average="macro", zero_division=0) for p in predictions])


def seeded_paired_test(y_true: np.ndarray, a: np.ndarray, b: np.ndarray, num_classes: int,
                       samples: int = BOOTSTRAP_SAMPLES, seed: int = 0) -> dict[str, Any]:
    """B minus A in accuracy and macro-F1, each model's figure averaged over its runs (`a`, `b`: seeds x images
    predicted labels on the same images; unlabelled images, -1, are left out).

    The variance of the difference has two parts, added: the images' (a bootstrap over the images, stratified by
    class, of the seed-averaged difference: the pairing is kept) and the training runs' (each model's variance
    across its seeds, over its number of seeds: its seed-averaged figure's variance at fixed images). The interval
    and the p-value are the normal ones for that variance. With one seed per model the second part cannot be
    estimated and is left out: such a verdict says so (`training_variance: false`)."""
    labelled = y_true >= 0
    y_true, a, b = y_true[labelled], a[:, labelled], b[:, labelled]
    draws = stratified_draws(y_true, samples, np.random.default_rng(seed))
    result: dict[str, Any] = {"images": len(y_true), "seeds_a": len(a), "seeds_b": len(b),
                              "training_variance": len(a) > 1 and len(b) > 1}
    resampled = {name: [resampled_metrics(y_true, p, num_classes, draws) for p in runs]
                 for name, runs in (("a", a), ("b", b))}
    for metric in METRICS:
        points_a, points_b = _points(y_true, a, metric), _points(y_true, b, metric)
        seed_means = {name: np.mean([r[metric] for r in runs], axis=0) for name, runs in resampled.items()}
        image_variance = float(np.var(seed_means["b"] - seed_means["a"], ddof=1))
        seed_variance = sum(float(np.var(p, ddof=1)) / len(p) for p in (points_a, points_b) if len(p) > 1)
        difference = float(points_b.mean() - points_a.mean())
        error = float(np.sqrt(image_variance + seed_variance))
        p_value = float(2 * norm.sf(abs(difference) / error)) if error > 0 else float(difference == 0)
        result[metric] = {"a": float(points_a.mean()), "b": float(points_b.mean()), "difference": difference,
                          "a_per_seed": points_a.tolist(), "b_per_seed": points_b.tolist(),
                          "standard_error": error, "seed_share_of_variance": seed_variance / error**2 if error else 0.0,
                          "interval_95": [difference - 1.96 * error, difference + 1.96 * error], "p_value": p_value}
    if len(a) == 1 and len(b) == 1:  # the exact test of the accuracies, for one run each
        result["accuracy"]["mcnemar"] = mcnemar_exact(a[0] == y_true, b[0] == y_true)
    return result


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values: reject where the adjusted p is below the family-wise level. Sorted
    ascending, the i-th smallest p (from 0) is multiplied by (m - i), and the adjusted values kept non-decreasing."""
    p = np.asarray(p_values, dtype=np.float64)
    order = np.argsort(p, kind="stable")
    adjusted = np.empty_like(p)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(p) - rank) * p[index]))
        adjusted[index] = running
    return adjusted.tolist()


def apply_holm(verdicts: list[dict[str, Any]]) -> int:
    """Adds `p_holm` and `significant` to every metric of every verdict (the family: all of them, both metrics);
    returns the family's size."""
    tests = [(v, metric) for v in verdicts for metric in METRICS if metric in v]
    for (verdict, metric), adjusted in zip(tests, holm([v[m]["p_value"] for v, m in tests]), strict=True):
        verdict[metric]["p_holm"] = adjusted
        verdict[metric]["significant"] = adjusted < SIGNIFICANCE
    return len(tests)


def format_p(p: float) -> str:
    """p for a table: below 1e-4 the normal approximation's tail means nothing more precise than that."""
    return "< 1e-4" if p < 1e-4 else f"{p:.2g}"


def verdict_cell(figures: dict[str, Any], scale: float = 100.0) -> str:
    """`+1.2 [+0.4, +2.0], p 0.003 (Holm 0.02)`, bold when significant after Holm's correction; points when
    `scale` is 100."""
    low, high = figures["interval_95"]
    text = (f"{figures['difference'] * scale:+.1f} [{low * scale:+.1f}, {high * scale:+.1f}], "
            f"p {format_p(figures['p_value'])} (Holm {format_p(figures['p_holm'])})")
    return f"**{text}**" if figures["significant"] else text
