"""`artextract compare`: paired statistics equal to a reference computation, and the command on two real runs."""

import json
import os

import numpy as np
import pytest
from scipy.stats import binom

from artextract.analysis.compare import mcnemar_exact, paired_difference

from conftest import tiny_train_config


def test_mcnemar_is_the_exact_two_sided_binomial_test():
    a = np.array([True] * 30 + [False] * 10 + [True] * 8 + [False] * 2)
    b = np.array([True] * 30 + [True] * 10 + [False] * 8 + [False] * 2)
    result = mcnemar_exact(a, b)
    assert (result["only_a_right"], result["only_b_right"]) == (8, 10)
    reference = min(1.0, 2 * binom.cdf(8, 18, 0.5))  # two-sided: double the smaller tail
    assert result["p_value"] == pytest.approx(reference)
    assert mcnemar_exact(a, a)["p_value"] == 1.0


def test_paired_interval_is_tighter_than_the_difference_of_independent_ones():
    rng = np.random.default_rng(0)
    a = rng.random(400) < 0.7
    b = a.copy()
    b[np.flatnonzero(~a)[:20]] = True  # b is right wherever a is, and on 20 more images
    result = paired_difference(a, b)
    assert result["difference"] == pytest.approx(20 / 400)
    low, high = result["interval_95"]
    assert 0 < low < 0.05 < high  # paired: clearly positive, though each accuracy's own interval is +-4.5 points


def test_compare_two_runs_that_differ_only_in_the_reader(run_cli, evaluated_run, prepared_small, tmp_path, monkeypatch):
    from artextract.stages.train import train

    config = tiny_train_config(epochs=2)
    config.model.reader = "none"
    gap = tmp_path / "gap"
    train(prepared_small, gap, config)
    assert run_cli("evaluate", "--run", gap, "--batch-size", "32").code == 0
    out = tmp_path / "compare.json"
    result = run_cli("compare", evaluated_run, gap, "--output", out)
    assert result.code == 0, result.stderr
    assert "McNemar p" in result.stdout and "+ GAP" in result.stdout and "gru rows attention" in result.stdout
    saved = json.loads(out.read_text())
    assert {p["task"] for p in saved["pairs"]} == {"artist", "style", "genre"}
    pair = next(p for p in saved["pairs"] if p["task"] == "artist")
    runs = {r["name"]: r for r in saved["runs"]}
    assert pair["accuracy_a"] == pytest.approx(runs[pair["a"]]["tasks"]["artist"]["accuracy"])
    assert pair["difference"] == pytest.approx(pair["accuracy_b"] - pair["accuracy_a"])
    assert 0.0 <= pair["mcnemar"]["p_value"] <= 1.0
    # RUN folders given relative to the working directory are still named after the run, not "eval"
    monkeypatch.chdir(tmp_path)
    assert run_cli("compare", os.path.relpath(evaluated_run), "gap", "--output", "rel.json").code == 0
    assert {r["name"] for r in json.loads((tmp_path / "rel.json").read_text())["runs"]} == {evaluated_run.name, "gap"}
    assert run_cli("compare", evaluated_run).code == 2
    assert run_cli("compare", evaluated_run, tmp_path / "nothing").code == 2
