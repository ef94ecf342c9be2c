"""Issue 13, item 7: resume with another DATA, hand-edited manifests, full disks and read-only destinations give one
line (exit 2) before the work, never a traceback after it."""

from __future__ import annotations

import errno
import json
import os
import shutil
from collections import namedtuple
from pathlib import Path

import pandas as pd
import pytest

from artextract.layout import DataFolder, RunFolder
from artextract.stages.train import train

from conftest import tiny_train_config

Usage = namedtuple("Usage", "total used free")


def _copy_data(prepared: Path, where: Path) -> Path:
    shutil.copytree(prepared, where, ignore=shutil.ignore_patterns(".artextract.lock"))
    return where


def _tiny_train_args(data: Path, run: Path, *extra: str) -> list[str]:
    return ["train", "--data", data, "--out", run, "--backbone", "test_resnet", "--image-size", "32",
            "--epochs", "1", "--batch-size", "16", "--set", "train.accelerator=cpu", "--set", "train.workers=0",
            "--set", "model.hidden_size=16", "--set", "model.output_stride=8", *extra]


def _error_line(stderr: str) -> str:
    """The one error line (the log lines before it are progress, not errors)."""
    (line,) = [line for line in stderr.splitlines() if line.startswith("artextract: error:")]
    assert "Traceback" not in stderr
    return line


def _edit_manifest(data: Path, column: str, row: int, value: object) -> None:
    manifest = pd.read_parquet(DataFolder(data).manifest)
    if isinstance(manifest[column].dtype, pd.CategoricalDtype):
        manifest[column] = manifest[column].astype(str)
    manifest.loc[row, column] = value
    manifest.to_parquet(DataFolder(data).manifest, index=False)


def test_resume_on_another_data_is_refused_and_a_moved_data_accepted(prepared_small, tmp_path):
    data = _copy_data(prepared_small, tmp_path / "data")
    run = tmp_path / "run"
    train(data, run, tiny_train_config(epochs=1))
    assert json.loads(RunFolder(run).run_info.read_text())["data_key"]

    moved = data.rename(tmp_path / "moved")  # the same DATA on another disk
    result = train(moved, run, tiny_train_config(epochs=2), resume=True)
    assert result.state.epoch == 2
    assert json.loads(RunFolder(run).run_info.read_text())["data"] == str(moved.resolve())

    # The same folder prepared again with another selection draw: other splits, so another experiment.
    manifest = pd.read_parquet(DataFolder(moved).manifest)
    train_row = int(manifest.index[manifest["split"] == "train"][0])
    _edit_manifest(moved, "split", train_row, "select")
    with pytest.raises(Exception, match="holds other images, labels or splits"):
        train(moved, run, tiny_train_config(epochs=3), resume=True)


@pytest.mark.parametrize(("column", "value", "expected"), [
    ("label_artist", 99, "label_artist 99 is not valid"),
    ("cache_index", 10_000, "cache_index 10000 is not valid"),
    ("split", "validation", "split 'validation' is not valid"),
])
def test_hand_edited_manifest_values_are_named_in_one_line(run_cli, prepared_small, tmp_path, column, value,
                                                           expected):
    data = _copy_data(prepared_small, tmp_path / "data")
    manifest = pd.read_parquet(DataFolder(data).manifest)
    row = int(manifest.index[manifest["status"] == "ok"][3])
    _edit_manifest(data, column, row, value)
    result = run_cli(*_tiny_train_args(data, tmp_path / "run"))
    assert result.code == 2
    line = _error_line(result.stderr)
    assert expected in line and f"row {row} ({manifest['path'][row]})" in line and "Rerun artextract prepare" in line
    assert not (tmp_path / "run").exists()


def test_a_full_disk_is_refused_before_the_cache_is_written(run_cli, make_synth, tmp_path, monkeypatch):
    synth = make_synth(tmp_path / "synth", artists=3, per_artist=6, size=40)
    monkeypatch.setattr("artextract.core.outdir.shutil.disk_usage", lambda path: Usage(10**9, 10**9 - 5000, 5000))
    result = run_cli("prepare", "--csv-dir", synth / "csv", "--images", synth / "wikiart", "--out", tmp_path / "d",
                     "--cache-size", "24", "--workers", "1")
    assert result.code == 2
    line = _error_line(result.stderr)
    assert "the image cache needs about" in line and "4.9 KB free" in line
    assert not list((tmp_path / "d" / "cache").glob("status-*.npy"))  # nothing was marked done


