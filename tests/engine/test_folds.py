"""K-fold cross-validation over the training paintings: folds that partition them, runs that select on their own
fold (in training and in evaluate), and an ablation that scores every training painting once."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tests.conftest import tiny_train_config


def _manifest(count: int = 60) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    split = rng.choice(["train", "train", "train", "select", "eval"], size=count)
    status = np.where(np.arange(count) % 17 == 5, "skipped", "ok")
    artist = rng.integers(-1, 4, size=count)  # -1: unlabelled for artist, stratified by style then
    return pd.DataFrame({"path": [f"p/{i:03d}.jpg" for i in range(count)], "split": split, "status": status,
                         "cache_index": np.arange(count), "label_artist": artist,
                         "label_style": rng.integers(0, 3, size=count)})


def test_folds_partition_the_training_paintings_by_class_whatever_the_row_order():
    from artextract.engine.folds import fold_of_rows

    manifest = _manifest()
    fold = fold_of_rows(manifest, 3)
    pooled = manifest["split"].isin(["train", "select"]) & (manifest["status"] == "ok")
    assert (fold[pooled.to_numpy()] >= 0).all() and (fold[~pooled.to_numpy()] == -1).all()  # eval, skipped: none
    for artist in range(4):  # each class spread over the folds (sizes differ by at most one)
        counts = np.bincount(fold[pooled.to_numpy() & (manifest["label_artist"] == artist).to_numpy()], minlength=3)
        assert counts.max() - counts.min() <= 1
    assert max(np.bincount(fold[fold >= 0])) - min(np.bincount(fold[fold >= 0])) <= 1
    shuffled = manifest.sample(frac=1.0, random_state=1)  # the same painting keeps its fold
    again = dict(zip(shuffled["path"], fold_of_rows(shuffled, 3), strict=True))
    assert all(again[p] == f for p, f in zip(manifest["path"], fold, strict=True))


def test_a_fold_view_selects_on_its_fold_and_leaves_eval_alone():
    from artextract.engine.data import DataInfo
    from artextract.engine.folds import fold_of_rows, fold_view

    manifest = _manifest()
    info = DataInfo(folder=None, classes={}, manifest=manifest, cache_size=32)  # type: ignore[arg-type]
    fold = fold_of_rows(manifest, 3)
    seen = np.zeros(len(manifest), dtype=int)
    for k in range(3):
        view = fold_view(info, 3, k).manifest
        assert (view["split"].to_numpy()[fold == k] == "select").all()
        assert set(view["split"].to_numpy()[(fold >= 0) & (fold != k)]) == {"train"}
        assert (view["split"] == "eval").equals(manifest["split"] == "eval")
        seen += (view["split"] == "select").to_numpy()
    assert (seen[fold >= 0] == 1).all()  # every training painting selected on exactly once
    assert fold_view(info, 0, 0) is info and (info.manifest["split"] == manifest["split"]).all()


@pytest.mark.parametrize(("folds", "fold"), [(1, 0), (3, 3), (0, 2)])
def test_a_fold_outside_its_folds_is_a_config_error(folds, fold):
    from artextract.errors import ConfigError

    config = tiny_train_config(folds=folds, fold=fold)
    with pytest.raises(ConfigError, match=r"train\.folds"):
        config.validate()


def test_a_cross_validation_run_selects_and_is_evaluated_on_its_own_fold(run_cli, prepared_small, tmp_path):
    from artextract.engine.data import load_data_folder
    from artextract.engine.folds import fold_of_rows
    from artextract.stages.train import train

    run = tmp_path / "run"
    train(prepared_small, run, tiny_train_config(epochs=1, folds=3, fold=1))
    assert json.loads((run / "run.json").read_text())["folds"] == [3, 1]
    result = run_cli("evaluate", "--run", run, "--split", "select", "--batch-size", "32")
    assert result.code == 0, result.stderr
    manifest = load_data_folder(prepared_small).manifest
    held_out = set(manifest["path"][fold_of_rows(manifest, 3) == 1])
    scored = pd.read_parquet(run / "eval" / "predictions.parquet")
    assert set(scored["path"][scored["split"] == "select"]) == held_out  # not the selection split prepare carved
    refused = run_cli("train", "--resume", "--out", run, "--set", "train.fold=2")
    assert refused.code != 0 and "train.fold=2" in refused.stderr


def test_ablate_cross_validates_every_training_painting_once(run_cli, prepared_small, tmp_path):
    from artextract.engine.data import load_data_folder

    config = tmp_path / "c.yaml"
    config.write_text("model:\n  backbone: test_resnet\n  output_stride: 8\n  hidden_size: 8\n  tasks: [artist]\n"
                      "train:\n  epochs: 1\n  batch_size: 16\n  image_size: 32\n  workers: 0\n  accelerator: cpu\n"
                      "  cpu_threads: 1\n")
    args = ["ablate", "--data", prepared_small, "--out", tmp_path / "ab", "--config", config,
            "--variants", "gap,gru-rows", "--seeds", "0", "--folds", "2"]
    result = run_cli(*args)
    assert result.code == 0, result.stderr
    report = json.loads((tmp_path / "ab" / "ablation.json").read_text())
    manifest = load_data_folder(prepared_small).manifest
    training = manifest["split"].isin(["train", "select"]) & (manifest["status"] == "ok")
    for variant in ("gap", "gru-rows", "linear-probe"):
        assert report["table"][variant]["artist"]["images"] == int(training.sum())
    assert report["folds"] == 2 and "2-fold cross-validation" in result.stdout
    assert sorted(p.name for p in (tmp_path / "ab" / "runs").iterdir()) == [
        "gap-s0-f0", "gap-s0-f1", "gru-rows-s0-f0", "gru-rows-s0-f1"]
    stamp = (tmp_path / "ab" / "runs" / "gap-s0-f1" / "model.safetensors").stat().st_mtime_ns
    assert run_cli(*args).code == 0  # finished fold runs are reused
    assert (tmp_path / "ab" / "runs" / "gap-s0-f1" / "model.safetensors").stat().st_mtime_ns == stamp
    assert run_cli(*args[:-1], "1").code == 2
    quick = run_cli(*args, "--no-probe")  # the same runs, reused; no probe in the table
    assert quick.code == 0 and "linear-probe" not in json.loads((tmp_path / "ab" / "ablation.json").read_text())[
        "table"]
    # Without gap, the first variant is the baseline every other one is paired against; --pairs names others.
    paired = run_cli(*args[:-6], "--variants", "gru-rows,gru-cols", "--seeds", "0", "--folds", "2", "--no-probe")
    assert paired.code == 0, paired.stderr
    report = json.loads((tmp_path / "ab" / "ablation.json").read_text())
    assert report["pairs"] == [["gru-rows", "gru-cols"]]
    assert "One seed per model: the training variance is not included" in " ".join(paired.stdout.split())
    chosen = run_cli(*args[:-6], "--variants", "gru-rows,gru-cols", "--seeds", "0", "--folds", "2", "--no-probe",
                     "--pairs", "gru-cols:gru-rows")
    assert chosen.code == 0, chosen.stderr
    report = json.loads((tmp_path / "ab" / "ablation.json").read_text())
    assert [(v["a"], v["b"]) for v in report["verdicts"]] == [("gru-cols", "gru-rows")]
    assert report["verdicts"][0]["accuracy"]["mcnemar"]["p_value"] <= 1  # one run each: the exact test beside it
    refused = run_cli(*args[:-6], "--variants", "gru-rows", "--folds", "2", "--pairs", "gru-rows:gap")
    assert refused.code == 2 and "which --variants does not train" in refused.stderr
