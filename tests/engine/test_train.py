import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from artextract.engine import loop as loop_module
from artextract.engine.checkpoint import load_model_file
from artextract.engine.data import CachedSplit, load_data_folder
from artextract.errors import ArtExtractError
from artextract.stages.train import train

from conftest import tiny_train_config


def test_smoke_training_learns_well_above_chance(prepared_small, tmp_path):
    config = tiny_train_config(epochs=12)
    result = train(prepared_small, tmp_path / "run", config)
    metrics = pd.read_csv(tmp_path / "run" / "metrics.csv")
    assert list(metrics["epoch"]) == list(range(1, 13))
    for column in ["train_loss", "select_loss", "select_acc_artist", "select_macro_f1_genre", "lr", "images_per_s"]:
        assert column in metrics
    best = metrics.loc[metrics["score"].idxmax()]
    assert result.state.best_epoch == best["epoch"]
    assert best["select_acc_artist"] > 0.6, best.to_dict()  # 4 artists: chance is 0.25
    assert metrics["train_loss"].iloc[-1] < metrics["train_loss"].iloc[0]
    for name in ["config.yaml", "env.json", "run.json", "checkpoints/last.pt", "model.safetensors"]:
        assert (tmp_path / "run" / name).is_file(), name


def test_model_file_is_self_contained(prepared_small, tmp_path):
    config = tiny_train_config(epochs=1)
    train(prepared_small, tmp_path / "run", config)
    model, metadata = load_model_file(tmp_path / "run" / "model.safetensors")
    info = load_data_folder(prepared_small)
    assert metadata.classes == info.classes
    p = metadata.preprocessing
    assert (p.image_size, p.cache_size) == (32, info.cache_size) and len(p.mean) == 3
    # One epoch: the best model is the last one.
    last = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)["model"]
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, last[key])


def test_resumed_run_ends_with_the_same_weights(prepared_small, tmp_path):
    config = tiny_train_config(epochs=3)
    train(prepared_small, tmp_path / "straight", config)
    stopped = train(prepared_small, tmp_path / "resumed", config, should_stop=lambda epoch: epoch == 1)
    assert stopped.interrupted and stopped.state.epoch == 1
    resumed = train(prepared_small, tmp_path / "resumed", config, resume=True)
    assert resumed.state.epoch == 3
    straight = load_file(tmp_path / "straight" / "model.safetensors")
    again = load_file(tmp_path / "resumed" / "model.safetensors")
    for key in straight:
        assert torch.equal(straight[key], again[key]), key
    last_a = torch.load(tmp_path / "straight" / "checkpoints" / "last.pt", weights_only=True)["model"]
    last_b = torch.load(tmp_path / "resumed" / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(last_a[k], last_b[k]) for k in last_a)
    a = pd.read_csv(tmp_path / "straight" / "metrics.csv").drop(columns=["images_per_s", "epoch_seconds"])
    b = pd.read_csv(tmp_path / "resumed" / "metrics.csv").drop(columns=["images_per_s", "epoch_seconds"])
    pd.testing.assert_frame_equal(a, b)


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(prepared_small, tmp_path, monkeypatch):
    real_loss = loop_module.masked_multitask_loss
    calls = {"n": 0}
    steps_per_epoch = len(CachedSplit(load_data_folder(prepared_small), "train", ["artist", "style", "genre"])) // 16

    def poisoned(*args, **kwargs):
        total, per_task = real_loss(*args, **kwargs)
        calls["n"] += 1
        return (total * float("nan") if calls["n"] == steps_per_epoch + 2 else total), per_task

    monkeypatch.setattr(loop_module, "masked_multitask_loss", poisoned)
    with pytest.raises(ArtExtractError, match=rf"NaN or infinite at step {steps_per_epoch + 2} \(epoch 2\)"
                                              r".*last good checkpoint.*epoch 1"):
        train(prepared_small, tmp_path / "run", tiny_train_config(epochs=3))
    assert torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)["state"]["epoch"] == 1


def test_bad_inputs_exit_2_without_leaving_a_run_folder(run_cli, prepared_small, tmp_path):
    incomplete = tmp_path / "incomplete"
    incomplete.mkdir()
    (incomplete / "classes.json").write_text("{}")
    cases = [
        (["--data", tmp_path / "nowhere"], "has no manifest.parquet"),
        (["--data", incomplete], "has no manifest.parquet"),
        (["--data", prepared_small, "--tasks", "painter"], "task 'painter' is not in"),
        (["--data", prepared_small, "--batch-size", "100000"], "fewer than one batch"),
        (["--data", prepared_small, "--backbone", "no_such_net", "--batch-size", "16"], "unknown backbone"),
    ]
    for n, (args, message) in enumerate(cases):
        out = tmp_path / f"run{n}"
        result = run_cli("train", *args, "--out", out, "--set", "train.accelerator=cpu")
        assert result.code == 2, (args, result.stderr)
        assert message in result.stderr and "Traceback" not in result.stderr
        assert not out.exists(), args


