"""Interrupts and kills (issue 13, item 8): a second Ctrl-C saves nothing half-done, a resumed epoch's loss counts
the whole epoch, a killed write leaves no temporary file behind the next run, and pool workers die with prepare."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from artextract.engine import loop as loop_module
from artextract.layout import DataFolder, RunFolder
from artextract.stages.train import train

from conftest import tiny_train_config


def _saved_state(run: Path) -> tuple[int, int, int]:
    state = torch.load(RunFolder(run).last, weights_only=True)["state"]
    return state["epoch"], state["batch_in_epoch"], state["step"]


def _same_weights(a: Path, b: Path) -> bool:
    first, second = load_file(RunFolder(a).model), load_file(RunFolder(b).model)
    return all(torch.equal(first[k], second[k]) for k in first)


@pytest.fixture(scope="module")
def straight_run(prepared_small, tmp_path_factory) -> Path:
    """Two epochs without interruption: what every interrupted and resumed run must end with."""
    run = tmp_path_factory.mktemp("straight") / "run"
    train(prepared_small, run, tiny_train_config(epochs=2))
    return run


def _interrupt_at_loss_call(monkeypatch, call: int, presses: int, signum: int = signal.SIGINT) -> None:
    real_loss = loop_module.masked_multitask_loss
    calls = {"n": 0}

    def pressing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == call:
            for _ in range(presses):
                os.kill(os.getpid(), signum)
        return real_loss(*args, **kwargs)

    monkeypatch.setattr(loop_module, "masked_multitask_loss", pressing)


def test_a_second_ctrl_c_aborts_without_saving_the_step_in_progress(prepared_small, straight_run, tmp_path,
                                                                     monkeypatch):
    run = tmp_path / "run"
    _interrupt_at_loss_call(monkeypatch, call=6, presses=2)  # inside the second epoch's second step
    with pytest.raises(KeyboardInterrupt):
        train(prepared_small, run, tiny_train_config(epochs=2))
    assert _saved_state(run) == (1, 0, 4)  # the end of epoch 1, not a step cut in half
    monkeypatch.undo()
    train(prepared_small, run, tiny_train_config(epochs=2), resume=True)
    assert _same_weights(run, straight_run)


def test_sigterm_saves_at_a_step_boundary_and_the_run_resumes_exactly(prepared_small, straight_run, tmp_path,
                                                                      monkeypatch):
    """Issue 21: SLURM and Kubernetes stop a job with SIGTERM (then SIGKILL); it used to kill the run unsaved."""
    _interrupt_at_loss_call(monkeypatch, call=6, presses=1, signum=signal.SIGTERM)  # the second epoch's 2nd step
    run = tmp_path / "run"
    assert train(prepared_small, run, tiny_train_config(epochs=2)).interrupted
    assert _saved_state(run) == (1, 2, 6)  # the step in progress finished and was saved
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # given back after the run
    monkeypatch.undo()
    train(prepared_small, run, tiny_train_config(epochs=2), resume=True)
    assert _same_weights(run, straight_run)


def test_ctrl_c_during_the_selection_pass_ends_after_the_saved_epoch(prepared_small, straight_run, tmp_path,
                                                                      monkeypatch):
    real_select = loop_module.select

    def pressing(session, epoch):
        if epoch == 0:
            os.kill(os.getpid(), signal.SIGINT)
        return real_select(session, epoch)

    monkeypatch.setattr(loop_module, "select", pressing)
    run = tmp_path / "run"
    assert train(prepared_small, run, tiny_train_config(epochs=2)).interrupted
    assert _saved_state(run) == (1, 0, 4)
    monkeypatch.undo()
    train(prepared_small, run, tiny_train_config(epochs=2), resume=True)
    assert _same_weights(run, straight_run)


def test_the_loss_of_a_resumed_epoch_counts_the_whole_epoch(prepared_small, straight_run, tmp_path, monkeypatch):
    run = tmp_path / "run"
    _interrupt_at_loss_call(monkeypatch, call=6, presses=1)
    assert train(prepared_small, run, tiny_train_config(epochs=2)).interrupted
    assert _saved_state(run) == (1, 2, 6)
    monkeypatch.undo()
    train(prepared_small, run, tiny_train_config(epochs=2), resume=True)
    resumed, straight = pd.read_csv(RunFolder(run).metrics), pd.read_csv(RunFolder(straight_run).metrics)
    loss_columns = [c for c in straight.columns if c.startswith("train_loss")]
    assert len(loss_columns) == 4  # the total and one per task
    pd.testing.assert_frame_equal(resumed[loss_columns], straight[loss_columns], rtol=1e-5)


def _killed_midway_through_a_write(path: Path) -> None:
    """A process killed (SIGKILL: no cleanup) while an atomic write of `path` is half done."""
    code = ("import os, sys\nfrom artextract.core.atomic import atomic_open\n"
            "with atomic_open(sys.argv[1], 'wb') as handle:\n    handle.write(b'half'); handle.flush()\n"
            "    os.kill(os.getpid(), 9)\n")
    assert subprocess.run([sys.executable, "-c", code, str(path)]).returncode == -signal.SIGKILL


def test_writes_killed_midway_leave_no_temporary_file_after_the_next_run(prepared_small, make_synth, tmp_path):
    run = RunFolder(tmp_path / "run")
    train(prepared_small, run.root, tiny_train_config(epochs=1))
    _killed_midway_through_a_write(run.last)
    _killed_midway_through_a_write(run.metrics)
    assert len(list(run.root.glob("**/.*.tmp"))) == 2 and run.last.stat().st_size > 100  # last.pt is whole
    train(prepared_small, run.root, tiny_train_config(epochs=2), resume=True)
    assert not list(run.root.glob("**/.*.tmp"))

    from artextract.config import PrepareConfig
    from artextract.stages.prepare import prepare_dataset

    synth = make_synth(tmp_path / "synth", artists=3, per_artist=6, size=40)
    data = DataFolder(tmp_path / "data")
    prepare_dataset(synth / "csv", synth / "wikiart", data.root, PrepareConfig(cache_size=24, workers=1))
    _killed_midway_through_a_write(data.manifest)
    (status,) = data.cache.glob("status-*.npy")
    _killed_midway_through_a_write(status)
    prepare_dataset(synth / "csv", synth / "wikiart", data.root, PrepareConfig(cache_size=24, workers=1))
    assert not list(data.root.glob("**/.*.tmp"))

    # A frozen run's feature folder (DATA/features/<key>/, below the folders prepare cleans): its done-file save
    # killed midway is cleaned by the next run needing those maps (issue 21).
    frozen = tiny_train_config(epochs=1, freeze_backbone=True, batch_size=4, image_size=24)
    train(data.root, tmp_path / "frozen1", frozen)
    (done,) = data.root.glob("features/*/done.npy")
    _killed_midway_through_a_write(done)
    train(data.root, tmp_path / "frozen2", frozen)
    assert not list(data.root.glob("**/.*.tmp"))


def _children(pid: int) -> set[int]:
    try:
        return {int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}
    except OSError:
        return set()


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] not in ("Z", "X")
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_pool_workers_die_with_a_killed_prepare(make_synth, tmp_path):
    synth = make_synth(tmp_path / "synth", artists=6, per_artist=60, size=320, workers=2)
    command = [sys.executable, "-m", "artextract", "prepare", "--csv-dir", synth / "csv", "--images",
               synth / "wikiart", "--out", tmp_path / "data", "--workers", "2", "--cache-size", "256"]
    parent = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers: set[int] = set()
    deadline = time.monotonic() + 60
    while len(workers) < 2 and time.monotonic() < deadline and parent.poll() is None:
        workers = _children(parent.pid)
        time.sleep(0.05)
    assert len(workers) >= 2, "prepare finished before its pool started; make the dataset larger"
    time.sleep(0.5)  # let them get to work
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 10
    while any(_alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    alive = [w for w in workers if _alive(w)]
    for pid in alive:
        os.kill(pid, signal.SIGKILL)
    assert not alive, f"pool workers {alive} outlived their prepare"
