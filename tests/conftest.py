"""Shared fixtures: generated ArtGAN-shaped datasets and an in-process command-line runner."""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# One intra-op thread per test process (and the processes it starts): on 2 shared cores, oversubscribed threads
# slowed the suite from 5 to 13 minutes. Training code that picks its own count (train.cpu_threads) still does.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch

from artextract.cli import main
from artextract.config import SynthConfig
from artextract.data.synth import generate_dataset

# The shared data (the ArtGAN CSVs in artgan-wikiart/, the real sample in wikiart-real/): ../shared/data beside the
# checkout, or wherever ARTEXTRACT_DATA points.
DATA_ROOT = Path(os.environ.get("ARTEXTRACT_DATA") or Path(__file__).resolve().parents[1].parent / "shared" / "data")
SHARED_DATA = DATA_ROOT / "artgan-wikiart"
DATA_HINT = "set ARTEXTRACT_DATA to the folder holding artgan-wikiart/ and wikiart-real/"
# Every non-ASCII sequence in the real ArtGAN CSVs, and what it stands for (a table made by hand, so that the
# mojibake repair is checked against something other than itself).
REAL_MOJIBAKE = {"ã\xad": "í", "ã¶": "ö", "ã©": "é", "ã¨": "è", "ã¼": "ü", "ã³": "ó", "â\xa0": "\xa0"}


torch.set_num_threads(1)


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch):
    """Run `artextract ARGS...` in this process, as the console script would."""

    def run(*args: str | os.PathLike[str]) -> CliResult:
        monkeypatch.setattr(sys, "argv", ["artextract", *map(str, args)])
        code = 0
        try:
            main()
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


def _make_synth(root: Path, **overrides: object) -> Path:
    config = SynthConfig(**{"artists": 5, "per_artist": 12, "size": 48, "workers": 1, **overrides})
    generate_dataset(root, config)
    return root


@pytest.fixture(scope="session")
def make_synth():
    """`make_synth(root, **synth_config_overrides)` generates a small dataset under root and returns root."""
    return _make_synth


@pytest.fixture(scope="session")
def synth_quirky(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small generated dataset with every quirk injected (shared, read-only)."""
    return _make_synth(tmp_path_factory.mktemp("synth_quirky"), quirks=True, per_artist=14)


@pytest.fixture(scope="session")
def prepared_small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A prepared DATA folder (32 px cache) of a small learnable synth dataset, for training tests."""
    from artextract.config import PrepareConfig
    from artextract.stages.prepare import prepare_dataset

    root = _make_synth(tmp_path_factory.mktemp("synth_small"), artists=4, per_artist=30, size=40)
    out = tmp_path_factory.mktemp("data_small")
    prepare_dataset(root / "csv", root / "wikiart", out, PrepareConfig(cache_size=32, workers=1))
    return out


def tiny_train_config(**train_overrides: object):
    """A config that trains the tiny test backbone on the CPU in seconds."""
    from artextract.config import Config, ModelConfig, TrainConfig

    # One torch thread, whatever else runs: the same arithmetic in every run (resume tests compare bits).
    train = {"epochs": 2, "batch_size": 16, "image_size": 32, "lr": 3e-3, "workers": 0, "accelerator": "cpu",
             "patience": 0, "log_every": 2, "cpu_threads": 1, **train_overrides}
    return Config(model=ModelConfig(backbone="test_resnet", hidden_size=16, output_stride=8),
                  train=TrainConfig(**train))


@pytest.fixture(scope="session")
def evaluated_run(prepared_small: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small trained run (attention reader) on `prepared_small`, evaluated with 10 % injected label noise;
    returns RUN (its evaluation is in RUN/eval)."""
    from typer.testing import CliRunner

    from artextract.cli import app
    from artextract.stages.train import train

    run = tmp_path_factory.mktemp("eval_run") / "run"
    config = tiny_train_config(epochs=10)
    config.model.pooling = "attention"
    train(prepared_small, run, config)
    result = CliRunner().invoke(app, ["evaluate", "--run", str(run), "--inject-noise", "0.1", "--batch-size", "32"])
    assert result.exit_code == 0, result.output
    return run


def audit_config():
    """The tiny backbone, frozen, read by pooling: a label audit's fold runs in a second or two each."""
    config = tiny_train_config(epochs=6, freeze_backbone=True, lr=1e-2)
    config.model.reader = "none"
    return config


@pytest.fixture(scope="session")
def audited_small(prepared_small: Path, tmp_path_factory: pytest.TempPathFactory):
    """A label audit (3 folds) of `prepared_small` with 10 % of its training labels flipped on purpose."""
    from artextract.engine.label_noise import LabelNoise
    from artextract.stages.audit import audit

    out = tmp_path_factory.mktemp("audit") / "audit"
    return audit(prepared_small, out, audit_config(), folds=3, noise=LabelNoise(0.1, "uniform", seed=1))


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium through Playwright (the `browser` tier): the system's chromium, no download."""
    playwright = pytest.importorskip("playwright.sync_api")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no chromium on PATH (CI installs it with apt-get)")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        yield browser
        browser.close()
