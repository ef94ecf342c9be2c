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


def _seed(config, seed):
    import copy

    changed = copy.deepcopy(config)
    changed.train.seed = seed
    return changed


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
    accuracy = pair["accuracy"]
    assert accuracy["a"] == pytest.approx(runs[pair["a"]]["tasks"]["artist"]["accuracy"])
    assert accuracy["difference"] == pytest.approx(accuracy["b"] - accuracy["a"])
    assert 0.0 <= accuracy["mcnemar"]["p_value"] <= 1.0 and not pair["training_variance"]
    assert pair["macro_f1"]["b"] == pytest.approx(runs[pair["b"]]["tasks"]["artist"]["macro_f1"])
    assert saved["tests"] == 6 and all(p[m]["p_holm"] >= p[m]["p_value"] for p in saved["pairs"]
                                       for m in ("accuracy", "macro_f1"))
    assert "Holm's correction over all 6 tests" in result.stdout
    # Two seeds of one model as one argument: averaged, the seeds' variance in the verdict.
    second = tmp_path / "gap-s1"
    train(prepared_small, second, _seed(config, 1))
    assert run_cli("evaluate", "--run", second, "--batch-size", "32").code == 0
    grouped = run_cli("compare", evaluated_run, f"{gap},{second}", "--output", tmp_path / "grouped.json")
    assert grouped.code == 0, grouped.stderr
    pair = json.loads((tmp_path / "grouped.json").read_text())["pairs"][0]
    assert (pair["seeds_a"], pair["seeds_b"], pair["training_variance"]) == (1, 2, False)
    assert pair["b"] == "gap (+1 seeds)" and len(pair["accuracy"]["b_per_seed"]) == 2
    mixed = run_cli("compare", evaluated_run, f"{gap},{evaluated_run}")
    assert mixed.code == 2 and "must differ only in train.seed" in mixed.stderr
    # RUN folders given relative to the working directory are still named after the run, not "eval"
    monkeypatch.chdir(tmp_path)
    assert run_cli("compare", os.path.relpath(evaluated_run), "gap", "--output", "rel.json").code == 0
    assert {r["name"] for r in json.loads((tmp_path / "rel.json").read_text())["runs"]} == {evaluated_run.name, "gap"}
    assert run_cli("compare", evaluated_run).code == 2
    assert run_cli("compare", evaluated_run, tmp_path / "nothing").code == 2


def test_copied_run_folders_are_named_apart(evaluated_run, tmp_path):
    import shutil

    from artextract.stages.compare import compare

    first = shutil.copytree(evaluated_run, tmp_path / "a" / "run", ignore=shutil.ignore_patterns("similar*"))
    second = shutil.copytree(evaluated_run, tmp_path / "b" / "run", ignore=shutil.ignore_patterns("similar*"))
    third = shutil.copytree(evaluated_run, tmp_path / "seed1", ignore=shutil.ignore_patterns("similar*"))
    result = compare([first, second, third / "eval"])
    names = [run["name"] for run in result["runs"]]
    assert names == ["a/run", "b/run", "seed1"], names  # never "eval", never two alike
    assert {pair["a"] for pair in result["pairs"]} | {pair["b"] for pair in result["pairs"]} == set(names)
