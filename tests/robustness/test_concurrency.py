"""Concurrent runs and kill sequences on one DATA or RUN folder (issue 13, items 3 and 5): a second writer is
refused at once, naming the first, and nothing a killed or concurrent run left is trusted by a rerun."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from artextract.config import PrepareConfig
from artextract.core import lock as lock_module
from artextract.core.lock import FolderBusy, FolderLock, folder_lock
from artextract.core.outdir import claimed_output_dir
from artextract.data import cache as cache_module
from artextract.data.cache_files import open_cache
from artextract.errors import DataError
from artextract.layout import DataFolder, RunFolder
from artextract.stages.prepare import prepare_dataset
from artextract.stages.train import train

from conftest import tiny_train_config


@pytest.fixture
def quick_wait(monkeypatch):
    monkeypatch.setattr(lock_module, "SHARED_WAIT_S", 0.3)


def _prepare(synth: Path, out: Path, size: int = 24, rebuild: bool = False, **config: object):
    """prepare_dataset as the command runs it; `rebuild`: --force (another cache size needs it)."""
    return prepare_dataset(synth / "csv", synth / "wikiart", out, PrepareConfig(cache_size=size, workers=1, **config),
                           rebuild=rebuild)


def _rows_all_decoded(data: Path) -> bool:
    manifest = pd.read_parquet(DataFolder(data).manifest)
    rows = manifest.loc[manifest["status"] == "ok", "cache_index"].to_numpy()
    images = open_cache(DataFolder(data).cache)
    return bool(len(rows)) and bool((images[rows].reshape(len(rows), -1).max(axis=1) > 0).all())


def test_a_lock_held_by_another_process_is_refused_naming_it(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, pathlib; from artextract.core.lock import folder_lock\n"
         f"with folder_lock(pathlib.Path({str(tmp_path)!r})):\n    print('held', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(FolderBusy, match=rf"in use by another artextract process \(pid {holder.pid} on "), \
                folder_lock(tmp_path):
            pass
    finally:
        holder.communicate("", timeout=30)
    with folder_lock(tmp_path):  # a finished (or killed) holder leaves no lock behind
        pass


def test_a_second_train_on_the_same_new_folder_is_refused(prepared_small, tmp_path):
    run = tmp_path / "run"
    # The first run holds the folder between its emptiness check and its first file: the moment two runs both
    # passed the check before.
    with claimed_output_dir(run):
        with pytest.raises(FolderBusy, match="in use by another artextract process"):
            train(prepared_small, run, tiny_train_config(epochs=1))
        with pytest.raises(FolderBusy):
            train(prepared_small, run, tiny_train_config(epochs=1), force=True)
    assert sorted(p.name for p in run.iterdir()) == [lock_module.LOCK_NAME]  # B wrote nothing into A's folder
    train(prepared_small, run, tiny_train_config(epochs=1))  # the folder is free again once A is done
    assert RunFolder(run).model.is_file()


def test_resume_is_refused_while_the_run_is_training(prepared_small, tmp_path):
    run = tmp_path / "run"
    train(prepared_small, run, tiny_train_config(epochs=1))
    # The message names the holder (this test process here), as a second plain `train` is told.
    holder = rf"in use by another artextract process \(pid {os.getpid()} "
    with folder_lock(run), pytest.raises(FolderBusy, match=holder):
        train(prepared_small, run, tiny_train_config(epochs=2), resume=True)


def test_evaluate_says_when_the_run_is_still_training_or_was_interrupted(prepared_small, tmp_path, caplog):
    import logging

    from artextract.stages.evaluate import evaluate_run

    run = RunFolder(tmp_path / "run")
    train(prepared_small, run.root, tiny_train_config(epochs=2), should_stop=lambda epoch: epoch == 1)
    with caplog.at_level(logging.WARNING, logger="artextract"):
        evaluate_run(run.root, out=tmp_path / "e1", split="select")
    said = " ".join(r.getMessage() for r in caplog.records)
    assert "did not finish its training (stopped after 1 epoch(s))" in said
    assert f"`artextract train --out {run.root} --resume` continues it" in said

    caplog.clear()
    train(prepared_small, run.root, tiny_train_config(epochs=2), resume=True)
    with folder_lock(run.root), caplog.at_level(logging.WARNING, logger="artextract"):  # as a running `train` does
        evaluate_run(run.root, out=tmp_path / "e2", split="select")
    said = " ".join(r.getMessage() for r in caplog.records)
    assert f"is still training (pid {os.getpid()} on " in said and "after 2 epoch(s)" in said

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="artextract"):  # finished, nobody writing: nothing to say
        evaluate_run(run.root, out=tmp_path / "e3", split="select")
    assert "training" not in " ".join(r.getMessage() for r in caplog.records)


def test_force_over_a_finished_run_starts_clean_and_keeps_other_files(prepared_small, tmp_path, monkeypatch):
    run = RunFolder(tmp_path / "run")
    train(prepared_small, run.root, tiny_train_config(epochs=2))
    (run.root / "notes.txt").write_text("mine")
    (run.default_eval / "report.html").parent.mkdir()
    (run.default_eval / "report.html").write_text("an evaluation of the old model")

    # A forced run that fails before its first epoch must not leave (or name) the old run's checkpoint.
    def fail(*args, **kwargs):
        raise RuntimeError("out of memory, say")

    monkeypatch.setattr("artextract.stages.train.fit", fail)
    with pytest.raises(RuntimeError):
        train(prepared_small, run.root, tiny_train_config(epochs=1), force=True)
    assert not run.last.exists() and not run.model.exists() and not run.default_eval.exists()
    assert (run.root / "notes.txt").read_text() == "mine"
    monkeypatch.undo()

    train(prepared_small, run.root, tiny_train_config(epochs=1), force=True)
    assert len(pd.read_csv(run.metrics)) >= 1
    assert pd.read_csv(run.metrics)["epoch"].max() == 1  # only the new run's epochs
    assert (run.root / "notes.txt").read_text() == "mine"


def test_prepare_refuses_another_image_size_while_a_run_reads_data(make_synth, tmp_path, quick_wait):
    synth = make_synth(tmp_path / "synth", artists=3, per_artist=6, size=40)
    data = tmp_path / "data"
    _prepare(synth, data, size=24)
    with folder_lock(data, exclusive=False):  # what train and evaluate hold
        with pytest.raises(DataError, match=r"caches 24 px squares.*--force"):
            _prepare(synth, data, size=32)  # another size needs --force, whoever reads DATA
        with pytest.raises(FolderBusy, match="its cache cannot be rebuilt now"):
            _prepare(synth, data, size=32, rebuild=True)
        _prepare(synth, data, size=24)  # the same inputs may still be completed or re-reported
    assert _rows_all_decoded(data)
    _prepare(synth, data, size=32, rebuild=True)  # once free, --force rebuilds the cache at the other size
    assert open_cache(DataFolder(data).cache).shape[1] == 32 and _rows_all_decoded(data)


def test_concurrent_prepares_the_same_shard_twice_or_another_size_are_refused(make_synth, tmp_path, monkeypatch,
                                                                              quick_wait):
    synth = make_synth(tmp_path / "synth", artists=3, per_artist=6, size=40)
    data = tmp_path / "data"
    started, release = threading.Event(), threading.Event()
    build_one = cache_module._build_one

    def slow_build_one(job):
        started.set()
        assert release.wait(30)
        return build_one(job)

    monkeypatch.setattr(cache_module, "_build_one", slow_build_one)
    first: dict[str, object] = {}
    thread = threading.Thread(target=lambda: first.update(result=_prepare(synth, data, size=24)))
    thread.start()
    try:
        assert started.wait(30)  # the first prepare is decoding, DATA shared and its shard held
        with pytest.raises(FolderBusy, match="building shard 0/1 of the same cache"):
            _prepare(synth, data, size=24)  # the same shard again
        with pytest.raises(DataError, match=r"caches 24 px squares.*--force"):
            _prepare(synth, data, size=32)
        with pytest.raises(FolderBusy, match="its cache cannot be rebuilt now"):
            _prepare(synth, data, size=32, rebuild=True)
    finally:
        release.set()
        thread.join(60)
    assert "result" in first and _rows_all_decoded(data)


@pytest.mark.parametrize("status_name", ["own name", "old name"])
def test_a_rerun_never_trusts_status_written_under_another_layout(make_synth, tmp_path, status_name):
    """Run A (32 px) finished its rows; run B (24 px) reset the cache and was killed before decoding; A's status
    file came back (A saved it after B's reset, or it is an older ArtExtract's file). B's rerun must decode every
    row instead of trusting A's, which would leave them black."""
    synth = make_synth(tmp_path / "synth", artists=3, per_artist=6, size=40)
    data = tmp_path / "data"
    _prepare(synth, data, size=32)
    cache_dir = DataFolder(data).cache
    (a_status,) = cache_dir.glob("status-*.npy")
    kept = shutil.copy(a_status, tmp_path / "a-status.npy")

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cache_module, "_build_shard", killed)
        with pytest.raises(KeyboardInterrupt):
            _prepare(synth, data, size=24, rebuild=True)
    shutil.copy(kept, a_status if status_name == "own name" else cache_dir / "status-0of1.npy")

    result = _prepare(synth, data, size=24)
    assert result.report["cache"]["already_cached"] == 0
    assert _rows_all_decoded(data)
    assert not (cache_dir / "status-0of1.npy").exists()  # stale files are cleared, not left to mislead


