"""Prediction throughput for a folder of JPEGs against the model's inference compute limit, in the same run.

- compute limit: the model's forward pass (bf16 + channels_last on GPU) on one decoded batch already on the
  device, repeated;
- end to end: `Predictor.iter_predict` over the folder (read, decode with draft mode, forward, top-k).

Usage: python bench/bench_predict.py [--images 512] [--original-size 800] [--workers N]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch

from artextract.config import ModelConfig, SynthConfig
from artextract.data.synth import generate_dataset
from artextract.engine.checkpoint import save_model_file
from artextract.engine.preprocessing import Preprocessing
from artextract.models import build_model
from artextract.predictor import expand_inputs, load_model

CLASSES = {"artist": [f"a{i}" for i in range(23)], "style": [f"s{i}" for i in range(27)],
           "genre": [f"g{i}" for i in range(10)]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    gpu = torch.cuda.is_available()
    parser.add_argument("--images", type=int, default=2048 if gpu else 192)
    parser.add_argument("--original-size", type=int, default=800 if gpu else 400)
    parser.add_argument("--batch", type=int, default=256 if gpu else 32)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--cache-size", type=int, default=256 if gpu else 128)
    parser.add_argument("--image-size", type=int, default=224 if gpu else 112)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        generate_dataset(root / "synth", SynthConfig(artists=16, per_artist=-(-args.images // 16),
                                                     size=args.original_size))
        model = build_model(ModelConfig(), CLASSES)
        preprocessing = Preprocessing(args.cache_size, args.image_size, model.backbone.mean, model.backbone.std)
        save_model_file(root / "model.safetensors", model, CLASSES, ModelConfig(), preprocessing)
        predictor = load_model(root / "model.safetensors")
        files = expand_inputs([root / "synth" / "wikiart"])

        squares = np.stack([r[1] for r in predictor.iter_predict(files[: args.batch], batch_size=args.batch)])
        for _ in range(3):
            predictor.logits(squares)  # warm-up
        sync = torch.cuda.synchronize if predictor.runtime.device.type == "cuda" else (lambda: None)
        repeats = 20 if gpu else 3
        sync()
        start = time.perf_counter()
        for _ in range(repeats):
            predictor.logits(squares)
        sync()
        compute = repeats * len(squares) / (time.perf_counter() - start)

        start = time.perf_counter()
        done = sum(1 for r, _ in predictor.iter_predict(files, batch_size=args.batch, workers=args.workers)
                   if r.status == "ok")
        end_to_end = done / (time.perf_counter() - start)
        mean_kb = np.mean([Path(f).stat().st_size for f in files]) / 1e3
    where = torch.cuda.get_device_name() if gpu else f"CPU ({os.cpu_count()} cores)"
    print(f"ResNet18 + BiGRU(256), {args.image_size} px input, batch {args.batch}, {args.workers} decoding workers, "
          f"on {where}; {len(files)} JPEGs, short side {args.original_size} px, {mean_kb:.0f} kB each")
    print(f"  inference compute limit : {compute:9.1f} img/s")
    print(f"  predict a folder        : {end_to_end:9.1f} img/s  ({end_to_end / compute:.0%} of the compute limit)")


if __name__ == "__main__":
    main()