def test_a_full_disk_is_refused_before_training(run_cli, prepared_small, tmp_path, monkeypatch):
    monkeypatch.setattr("artextract.core.outdir.shutil.disk_usage", lambda path: Usage(10**9, 10**9 - 1000, 1000))
    result = run_cli(*_tiny_train_args(prepared_small, tmp_path / "run"))
    assert result.code == 2 and "training (checkpoints and model file) needs about" in result.stderr
    assert not (tmp_path / "run").exists()


def test_a_disk_filling_up_mid_run_is_one_line_and_the_last_checkpoint_survives(run_cli, prepared_small, tmp_path,
                                                                                monkeypatch):
    run = RunFolder(tmp_path / "run")
    assert run_cli(*_tiny_train_args(prepared_small, run.root)).code == 0
    before = run.last.read_bytes()

    def full(path, state):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr("artextract.engine.session.save_checkpoint", full)
    result = run_cli(*_tiny_train_args(prepared_small, run.root, "--resume", "--epochs", "2"))
    assert result.code == 2
    line = _error_line(result.stderr)
    assert f"No space left on device while writing {run.last}" in line and "rerun" in line
    assert run.last.read_bytes() == before


def test_a_file_where_a_folder_should_be_is_named(run_cli, evaluated_run, prepared_small, tmp_path):
    blocker = tmp_path / "afile"
    blocker.write_text("not a folder")
    image = next((Path(prepared_small) / "cache").glob("*"), None)  # any path: refused before it is read
    for command, expected in (
        (["predict", "--model", evaluated_run, str(image), "--output", blocker / "p.csv"], "cannot write"),
        (["evaluate", "--run", evaluated_run, "--out", blocker / "eval"], "cannot create"),
        (["synth", blocker / "s"], "cannot write to"),
    ):
        line = _error_line(run_cli(*command).stderr)
        assert expected in line and f"({blocker} is a file, not a directory)" in line, line


def test_a_misspelt_backbone_is_refused_before_the_data_is_read_with_close_names(run_cli, prepared_small, tmp_path):
    result = run_cli("train", "--data", prepared_small, "--out", tmp_path / "run", "--backbone", "resnet-18")
    line = _error_line(result.stderr)
    assert result.code == 2 and "unknown backbone 'resnet-18'" in line and "did you mean resnet18," in line, line
    assert not (tmp_path / "run").exists()


def test_read_only_destinations_fail_before_the_work(run_cli, evaluated_run, prepared_small, tmp_path, monkeypatch):
    from PIL import Image

    image = tmp_path / "a.png"
    Image.new("RGB", (40, 40), (10, 200, 30)).save(image)
    # /sys is read-only, even for root.
    result = run_cli("predict", "--model", evaluated_run, image, "--output", "/sys/artextract/p.csv")
    assert result.code == 2 and "cannot write /sys/artextract/p.csv" in result.stderr
    assert "calibrated" not in result.stderr  # refused before the model was even loaded
    monkeypatch.setattr("artextract.predictor.Predictor.iter_predict",
                        lambda *a, **k: pytest.fail("predicted into a read-only --cam"))
    result = run_cli("predict", "--model", evaluated_run, image, "--cam", "/sys/artextract-cams")
    assert result.code == 2 and "cannot write to /sys/artextract-cams" in result.stderr
    monkeypatch.undo()

    # A RUN folder that became read-only: resume stops before training, not at the first checkpoint.
    run = tmp_path / "run"
    train(prepared_small, run, tiny_train_config(epochs=1))
    import tempfile

    real = tempfile.NamedTemporaryFile

    def read_only(*args, dir=None, **kwargs):
        if Path(dir).resolve() in {run.resolve(), (run / "checkpoints").resolve()}:
            raise PermissionError(errno.EACCES, "Permission denied")
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr("artextract.core.outdir.tempfile.NamedTemporaryFile", read_only)
    monkeypatch.setattr("artextract.stages.train.fit", lambda *a, **k: pytest.fail("trained into a read-only run"))
    result = run_cli(*_tiny_train_args(prepared_small, run, "--resume", "--epochs", "2"))
    assert result.code == 2 and f"cannot write {run / 'checkpoints' / 'last.pt'} (Permission denied)" in result.stderr