def test_rows_decided_under_other_limits_are_decided_again(make_synth, tmp_path, quick_wait):
    """The pixel and file-size limits decide which rows are skipped: a rerun with a raised limit must decode what the
    lower one skipped, and one with a lowered limit must skip what is now over it, never reuse the old decisions."""
    synth = make_synth(tmp_path / "synth", artists=3, per_artist=6, size=40)
    data = tmp_path / "data"
    manifest = _prepare(synth, data).manifest
    pixels = (manifest["width"] * manifest["height"]).to_numpy()
    limit = int(np.median(pixels))
    over = pixels > limit
    assert 0 < over.sum() < len(pixels)

    lowered = _prepare(synth, data, max_pixels=limit)
    assert lowered.report["cache"]["already_cached"] == 0  # every row decided again
    assert (lowered.manifest["status"] == "skipped").to_numpy().tolist() == over.tolist()
    assert lowered.manifest.loc[over, "skip_reason"].str.contains("over the pixel limit").all()

    refused = rf"limits of {limit:,} pixels .* not .* limits of 1,000,000 pixels"
    # A reader holds DATA: another limit is refused, naming both.
    with folder_lock(data, exclusive=False), pytest.raises(FolderBusy, match=refused):
        _prepare(synth, data, max_pixels=1_000_000)
    raised = _prepare(synth, data, max_pixels=1_000_000)
    assert (raised.manifest["status"] == "ok").all() and _rows_all_decoded(data)
    assert _prepare(synth, data, max_pixels=1_000_000).report["cache"]["already_cached"] == len(pixels)


