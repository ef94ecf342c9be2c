"""The statistics every verdict rests on: intervals centred on their point on a long tail, seeds counted in a
paired verdict, and Holm's correction over a table."""

import numpy as np
import pytest

from artextract.analysis.compare import apply_holm, holm, seeded_paired_test
from artextract.analysis.metrics import classification_metrics


def _long_tail(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Class counts 400/200/100/40/12/3/2/2/1/1; 85 % right on the four big classes, the six rare classes always
    predicted as class 0 (the case where dropping absent classes from a resample lifted macro-F1)."""
    counts = [400, 200, 100, 40, 12, 3, 2, 2, 1, 1]
    truth = np.concatenate([np.full(c, i) for i, c in enumerate(counts)])
    predicted = truth.copy()
    for label in range(4):
        members = np.flatnonzero(truth == label)
        wrong = rng.choice(members, round(0.15 * len(members)), replace=False)
        predicted[wrong] = (label + 1) % 4
    predicted[truth >= 4] = 0
    return truth, predicted


def _position(metrics: dict, name: str) -> float:
    low, high = metrics["intervals_95"][name]
    return (metrics[name] - low) / (high - low)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_macro_f1_and_balanced_accuracy_intervals_are_centred_on_a_long_tail(seed):
    truth, predicted = _long_tail(np.random.default_rng(seed))
    metrics = classification_metrics(truth, np.eye(10)[predicted], [str(i) for i in range(10)], seed=seed)
    for name in ("macro_f1", "balanced_accuracy", "accuracy"):
        assert 0.15 < _position(metrics, name) < 0.85, (name, metrics[name], metrics["intervals_95"][name])


def test_an_interval_on_balanced_classes_has_its_point_near_the_centre():
    rng = np.random.default_rng(3)
    truth = rng.integers(0, 6, 3000)
    predicted = np.where(rng.random(3000) < 0.7, truth, rng.integers(0, 6, 3000))
    metrics = classification_metrics(truth, np.eye(6)[predicted], [str(i) for i in range(6)])
    for name in ("macro_f1", "balanced_accuracy", "accuracy"):
        low, high = metrics["intervals_95"][name]
        assert low < metrics[name] < high and 0.35 < _position(metrics, name) < 0.65, name


def _runs(truth: np.ndarray, accuracies: list[float], rng: np.random.Generator) -> np.ndarray:
    """One row of predicted labels per seed, each right on a random share `accuracy` of the images."""
    rows = []
    for accuracy in accuracies:
        predicted = truth.copy()
        wrong = rng.random(len(truth)) > accuracy
        predicted[wrong] = (truth[wrong] + 1) % 5
        rows.append(predicted)
    return np.stack(rows)


def test_a_one_seed_win_is_not_a_verdict_once_the_other_seeds_are_counted():
    rng = np.random.default_rng(1)
    truth = rng.integers(0, 5, 2000)
    a = _runs(truth, [0.80, 0.80, 0.80], rng)
    b = _runs(truth, [0.85, 0.79, 0.77], rng)  # seed 0 of B was lucky
    first = seeded_paired_test(truth, a[:1], b[:1], 5)
    assert first["accuracy"]["p_value"] < 0.01 and first["accuracy"]["mcnemar"]["p_value"] < 0.01
    assert first["macro_f1"]["p_value"] < 0.01 and not first["training_variance"]
    every = seeded_paired_test(truth, a, b, 5)
    assert every["training_variance"] and every["seeds_a"] == every["seeds_b"] == 3
    for metric in ("accuracy", "macro_f1"):
        low, high = every[metric]["interval_95"]
        assert every[metric]["p_value"] > 0.2 and low < 0 < high, every[metric]
        assert every[metric]["seed_share_of_variance"] > 0.5  # the seeds, not the images, make it uncertain
    assert every["accuracy"]["difference"] == pytest.approx((b == truth).mean() - (a == truth).mean())


def test_a_real_difference_over_consistent_seeds_stays_significant():
    rng = np.random.default_rng(2)
    truth = rng.integers(0, 5, 2000)
    result = seeded_paired_test(truth, _runs(truth, [0.78, 0.79, 0.78], rng), _runs(truth, [0.86, 0.85, 0.86], rng), 5)
    assert result["accuracy"]["p_value"] < 1e-6 and result["accuracy"]["interval_95"][0] > 0.04


def test_holm_adjusts_step_down_and_stays_monotone():
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1, never below an earlier step
    verdicts = [{"accuracy": {"p_value": p}, "macro_f1": {"p_value": 0.5}} for p in (0.004, 0.02)]
    assert apply_holm(verdicts) == 4  # the family: both metrics of both verdicts
    assert verdicts[0]["accuracy"]["p_holm"] == pytest.approx(0.016) and verdicts[0]["accuracy"]["significant"]
    assert verdicts[1]["accuracy"]["p_holm"] == pytest.approx(0.06) and not verdicts[1]["accuracy"]["significant"]