def _damage_predictions(eval_dir: Path, how: str) -> int:
    """Damage RUN/eval's predictions as `how` says; returns the row named in the error (or -1)."""
    path = eval_dir / "predictions.parquet"
    if how == "cut short":
        path.write_bytes(path.read_bytes()[:300])
        return -1
    predictions = pd.read_parquet(path)
    if how == "a label out of range":
        predictions.loc[3, "label_artist"] = 99
    elif how == "logits of the wrong width":
        predictions["logits_style"] = predictions["logits_style"].astype(object)
        predictions.at[5, "logits_style"] = predictions.at[5, "logits_style"][:-1]
    elif how == "a column dropped":
        predictions = predictions.drop(columns="embedding")
    predictions.to_parquet(path, index=False)
    return {"a label out of range": 3, "logits of the wrong width": 5}.get(how, -1)


@pytest.mark.parametrize(("how", "expected"), [
    ("cut short", "predictions.parquet is damaged"),
    ("a label out of range", "label_artist, pred_artist or logits_artist does not fit"),
    ("logits of the wrong width", "label_style, pred_style or logits_style does not fit"),
    ("a column dropped", "has no column 'embedding'"),
])
def test_damaged_or_edited_predictions_are_named_in_one_line(run_cli, evaluated_run, tmp_path, how, expected):
    run = tmp_path / "run"
    shutil.copytree(evaluated_run, run, ignore=shutil.ignore_patterns(".artextract.lock"))
    row = _damage_predictions(run / "eval", how)
    result = run_cli("evaluate", "--run", run, "--from-predictions")
    assert result.code == 2
    line = _error_line(result.stderr)
    assert expected in line and "--force" in line
    if row >= 0:
        assert f"row {row} (" in line


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize(("damaged", "content", "command", "expected"), [
    ("run.json", "{", "evaluate", "run.json is damaged"),
    ("run.json", '{"tasks": []}', "resume", "run.json is damaged (no 'data')"),
    ("eval/metrics.json", "{", "compare", "metrics.json is damaged"),
    ("eval/inputs.json", "[]", "serve", "inputs.json is damaged (a JSON list, not an object)"),
    ("eval/classes.json", '{"artist": 5}', "from-predictions", "classes.json is damaged"),
])
def test_damaged_records_of_a_run_are_named_in_one_line(run_cli, evaluated_run, prepared_small, tmp_path, damaged,
                                                        content, command, expected):
    run = tmp_path / "run"
    shutil.copytree(evaluated_run, run, ignore=shutil.ignore_patterns(".artextract.lock"))
    (run / damaged).write_text(content)
    args = {"evaluate": ["evaluate", "--run", run, "--force"],
            "resume": ["train", "--data", prepared_small, "--out", run, "--resume", "--epochs", "11"],
            "compare": ["compare", run, evaluated_run],
            "serve": ["serve", run, "--port", _free_port()],
            "from-predictions": ["evaluate", "--run", run, "--from-predictions"]}[command]
    result = run_cli(*args)
    assert result.code == 2
    assert expected in _error_line(result.stderr)


def test_a_damaged_data_record_is_named_and_a_damaged_prepare_report_costs_only_its_paragraph(
        run_cli, evaluated_run, prepared_small, tmp_path):
    data = _copy_data(prepared_small, tmp_path / "data")
    (data / "classes.json").write_text('{"artist": 5}')
    result = run_cli(*_tiny_train_args(data, tmp_path / "run"))
    assert result.code == 2 and "classes.json is damaged" in _error_line(result.stderr)

    shutil.copy(prepared_small / "classes.json", data / "classes.json")
    (data / "prepare_report.json").write_text("{")
    run = tmp_path / "evaluated"
    shutil.copytree(evaluated_run, run, ignore=shutil.ignore_patterns(".artextract.lock"))
    result = run_cli("evaluate", "--run", run, "--data", data, "--force", "--batch-size", "32")
    assert result.code == 0, result.stderr
    assert "prepare_report.json is unreadable" in result.stderr and (run / "eval" / "report.html").is_file()