def test_status_of_one_layout_is_not_read_as_another(tmp_path):
    layout_a = cache_module.CacheLayout(32, 4, "a" * 64)
    layout_b = cache_module.CacheLayout(24, 4, "b" * 64)
    done = np.zeros(4, dtype=cache_module.STATUS_DTYPE)
    done["state"] = cache_module.OK
    np.save(tmp_path / f"status-{cache_module._status_name(layout_a, (0, 1))}.npy", done)
    assert (cache_module.load_status(tmp_path, layout_a)[0]["state"] == cache_module.OK).all()
    assert (cache_module.load_status(tmp_path, layout_b)[0]["state"] == cache_module.PENDING).all()


def test_a_fifo_under_the_lock_name_is_an_error_not_a_hang(tmp_path):
    import os

    os.mkfifo(tmp_path / lock_module.LOCK_NAME)
    with pytest.raises(Exception, match="not a regular file"):
        FolderLock(tmp_path)


def test_a_second_run_needing_the_same_feature_maps_waits_and_reuses_them(prepared_small, monkeypatch):
    """Two frozen-backbone runs starting on one DATA: the second must not reset or write the maps folder under the
    first (it would mark rows done that are zeros in the file the first replaced); it waits, then reuses them."""
    import torch

    from artextract.engine import features as features_module
    from artextract.engine.data import load_data_folder
    from artextract.engine.preprocessing import Preprocessing
    from artextract.engine.runtime import Runtime
    from artextract.models import build_model

    data = load_data_folder(prepared_small)
    torch.manual_seed(5)
    model = build_model(tiny_train_config().model, data.classes).eval()
    preprocessing = Preprocessing(data.cache_size, 32, model.backbone.mean, model.backbone.std)
    args = (data, model.backbone, "concurrent", preprocessing, Runtime.resolve("cpu"), torch.device("cpu"), 16)
    computing, release = threading.Event(), threading.Event()
    computed: dict[str, int] = {}
    compute = features_module._compute

    def slow_compute(*compute_args):
        name = threading.current_thread().name
        computed[name] = computed.get(name, 0) + len(compute_args[-1])
        if name == "first":
            computing.set()
            assert release.wait(30)
        return compute(*compute_args)

    monkeypatch.setattr(features_module, "_compute", slow_compute)
    results: dict[str, object] = {}

    def build(name: str) -> None:
        results[name] = features_module.build_features(*args)

    first = threading.Thread(target=build, args=("first",), name="first")
    second = threading.Thread(target=build, args=("second",), name="second")
    first.start()
    try:
        assert computing.wait(30)
        second.start()
        second.join(1.0)
        assert second.is_alive(), "the second run did not wait for the first"
    finally:
        release.set()
        first.join(60)
        second.join(60)
    usable = data.manifest.loc[data.manifest["status"] == "ok", "cache_index"].to_numpy()
    assert computed == {"first": len(usable)}  # the second computed nothing
    maps = results["second"].maps[usable].astype(np.float32)
    assert np.abs(maps).reshape(len(usable), -1).max(axis=1).min() > 0  # no all-zero map trusted
