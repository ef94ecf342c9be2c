"""Training a reader from the frozen backbone's feature cache against training it through the frozen backbone,
measured in the same run with the same model, batches, loss and optimizer (the trainer's own `train_epoch`).

- through the backbone: uint8 batches from the image cache, the evaluation view, the frozen backbone's forward
  pass (no gradients into it), then the reader and heads: what every epoch costs without the feature cache;
- from the cache: the same rows as float16 feature maps from DATA/features/, straight into the reader;
- the one-off cost of computing the cache (timed when the cache is built in this run).

Defaults: the real sample's DATA folder if given (`--data`, e.g. from `configs/wikiart-real-cpu.yaml`'s prepare
step), else a generated one; EfficientNet-Lite0 (ImageNet weights when the pip package is installed) with the
recipe's reader (GRU over 128 reduced channels).

Usage: python bench/bench_frozen.py [--data DATA] [--steps 12] [--config configs/wikiart-real-cpu.yaml]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

from artextract.config_files import load_config
from artextract.engine.data import load_data_folder
from artextract.engine.loop import train_epoch
from artextract.engine.runtime import Runtime, make_fabric
from artextract.engine.sampler import make_loader
from artextract.engine.session import build_session
from artextract.layout import RunFolder

from generated import generated_data

RECIPE = Path(__file__).resolve().parents[1] / "configs" / "wikiart-real-cpu.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, help="a prepared DATA folder (default: generate 1,200 paintings)")
    parser.add_argument("--config", type=Path, default=RECIPE)
    parser.add_argument("--steps", type=int, default=12, help="steps timed through the backbone")
    args = parser.parse_args()
    config = load_config(args.config, ["train.freeze_backbone=true", "train.workers=0", "train.log_every=1000000"])
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data or generated_data(Path(tmp), config.train.image_size, per_artist=150)
        info = load_data_folder(data)
        train_cfg = config.train
        runtime = Runtime.resolve(train_cfg.accelerator, train_cfg.precision, train_cfg.channels_last)
        fabric = make_fabric(runtime, train_cfg.devices, train_cfg.num_nodes)
        started = time.perf_counter()
        session = build_session(fabric, runtime, info, RunFolder(Path(tmp) / "run"), config)
        setup_seconds = time.perf_counter() - started  # includes computing the feature cache if it was missing
        sync = torch.cuda.synchronize if fabric.device.type == "cuda" else (lambda: None)

        def time_epoch(frozen_from_cache: bool, steps: int) -> float:
            train_cfg.freeze_backbone = frozen_from_cache  # False: the same frozen weights, read from images
            session.sampler.set_epoch(1)
            split = session.split("train", 0)
            loader = make_loader(split, session.sampler, 0, pin=False)
            batches = [batch for _, batch in zip(range(steps), loader, strict=False)]
            train_epoch(session, batches[:1], 1)  # warm-up
            sync()
            start = time.perf_counter()
            train_epoch(session, batches, len(batches))
            sync()
            return len(batches) * train_cfg.batch_size / (time.perf_counter() - start)

        through = time_epoch(False, args.steps)
        cached = time_epoch(True, len(session.sampler))
    images = len(session.train_set)
    where = torch.cuda.get_device_name() if fabric.device.type == "cuda" else f"CPU ({os.cpu_count()} cores)"
    model = config.model
    print(f"{model.backbone} ({model.weights}) frozen + {model.reader} reader (hidden {model.hidden_size}, reduce "
          f"{model.reduce_channels}), {train_cfg.image_size} px, batch {train_cfg.batch_size}, {images} training "
          f"images, on {where}")
    print(f"  session set-up incl. any missing feature cache: {setup_seconds:8.1f} s")
    print(f"  through the frozen backbone: {through:9.1f} img/s  -> {images / through:7.1f} s per epoch")
    print(f"  from the feature cache     : {cached:9.1f} img/s  -> {images / cached:7.1f} s per epoch "
          f"({cached / through:.0f}x)")


if __name__ == "__main__":
    main()