@pytest.mark.parametrize(("args", "expected"), [
    (["--tasks", "artist,artist"], "model.tasks names artist more than once"),
    (["--tasks", ""], "model.tasks is empty"),
    (["--set", "train.seed=-1"], "'train.seed' must be in [0, 4294967295]"),
    (["--config", "latin1.yaml"], "is not UTF-8 text (byte 0xe9"),
])
def test_config_mistakes_are_one_line_before_training(run_cli, prepared_small, tmp_path, monkeypatch, args, expected):
    """Issue 21: these reached a traceback, or advice about the batch size, or a failure deep inside the run."""
    monkeypatch.chdir(tmp_path)
    Path("latin1.yaml").write_bytes("train:\n  epochs: 1  # r\xe9sum\xe9\n".encode("latin-1"))
    result = run_cli(*_tiny_train_args(prepared_small, tmp_path / "run", *args))
    assert result.code == 2 and expected in _error_line(result.stderr), result.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("command", "expected"), [
    (["evaluate", "--batch-size", "0"], "--batch-size must be at least 1, got 0"),
    (["predict", "--batch-size", "0"], "--batch-size must be at least 1"),
    (["predict", "--workers", "-1"], "--workers at least 0"),
])
def test_batch_sizes_and_worker_counts_out_of_range_are_one_line(run_cli, evaluated_run, tmp_path, command,
                                                                expected):
    from PIL import Image

    image = tmp_path / "painting.jpg"
    Image.new("RGB", (40, 40), (200, 120, 40)).save(image)
    where = ["--run", evaluated_run, "--out", tmp_path / "eval"] if command[0] == "evaluate" else [
        "--model", evaluated_run, str(image)]
    result = run_cli(command[0], *where, *command[1:])
    assert result.code == 2 and expected in _error_line(result.stderr), result.stderr


def test_ablate_without_a_selection_split_is_refused_before_training(run_cli, make_synth, tmp_path):
    from artextract.config import PrepareConfig
    from artextract.stages.prepare import prepare_dataset

    synth = make_synth(tmp_path / "synth", artists=3, per_artist=6, size=40)
    prepare_dataset(synth / "csv", synth / "wikiart", tmp_path / "data",
                    PrepareConfig(cache_size=32, workers=1, select_fraction=0.0))
    result = run_cli("ablate", "--data", tmp_path / "data", "--out", tmp_path / "ab", "--variants", "gap",
                     "--seeds", "0", "--set", "model.backbone=test_resnet", "--set", "train.image_size=32")
    assert result.code == 2 and "has no selection split" in _error_line(result.stderr), result.stderr
    assert not (tmp_path / "ab").exists()  # not even a folder holding only the lock file


def test_a_run_killed_before_its_first_checkpoint_gets_advice_that_works(run_cli, prepared_small, tmp_path):
    """Issue 21: --resume said "start again", and starting again was refused as "not empty"."""
    run = tmp_path / "run"
    assert run_cli(*_tiny_train_args(prepared_small, run)).code == 0
    shutil.rmtree(run / "checkpoints")  # as if killed during the first epoch: config.yaml, run.json, env.json stay
    (run / "model.safetensors").unlink()
    (run / "notes.txt").write_text("mine")
    resumed = run_cli(*_tiny_train_args(prepared_small, run, "--resume"))
    assert resumed.code == 2 and "with --force instead of --resume" in _error_line(resumed.stderr)
    again = run_cli(*_tiny_train_args(prepared_small, run, "--force"))  # what the advice says
    assert again.code == 0, again.stderr
    assert RunFolder(run).last.is_file() and (run / "notes.txt").read_text() == "mine"


