"""The open-set flag is set to let 95 % of known-class paintings through: on fresh paintings of the same classes
the share it flags must be about 5 %, within its binomial interval."""

from types import SimpleNamespace

import numpy as np

from artextract.analysis.open_set import open_set_report
from artextract.engine.selection import OPEN_SET_ACCEPT, calibrate


def _logits(rng: np.random.Generator, n: int, classes: int = 8) -> tuple[np.ndarray, np.ndarray]:
    labels = rng.integers(0, classes, n)
    logits = rng.normal(0, 1, (n, classes))
    logits[np.arange(n), labels] += rng.gamma(2.0, 1.5, n)  # a spread of confidences, some wrong
    return labels, logits


def test_the_rate_on_fresh_paintings_of_known_classes_is_the_target():
    rng = np.random.default_rng(0)
    labels, logits = _logits(rng, 3000)
    selection = SimpleNamespace(labels=labels[:, None], tasks=["artist"])
    fitted = calibrate(selection, {"row": np.arange(len(labels)), "logits_artist": logits})
    fresh_labels, fresh_logits = _logits(rng, 4000)
    fresh_labels[:500] = -1  # outside the classes: flat logits
    fresh_logits[:500] = rng.normal(0, 1, (500, 8))
    report = open_set_report(fresh_labels, fresh_logits, fitted.temperature["artist"], fitted.unknown_below["artist"],
                             OPEN_SET_ACCEPT)
    low, high = report["known"]["interval_95"]
    assert low <= 1 - OPEN_SET_ACCEPT <= high, report["known"]
    assert report["outside_classes"]["rate"] > 2 * (1 - OPEN_SET_ACCEPT) and report["auroc_outside_vs_known"] > 0.7
    # Without the temperature (the raw probabilities) the same threshold flags another share: it is set on the
    # calibrated ones, and the report uses them.
    raw = open_set_report(fresh_labels, fresh_logits, 1.0, fitted.unknown_below["artist"], OPEN_SET_ACCEPT)
    assert fitted.temperature["artist"] != 1.0 and raw["known"]["flagged"] != report["known"]["flagged"]
