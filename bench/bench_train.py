"""End-to-end training throughput from the prepare cache against compute-only, measured in the same run.

- compute-only: the trainer's own `train_epoch` fed one uint8 batch that already sits on the device (the same
  model, batch, augmentation, loss and optimizer; no data loading), i.e. the compute limit;
- end-to-end: the same `train_epoch` fed by the real DataLoader over the memory-mapped cache;
- the wall time of one epoch over `--images` synth images (13,346 = the real artist training split).

GPU defaults (ResNet18 + BiGRU(256), 224 px crops from a 256 px cache, batch 256, bf16 + channels_last). On a CPU
the defaults are scaled down so that the run takes a minute or two.

Usage: python bench/bench_train.py [--images 13346] [--batch 256] [--workers 8] [--compile]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

from artextract.config import Config, ModelConfig, PrepareConfig, SynthConfig, TrainConfig
from artextract.data.synth import generate_dataset
from artextract.engine.data import load_data_folder
from artextract.engine.loop import train_epoch
from artextract.engine.runtime import Runtime, make_fabric
from artextract.engine.sampler import make_loader
from artextract.engine.session import build_session
from artextract.layout import RunFolder
from artextract.stages.prepare import prepare_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    gpu = torch.cuda.is_available()
    parser.add_argument("--images", type=int, default=13_346 if gpu else 1_200)
    parser.add_argument("--cache-size", type=int, default=256 if gpu else 72)
    parser.add_argument("--image-size", type=int, default=224 if gpu else 64)
    parser.add_argument("--batch", type=int, default=256 if gpu else 32)
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1) if gpu else 1)
    parser.add_argument("--steps", type=int, default=40 if gpu else 10, help="compute-only steps to time")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--data", type=Path, help="reuse a prepared DATA folder instead of generating one")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        data = args.data
        if data is None:
            root = Path(tmp)
            artists = 23
            start = time.perf_counter()
            generate_dataset(root / "synth", SynthConfig(artists=artists, per_artist=-(-args.images // artists),
                                                         size=args.cache_size, val_fraction=0.01))
            prepare_dataset(root / "synth" / "csv", root / "synth" / "wikiart", root / "data",
                            PrepareConfig(image_size=args.cache_size, select_fraction=0.0))
            print(f"synth + prepare of {args.images} images: {time.perf_counter() - start:.1f} s")
            data = root / "data"
        config = Config(model=ModelConfig(backbone="resnet18", hidden_size=256),
                        train=TrainConfig(epochs=1, batch_size=args.batch, image_size=args.image_size,
                                          workers=args.workers, compile=args.compile, log_every=10**9))
        info = load_data_folder(data)
        runtime = Runtime.resolve(config.train.accelerator, config.train.precision, config.train.channels_last)
        fabric = make_fabric(runtime, config.train.devices, config.train.num_nodes)
        session = build_session(fabric, runtime, info, RunFolder(Path(tmp) / "run"), config)
        device = fabric.device

        # Compute-only: one batch already on the device, fed again and again.
        images, labels, rows = session.train_set[torch.arange(args.batch).numpy()]
        on_device = (images.to(device), labels.to(device), rows)
        train_epoch(session, [on_device] * 5, 5)  # warm-up (cuDNN autotune, compilation)
        sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
        sync()
        start = time.perf_counter()
        train_epoch(session, [on_device] * args.steps, args.steps)
        sync()
        compute = args.steps * args.batch / (time.perf_counter() - start)

        # End-to-end: the real loader over the cache, one whole epoch.
        loader = make_loader(session.train_set, session.sampler, args.workers, pin=device.type == "cuda")
        session.sampler.set_epoch(1)
        steps = len(session.sampler)
        start = time.perf_counter()
        train_epoch(session, loader, steps)
        sync()
        epoch_seconds = time.perf_counter() - start
        end_to_end = steps * args.batch / epoch_seconds

    cuda = device.type == "cuda"
    where = torch.cuda.get_device_name() if cuda else f"CPU ({os.cpu_count()} cores)"
    print(f"ResNet18 + BiGRU(256), {args.image_size} px crops of a {info.cache_size} px cache, batch {args.batch}, "
          f"{'bf16 + channels_last' if cuda else 'fp32'}, compile={args.compile}, {args.workers} workers, on {where}")
    print(f"  compute-only : {compute:9.1f} img/s")
    print(f"  end-to-end   : {end_to_end:9.1f} img/s  ({end_to_end / compute:.0%} of compute-only; target 85%)")
    print(f"  one epoch    : {epoch_seconds:9.1f} s for {steps * args.batch} images ({len(session.train_set)} in "
          f"the training split)")


if __name__ == "__main__":
    main()