def test_a_refused_resume_leaves_config_yaml_as_it_was(run_cli, prepared_small, tmp_path):
    """Issue 21: a resume with changed settings, refused (here: a damaged checkpoint), had rewritten config.yaml."""
    run = tmp_path / "run"
    assert run_cli(*_tiny_train_args(prepared_small, run)).code == 0
    before = RunFolder(run).config.read_bytes()
    RunFolder(run).last.write_bytes(b"not a checkpoint")
    resumed = run_cli(*_tiny_train_args(prepared_small, run, "--resume", "--epochs", "3"))
    assert resumed.code == 2 and "last.pt" in _error_line(resumed.stderr)
    assert RunFolder(run).config.read_bytes() == before


def test_feature_maps_cut_short_or_deleted_under_a_reader_are_one_line(prepared_small, tmp_path):
    """Issue 21: a maps file truncated by another process killed the reader with SIGBUS (no message); one deleted
    before a worker opened it gave FileNotFoundError."""
    import numpy as np

    from artextract.engine.data import CachedSplit, load_data_folder
    from artextract.engine.features import FEATURES_FILE, FeatureCache, _read_layout
    from artextract.errors import ArtExtractError

    # Its own DATA without the feature folders other tests left in the shared one.
    data = Path(shutil.copytree(prepared_small, tmp_path / "data",
                                ignore=shutil.ignore_patterns(".artextract.lock", "features")))
    train(data, tmp_path / "run", tiny_train_config(epochs=1, freeze_backbone=True))
    (folder,) = (data / "features").iterdir()
    info = load_data_folder(data)
    split = CachedSplit(info, "train", ["artist"], FeatureCache(folder, _read_layout(folder)))
    rows = np.arange(4)
    assert split[rows][0].shape[0] == 4  # mapped and read
    maps = folder / FEATURES_FILE
    with open(maps, "r+b") as handle:  # what another process rebuilding the folder does first
        handle.truncate(maps.stat().st_size // 2)
    with pytest.raises(ArtExtractError, match=r"was cut short .* run the command again"):
        split[np.arange(len(split) - 4, len(split))]  # rows past the new end: SIGBUS without the check
    maps.unlink()
    with pytest.raises(ArtExtractError, match="was deleted while this run used it"):
        FeatureCache(folder, _read_layout(folder)).maps  # noqa: B018 (a worker opening its map)


# How safetensors' Rust writer words ENOSPC: older releases, and the one installed here (0.7).
_FULL_DISK_MESSAGES = ['Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No space left '
                       'on device" })', "Error while serializing: I/O error: No space left on device (os error 28)"]


@pytest.mark.parametrize("message", _FULL_DISK_MESSAGES)
def test_a_disk_filling_up_while_the_model_file_is_written_is_the_same_one_line(run_cli, prepared_small, tmp_path,
                                                                               monkeypatch, message):
    """safetensors' writer reports ENOSPC as a SafetensorError, in words that changed between its releases."""
    from safetensors import SafetensorError

    def full(*args, **kwargs):
        raise SafetensorError(message)

    run = RunFolder(tmp_path / "run")
    assert run_cli(*_tiny_train_args(prepared_small, run.root)).code == 0
    monkeypatch.setattr("safetensors.torch.save_file", full)
    result = run_cli(*_tiny_train_args(prepared_small, run.root, "--resume", "--epochs", "3"))
    assert result.code == 2
    line = _error_line(result.stderr)
    assert f"No space left on device while writing {run.model}" in line and "rerun" in line
    assert run.last.is_file()  # the epoch's checkpoint is there: --resume goes on


def test_first_mistakes_with_folders_name_the_right_command(run_cli, prepared_small, tmp_path, make_synth):
    """Issue 26: the ArtGAN CSV folder given as --data, and a folder that is not a run given to evaluate."""
    synth = make_synth(tmp_path / "synth", artists=3, per_artist=6, size=40)
    csv = run_cli(*_tiny_train_args(synth / "csv", tmp_path / "run"))
    assert csv.code == 2 and f"prepare --csv-dir {synth / 'csv'}" in _error_line(csv.stderr)
    (tmp_path / "notarun").mkdir()
    notarun = run_cli("evaluate", "--run", tmp_path / "notarun")
    assert notarun.code == 2 and "is not a trained RUN folder (no model.safetensors)" in _error_line(notarun.stderr)
    run = tmp_path / "stopped"
    assert run_cli(*_tiny_train_args(prepared_small, run)).code == 0
    (run / "model.safetensors").unlink()  # as a run stopped during its first epoch leaves it (last.pt saved)
    stopped = run_cli("evaluate", "--run", run)
    assert stopped.code == 2 and f"artextract train --out {run} --resume" in _error_line(stopped.stderr)


def test_a_data_an_evaluation_or_a_synth_folder_in_the_wrong_place_is_named_for_what_it_is(
        run_cli, prepared_small, evaluated_run, tmp_path, make_synth):
    from PIL import Image

    picture = tmp_path / "painting.png"
    Image.new("RGB", (48, 40), (120, 60, 30)).save(picture)
    for args in (["evaluate", "--run", prepared_small], ["predict", "--model", prepared_small, picture],
                 ["serve", prepared_small]):
        line = _error_line(run_cli(*args).stderr)
        assert "is a DATA folder" in line and f"artextract train --data {prepared_small} --out RUN" in line, line
    for args in (["evaluate", "--run", evaluated_run / "eval"], ["serve", evaluated_run / "eval"],
                 ["predict", "--model", evaluated_run / "eval", picture]):
        line = _error_line(run_cli(*args).stderr)
        assert "is an evaluation" in line and f"pass its RUN folder instead, {evaluated_run}" in line, line
    synth = make_synth(tmp_path / "synth", artists=3, per_artist=6, size=40)
    line = _error_line(run_cli(*_tiny_train_args(synth, tmp_path / "run")).stderr)
    assert "generated paintings" in line and f"--csv-dir {synth / 'csv'} --images {synth / 'wikiart'}" in line, line


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0 or shutil.which("mount") is None,
                    reason="mounts a 1 MB tmpfs (root only)")
