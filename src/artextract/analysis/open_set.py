"""How the model file's open-set flag ("looks like none of the classes") behaves on the scored split.

The threshold is the top calibrated probability that a share `accept` (0.95) of the selection paintings reach, so
on fresh paintings of known classes about 1 - accept should fall below it: the report gives the share flagged with
its exact binomial interval, and the share among paintings outside the task's classes (unlabelled for it: for
artists, works by other painters), which the flag is meant to catch. Both use the calibrated probabilities
(the model file's temperature), as `predict` does.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.stats import binomtest
from sklearn.metrics import roc_auc_score

from artextract.analysis.probabilities import softmax


def _share(flagged: np.ndarray) -> dict[str, Any]:
    k, n = int(flagged.sum()), len(flagged)
    if n == 0:
        return {"images": 0}
    interval = binomtest(k, n).proportion_ci(0.95, method="exact")
    return {"images": n, "flagged": k, "rate": k / n, "interval_95": [float(interval.low), float(interval.high)]}


def open_set_report(labels: np.ndarray, logits: np.ndarray, temperature: float, threshold: float,
                    accept: float) -> dict[str, Any]:
    """Flag rates among the labelled (known-class) and unlabelled paintings, and the AUROC of the top calibrated
    probability at telling them apart (when both are present)."""
    top = softmax(logits, temperature).max(axis=1)
    flagged, known = top < threshold, labels >= 0
    result: dict[str, Any] = {"threshold": threshold, "temperature": temperature, "target_rate": 1 - accept,
                              "known": _share(flagged[known]), "outside_classes": _share(flagged[~known])}
    if result["known"]["images"]:
        result["known"]["p_value_vs_target"] = float(binomtest(int(flagged[known].sum()), int(known.sum()),
                                                               1 - accept).pvalue)
    if known.any() and (~known).any():
        result["auroc_outside_vs_known"] = float(roc_auc_score(~known, -top))
    return result