def test_cli_trains_and_resumes(run_cli, prepared_small, tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("model:\n  backbone: test_resnet\n  output_stride: 8\n  hidden_size: 16\n"
                      "train:\n  batch_size: 16\n  image_size: 32\n  workers: 0\n  accelerator: cpu\n")
    first = run_cli("train", "--data", prepared_small, "--out", tmp_path / "run", "--config", config, "--epochs",
                    "1", "--reader", "lstm")
    assert first.code == 0, first.stderr
    assert "finished after epoch 1" in first.stdout
    more = run_cli("train", "--data", prepared_small, "--out", tmp_path / "run", "--resume", "--epochs", "2")
    assert more.code == 0, more.stderr
    assert len(pd.read_csv(tmp_path / "run" / "metrics.csv")) == 2
    # --resume finds its DATA in run.json (issue 26: --data was required)
    again = run_cli("train", "--out", tmp_path / "run", "--resume", "--epochs", "3")
    assert again.code == 0, again.stderr
    assert len(pd.read_csv(tmp_path / "run" / "metrics.csv")) == 3
    assert run_cli("train", "--out", tmp_path / "new").code == 2  # a new run still needs --data
    import yaml

    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["model"]["reader"] == "lstm" and saved["train"]["batch_size"] == 16
    busy = run_cli("train", "--data", prepared_small, "--out", tmp_path / "run", "--config", config)
    assert busy.code == 2 and "--force" in busy.stderr


@pytest.mark.slow
def test_two_process_ddp_on_cpu(prepared_small, tmp_path):
    """Fabric launches a second process (gloo); metrics cover the whole selection set exactly once."""
    config = tmp_path / "c.yaml"
    config.write_text("model:\n  backbone: test_resnet\n  output_stride: 8\n  hidden_size: 16\n"
                      "train:\n  batch_size: 8\n  image_size: 32\n  workers: 0\n  accelerator: cpu\n  epochs: 2\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-m", "artextract", "train", "--data", str(prepared_small), "--out",
                             str(tmp_path / "run"), "--config", str(config), "--devices", "2"],
                            capture_output=True, text=True, timeout=600, env=env, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = pd.read_csv(tmp_path / "run" / "metrics.csv")
    assert len(metrics) == 2
    # Recompute the selection score of the saved best model in one process: it must match the logged one.
    from lightning.fabric import Fabric

    from artextract.engine.loop import select
    from artextract.engine.runtime import Runtime
    from artextract.engine.session import build_session
    from artextract.layout import RunFolder

    info = load_data_folder(prepared_small)
    cfg = tiny_train_config(batch_size=8)
    session = build_session(Fabric(accelerator="cpu", devices=1), Runtime.resolve("cpu"), info,
                            RunFolder(tmp_path / "unused"), cfg)
    session.raw_model.load_state_dict(load_file(tmp_path / "run" / "model.safetensors"))
    scores, _ = select(session, epoch=0)
    best = metrics.loc[metrics["score"].idxmax()]
    assert scores["score"] == pytest.approx(best["score"], abs=1e-6)
    assert json.loads(Path(tmp_path / "run" / "env.json").read_text())["command"][-2:] == ["--devices", "2"]


def test_ctrl_c_mid_epoch_saves_and_resumes_exactly(prepared_small, tmp_path, monkeypatch):
    import signal

    config = tiny_train_config(epochs=2)
    train(prepared_small, tmp_path / "straight", config)
    real_loss = loop_module.masked_multitask_loss
    calls = {"n": 0}

    def interrupting(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 6:  # during the second epoch's second step
            os.kill(os.getpid(), signal.SIGINT)
        return real_loss(*args, **kwargs)

    monkeypatch.setattr(loop_module, "masked_multitask_loss", interrupting)
    stopped = train(prepared_small, tmp_path / "resumed", config)
    assert stopped.interrupted
    saved = torch.load(tmp_path / "resumed" / "checkpoints" / "last.pt", weights_only=True)["state"]
    assert (saved["epoch"], saved["batch_in_epoch"], saved["step"]) == (1, 2, 6)
    monkeypatch.setattr(loop_module, "masked_multitask_loss", real_loss)
    train(prepared_small, tmp_path / "resumed", config, resume=True)
    straight = load_file(tmp_path / "straight" / "model.safetensors")
    again = load_file(tmp_path / "resumed" / "model.safetensors")
    assert all(torch.equal(straight[k], again[k]) for k in straight)


def test_nan_in_the_first_epoch_leaves_no_run_folder(run_cli, prepared_small, tmp_path, monkeypatch):
    real_loss = loop_module.masked_multitask_loss

    def poisoned(*args, **kwargs):
        total, per_task = real_loss(*args, **kwargs)
        return total * float("nan"), per_task

    monkeypatch.setattr(loop_module, "masked_multitask_loss", poisoned)
    result = run_cli("train", "--data", prepared_small, "--out", tmp_path / "run", "--backbone", "test_resnet",
                     "--batch-size", "16", "--image-size", "32", "--set", "train.accelerator=cpu",
                     "--set", "train.workers=0")
    assert result.code == 2
    assert "NaN or infinite at step 1 (epoch 1)" in result.stderr and "nothing was kept" in result.stderr
    assert not (tmp_path / "run").exists()


def test_a_vanished_cache_is_a_clear_error(run_cli, prepared_small, tmp_path):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(prepared_small, data)
    (data / "cache" / "images.u8").unlink()
    result = run_cli("train", "--data", data, "--out", tmp_path / "run", "--set", "train.accelerator=cpu")
    assert result.code == 2 and "images.u8 is missing" in result.stderr and "Traceback" not in result.stderr


def test_class_weights_balanced_sampling_and_label_smoothing_train(prepared_small, tmp_path):
    import numpy as np

    from artextract.engine.sampler import balanced_weights, batch_indices

    artist_only = CachedSplit(load_data_folder(prepared_small), "train", ["artist"])
    weights = balanced_weights(artist_only)
    drawn = np.concatenate([np.concatenate(batch_indices(len(artist_only), 8, epoch=e, seed=0, weights=weights))
                            for e in range(40)])
    shares = np.bincount(artist_only.labels[drawn, 0]) / len(drawn)
    assert np.allclose(shares, 1 / len(shares), atol=0.03)  # one task: its classes drawn evenly
    split = CachedSplit(load_data_folder(prepared_small), "train", ["artist", "style", "genre"])
    split.labels = split.labels.copy()
    split.labels[::3, 0] = -1  # a third of the images have no artist label
    weights = balanced_weights(split)
    assert (weights > 0).all()  # every image labelled for some task can be drawn (not only the artist-labelled)
    config = tiny_train_config(epochs=1, class_weights=True, balanced_sampling=True, label_smoothing=0.1)
    result = train(prepared_small, tmp_path / "run", config)
    metrics = pd.read_csv(tmp_path / "run" / "metrics.csv")
    assert result.state.epoch == 1 and metrics["train_loss"].notna().all()


def test_resume_with_more_epochs_says_so_and_records_it(run_cli, prepared_small, tmp_path):
    import yaml

    args = ["--data", prepared_small, "--out", tmp_path / "run", "--backbone", "test_resnet", "--batch-size", "16",
            "--image-size", "32", "--set", "train.accelerator=cpu", "--set", "train.workers=0",
            "--set", "model.hidden_size=8", "--set", "model.output_stride=8"]
    first = run_cli("train", *args, "--epochs", "1")
    assert first.code == 0, first.stderr
    assert "model: test_resnet (random initialisation, no pretrained weights)" in first.stderr
    assert "steps of 16 per epoch" in first.stderr
    assert "next: artextract evaluate --run" in first.stdout
    more = run_cli("train", "--data", prepared_small, "--out", tmp_path / "run", "--resume", "--epochs", "2")
    assert more.code == 0, more.stderr
    assert "train.epochs=2 (was 1)" in more.stderr and "schedule is recomputed over 2 epochs" in more.stderr
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["train"]["epochs"] == 2
    changed = run_cli("train", "--data", prepared_small, "--out", tmp_path / "run", "--resume", "--reader", "lstm")
    assert changed.code == 2 and "cannot resume" in changed.stderr and "model.reader='lstm'" in changed.stderr


def test_settings_that_defeat_the_reader_are_warned_about(run_cli, prepared_small, tmp_path):
    result = run_cli("train", "--data", prepared_small, "--out", tmp_path / "run", "--backbone", "test_resnet",
                     "--batch-size", "16", "--image-size", "48", "--epochs", "1", "--set", "train.accelerator=cpu",
                     "--set", "train.workers=0", "--set", "model.hidden_size=8")
    assert result.code == 0, result.stderr
    assert "upsampled from a 32 px cache" in result.stderr
    tiny = run_cli("train", "--data", prepared_small, "--out", tmp_path / "tiny", "--backbone", "resnet18",
                   "--batch-size", "16", "--image-size", "32", "--epochs", "1", "--set", "train.accelerator=cpu",
                   "--set", "train.workers=0", "--set", "model.hidden_size=8")
    assert tiny.code == 0, tiny.stderr
    assert "1x1 feature grid at 32 px" in tiny.stderr


def test_a_temperature_that_worsens_calibration_is_said_once_per_run(monkeypatch, caplog):
    """Issue 26: the caveat came again at every better epoch."""
    import logging
    from types import SimpleNamespace

    import numpy as np

    from artextract.analysis import calibration
    from artextract.engine.selection import fit_temperatures

    eces = iter([0.01, 0.2] * 3)  # before, after: every fit makes the selection ECE worse
    monkeypatch.setattr(calibration, "reliability", lambda y, p: {"ece": next(eces)})
    rng = np.random.default_rng(0)
    dataset = SimpleNamespace(labels=rng.integers(0, 3, (40, 1)), tasks=["artist"])
    predicted = {"row": np.arange(40), "logits_artist": rng.normal(size=(40, 3)).astype(np.float32)}
    noted: set[str] = set()
    with caplog.at_level(logging.INFO, logger="artextract"):
        for _epoch in range(3):
            fit_temperatures(dataset, predicted, noted)
    assert sum("raises the selection set's calibration error" in r.getMessage() for r in caplog.records) == 1