def test_a_model_file_written_onto_a_full_tmpfs_is_a_plain_no_space_error(tmp_path):
    import subprocess

    import torch

    from artextract.config import ModelConfig
    from artextract.engine.checkpoint import save_model_file
    from artextract.engine.preprocessing import Preprocessing

    small = tmp_path / "small"
    small.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(small)], capture_output=True).returncode:
        pytest.skip("mounting a tmpfs is not permitted here")
    try:
        with pytest.raises(OSError) as raised:
            save_model_file(small / "model.safetensors", torch.nn.Linear(1024, 1024), {"artist": ["a", "b"]},
                            ModelConfig(), Preprocessing(32, 32, (0.5,) * 3, (0.5,) * 3))
        assert raised.value.errno == errno.ENOSPC and str(small / "model.safetensors") in str(raised.value)
        assert not list(small.iterdir())  # no partial file left behind
    finally:
        subprocess.run(["umount", str(small)], check=False)


@pytest.mark.parametrize("damage", ["cut short", "deleted"])
def test_feature_maps_damaged_while_they_are_computed_stop_in_one_line_and_a_rerun_recovers(prepared_small, tmp_path,
                                                                                            monkeypatch, damage):
    from artextract.engine import features
    from artextract.errors import ArtExtractError

    data = Path(shutil.copytree(prepared_small, tmp_path / "data",
                                ignore=shutil.ignore_patterns(".artextract.lock", "features")))
    real_forward = features.forward_batches

    def forward_then_damage(*args, **kwargs):
        for number, out in enumerate(real_forward(*args, **kwargs)):
            if number == 1:  # another program, between two batches
                (maps,) = (data / "features").glob(f"*/{features.FEATURES_FILE}")
                if damage == "deleted":
                    maps.unlink()
                else:
                    with open(maps, "r+b") as handle:
                        handle.truncate(maps.stat().st_size // 3)
            yield out

    monkeypatch.setattr(features, "forward_batches", forward_then_damage)
    config = tiny_train_config(epochs=1, freeze_backbone=True, batch_size=8)
    with pytest.raises(ArtExtractError, match=rf"was {damage} by another program .*run the command again"):
        train(data, tmp_path / "run", config)
    monkeypatch.setattr(features, "forward_batches", real_forward)
    train(data, tmp_path / "run2", config)  # the rerun computes the maps again and trains
    assert RunFolder(tmp_path / "run2").model.is_file()
