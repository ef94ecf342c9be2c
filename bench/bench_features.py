"""Feature building against the backbone's own forward throughput, measured in the same run.

- reference: the frozen part of the backbone over uint8 batches already in memory (the evaluation view, no
  gradients), at the batch size and precision the build uses;
- feature building: `build_features` into an empty feature folder (cache reads, the same forward, float16
  writes, the done-file saves), over the same number of images;
- evaluate's pass: `run_model` over those images through the backbone, and from the cached maps (what
  `evaluate` of a frozen-backbone run now does);
- optionally (`--bf16`) the backbone under CPU bf16 autocast, the oneDNN/AMX path.

Target (issue 24): feature building and evaluate's forward pass >= 85 % of the reference.

Usage: python bench/bench_features.py --data DATA [--images 1024] [--config configs/wikiart-real-cpu.yaml]
       [--set model.tuned_stages=1] [--bf16]
DATA defaults to a generated folder of 512 paintings at 224 px.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pandas as pd
import torch

from artextract.config_files import load_config
from artextract.data.cache_files import open_cache
from artextract.engine.data import load_data_folder
from artextract.engine.features import backbone_batch_size, build_features
from artextract.engine.inference import forward_batches, run_model
from artextract.engine.preprocessing import Preprocessing
from artextract.engine.runtime import Runtime
from artextract.models import build_model

from generated import generated_data

RECIPE = Path(__file__).resolve().parents[1] / "configs" / "wikiart-real-cpu.yaml"


def _subset(data: Path, tmp: Path, images: int) -> Path:
    """A DATA folder sharing `data`'s image cache, with only its first `images` usable rows, and no features."""
    view = tmp / "data"
    view.mkdir()
    for name in ("classes.json", "cache"):
        (view / name).symlink_to((data / name).resolve())
    manifest = pd.read_parquet(data / "manifest.parquet")
    ok = np.flatnonzero(manifest["status"].to_numpy() == "ok")
    manifest.loc[manifest.index[ok[images:]], "status"] = "skipped"
    manifest.to_parquet(view / "manifest.parquet", index=False)
    return view


def _rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, help="a prepared DATA folder (default: generate 512 paintings)")
    parser.add_argument("--config", type=Path, default=RECIPE)
    parser.add_argument("--set", action="append", default=[], help="config overrides, as in artextract train")
    parser.add_argument("--images", type=int, default=1024)
    parser.add_argument("--bf16", action="store_true", help="also time the backbone under CPU bf16 autocast")
    args = parser.parse_args()
    config = load_config(args.config, args.set)
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data or generated_data(Path(tmp) / "generated", config.train.image_size, per_artist=64)
        view = _subset(data, Path(tmp), args.images)
        info = load_data_folder(view)
        runtime = Runtime.resolve(config.train.accelerator, config.train.precision, config.train.channels_last)
        model = runtime.place(build_model(config.model, info.classes)).eval()
        backbone = model.backbone
        preprocessing = Preprocessing(info.cache_size, config.train.image_size, backbone.mean, backbone.std)
        rows = info.manifest.loc[info.manifest["status"] == "ok", "cache_index"].to_numpy(np.int64)
        batch = backbone_batch_size(config.train.batch_size, runtime.device)
        cache = open_cache(info.folder.cache)
        in_memory = [torch.from_numpy(np.ascontiguousarray(cache[rows[i: i + batch]]))
                     for i in range(0, len(rows), batch)]

        def reference(precision: Runtime) -> float:
            list(forward_batches(backbone.frozen_part(), in_memory[:1], preprocessing, precision))  # warm-up
            started = time.perf_counter()
            for _ in forward_batches(backbone.frozen_part(), in_memory, preprocessing, precision):
                pass
            return _rate(len(rows), time.perf_counter() - started)

        forward_rate = reference(runtime)
        started = time.perf_counter()
        features = build_features(info, backbone, config.model.backbone, preprocessing, runtime, runtime.device,
                                  config.train.batch_size)
        build_rate = _rate(len(rows), time.perf_counter() - started)
        size_mb = (features.folder / "features.f16").stat().st_size / 1e6  # sized for every cache row
        evaluate_batch = 256  # evaluate's default --batch-size; its pass through the backbone caps it on a CPU
        through_batch = backbone_batch_size(evaluate_batch, runtime.device)
        through = (torch.from_numpy(np.ascontiguousarray(cache[rows[i: i + through_batch]]))
                   for i in range(0, len(rows), through_batch))
        started = time.perf_counter()
        run_model(model, through, len(rows), preprocessing, runtime, progress=False)
        evaluate_images = _rate(len(rows), time.perf_counter() - started)
        maps = (torch.from_numpy(np.ascontiguousarray(features.maps[rows[i: i + evaluate_batch]]))
                for i in range(0, len(rows), evaluate_batch))
        started = time.perf_counter()
        run_model(model, maps, len(rows), preprocessing, runtime, progress=False, from_features=True)
        evaluate_maps = _rate(len(rows), time.perf_counter() - started)
        bf16 = reference(Runtime(runtime.accelerator, "bf16-mixed", runtime.channels_last)) if args.bf16 else None
        shutil.rmtree(features.folder)
    where = torch.cuda.get_device_name() if runtime.device.type == "cuda" else f"CPU ({os.cpu_count()} cores)"
    m = config.model
    print(f"{m.backbone} ({m.weights}), tuned stages {m.tuned_stages}, {config.train.image_size} px, "
          f"{len(rows)} images, batch {batch}, {runtime.precision}, channels_last {runtime.channels_last}, "
          f"{torch.get_num_threads()} threads, on {where}")
    print(f"  reference: the backbone's forward    {forward_rate:8.1f} img/s")
    print(f"  feature building                     {build_rate:8.1f} img/s  ({build_rate / forward_rate:5.0%} of "
          f"the reference; target >= 85 %); maps {size_mb:,.0f} MB for all {len(info.manifest):,} cache rows")
    print(f"  evaluate through the backbone        {evaluate_images:8.1f} img/s  "
          f"({evaluate_images / forward_rate:5.0%}; --batch-size {evaluate_batch}, run at {through_batch})")
    print(f"  evaluate from the cached maps        {evaluate_maps:8.1f} img/s  "
          f"({evaluate_maps / forward_rate:5.0%}; what evaluate of a frozen run does)")
    if bf16 is not None:
        print(f"  the backbone under bf16 autocast     {bf16:8.1f} img/s  ({bf16 / forward_rate:5.0%})")


if __name__ == "__main__":
    main()
