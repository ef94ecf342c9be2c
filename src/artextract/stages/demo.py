"""`artextract demo`: the whole pipeline on generated paintings, on a CPU, in a couple of minutes.

synth -> prepare -> train -> evaluate, each through the same library calls as its own command, into one folder:
OUT/synth (dataset), OUT/data (manifest, cache), OUT/run (model), OUT/run/eval (report).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from artextract.config import Config, ModelConfig, PrepareConfig, SynthConfig, TrainConfig
from artextract.config_files import write_config
from artextract.core.progress import log
from artextract.layout import CONFIG, ENVIRONMENT

NOISE = 0.05  # share of labels flipped to show that the outlier scores find them


def smoke_config() -> Config:
    """The demo's settings; `configs/cpu-smoke.yaml` holds the same model and train sections."""
    return Config(
        synth=SynthConfig(artists=8, per_artist=30, size=160, quirks=True),
        # 128 px crops leave ResNet18 a 4 x 4 grid, 16 positions for the recurrent reader (64 px left 2 x 2);
        # the 144 px cache gives the crops room, as 256 does for 224.
        prepare=PrepareConfig(cache_size=144),
        model=ModelConfig(backbone="resnet18", weights="none", reader="gru", scan="rows", hidden_size=128,
                          bidirectional=True, pooling="mean"),
        train=TrainConfig(epochs=15, batch_size=32, image_size=128, lr=0.003, warmup_epochs=1, patience=0,
                          accelerator="cpu", workers=0),
    )


@dataclass
class DemoResult:
    report: Path
    headline: str


def run_demo(out: Path, config: Config | None = None) -> DemoResult:
    from artextract.core.environment import write_environment
    from artextract.data.prepare_report import summary_lines
    from artextract.data.synth import generate_dataset
    from artextract.report.terminal import metrics_table
    from artextract.stages.evaluate import evaluate_run
    from artextract.stages.prepare import prepare_dataset
    from artextract.stages.train import train

    config = config or smoke_config()
    write_config(config, out / CONFIG)
    write_environment(Path(out) / ENVIRONMENT)
    log.info("demo 1/4: generating %d paintings", config.synth.artists * config.synth.per_artist)
    generate_dataset(out / "synth", config.synth)
    log.info("demo 2/4: prepare (manifest, leak-free splits, cache)")
    prepared = prepare_dataset(out / "synth" / "csv", out / "synth" / "wikiart", out / "data", config.prepare)
    for line in summary_lines(prepared.report):
        log.info("  %s", line)
    log.info("demo 3/4: training %s + %s reader for %d epochs", config.model.backbone, config.model.reader,
             config.train.epochs)
    train(out / "data", out / "run", config, force=True)
    log.info("demo 4/4: evaluate, with %.0f%% of labels flipped to validate the outlier scores", NOISE * 100)
    result, report = evaluate_run(out / "run", data=out / "data", inject=NOISE, batch_size=64, device="cpu",
                                  force=True)
    return DemoResult(report, metrics_table(result.metrics))
