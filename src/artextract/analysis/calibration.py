"""Calibration: expected calibration error, reliability-diagram data, and temperature scaling.

The temperature is fitted on the selection set (never on the set being reported) by minimising the negative
log-likelihood over a log-spaced grid refined by golden-section search: one parameter, no optimiser state.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from artextract.analysis.probabilities import softmax

ECE_BINS = 15


def reliability(labels: np.ndarray, probabilities: np.ndarray, bins: int = ECE_BINS) -> dict[str, Any]:
    """ECE and per-bin confidence, accuracy and count (equal-width confidence bins)."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    counts = np.bincount(which, minlength=bins)
    conf_sum = np.bincount(which, weights=confidence, minlength=bins)
    acc_sum = np.bincount(which, weights=correct.astype(np.float64), minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        bin_conf = np.where(counts > 0, conf_sum / counts, np.nan)
        bin_acc = np.where(counts > 0, acc_sum / counts, np.nan)
    ece = float(np.nansum(np.abs(bin_acc - bin_conf) * counts) / max(1, len(labels)))
    return {"ece": ece, "bin_confidence": bin_conf.tolist(), "bin_accuracy": bin_acc.tolist(),
            "bin_count": counts.tolist()}


def _nll(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    probabilities = softmax(logits, temperature)
    return float(-np.log(np.clip(probabilities[np.arange(len(labels)), labels], 1e-12, 1.0)).mean())


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature in [0.05, 20] that minimises the NLL of `labels` (1.0 when there is nothing to fit)."""
    if len(labels) == 0:
        return 1.0
    grid = np.exp(np.linspace(math.log(0.05), math.log(20.0), 41))
    losses = [_nll(logits, labels, t) for t in grid]
    best = int(np.argmin(losses))
    low, high = math.log(grid[max(0, best - 1)]), math.log(grid[min(len(grid) - 1, best + 1)])
    ratio = (math.sqrt(5) - 1) / 2
    for _ in range(40):  # golden-section search in log-temperature
        a, b = high - ratio * (high - low), low + ratio * (high - low)
        if _nll(logits, labels, math.exp(a)) < _nll(logits, labels, math.exp(b)):
            high = b
        else:
            low = a
    return float(math.exp((low + high) / 2))


def calibration_report(eval_labels: np.ndarray, eval_logits: np.ndarray, select_labels: np.ndarray,
                       select_logits: np.ndarray) -> dict[str, Any]:
    """ECE before and after temperature scaling fitted on the selection set."""
    labelled, fit_rows = eval_labels >= 0, select_labels >= 0
    temperature = fit_temperature(select_logits[fit_rows], select_labels[fit_rows])
    before = reliability(eval_labels[labelled], softmax(eval_logits[labelled]))
    after = reliability(eval_labels[labelled], softmax(eval_logits[labelled], temperature))
    fitted_y, fitted_logits = select_labels[fit_rows], select_logits[fit_rows]
    # On the images it was fitted on, a temperature that raises the calibration error is a fit not to trust.
    select_ece = [reliability(fitted_y, softmax(fitted_logits, t))["ece"] if len(fitted_y) else float("nan")
                  for t in (1.0, temperature)]
    return {"temperature": temperature, "fitted_on_images": int(fit_rows.sum()), "before": before,
            "after": after, "select_ece_before": select_ece[0], "select_ece_after": select_ece[1],
            "worsened_on_select": bool(select_ece[1] > select_ece[0])}
