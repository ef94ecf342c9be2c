"""Paired comparison of two models scored on the same images: is the difference in accuracy real?

Both statistics use the pairing (the same image seen by both models), which is far more sensitive than comparing
two independent intervals: the bootstrap resamples images and recomputes both accuracies on each resample, and
McNemar's exact test looks only at the images where exactly one model is right.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.stats import binomtest

from artextract.analysis.metrics import BOOTSTRAP_SAMPLES


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
