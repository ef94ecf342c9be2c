"""Training-step throughput (forward + backward + SGD step) of each reader against the `none` (global average
pooling) baseline with the same backbone, measured in the same run on synthetic tensors already on the device.

CPU (default when no GPU): small images and batch. GPU: 224 px, batch 256, bf16 autocast and channels_last, with
and without torch.compile (`--compile`).

Usage: python bench/bench_model.py [--device cuda] [--size 224] [--batch 256] [--steps 20] [--compile]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

from artextract.config import ModelConfig
from artextract.models import build_model
from artextract.stages.ablate import VARIANTS

CLASSES = {"artist": [str(i) for i in range(23)], "style": [str(i) for i in range(27)],
           "genre": [str(i) for i in range(10)]}
# The readers of `artextract ablate` (one table of variants); `gap` is the baseline the others are measured against.
READERS = {name: VARIANTS[name] for name in ("gap", "gru-rows", "gru-rows-last", "lstm-rows", "gru-snake", "gru-2d",
                                             "gru-rows-attention")}


def _throughput(overrides: dict, args: argparse.Namespace, device: torch.device, compile_: bool) -> float:
    torch.manual_seed(0)
    model = build_model(ModelConfig(backbone=args.backbone, hidden_size=256, **overrides), CLASSES).to(device)
    cuda = device.type == "cuda"
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    step_model = torch.compile(model) if compile_ else model
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    images = torch.randn(args.batch, 3, args.size, args.size, device=device)
    if cuda:
        images = images.contiguous(memory_format=torch.channels_last)
    labels = {t: torch.randint(0, len(c), (args.batch,), device=device) for t, c in CLASSES.items()}
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else contextlib.nullcontext()

    def step() -> None:
        with autocast:
            out = step_model(images)
            loss = sum(torch.nn.functional.cross_entropy(out["logits"][t], labels[t]) for t in labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(args.warmup):
        step()
    if cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    if cuda:
        torch.cuda.synchronize()
    return args.batch * args.steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    gpu = torch.cuda.is_available()
    parser.add_argument("--device", default="cuda" if gpu else "cpu")
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--size", type=int, default=224 if gpu else 64)
    parser.add_argument("--batch", type=int, default=256 if gpu else 32)
    parser.add_argument("--steps", type=int, default=30 if gpu else 5)
    parser.add_argument("--warmup", type=int, default=10 if gpu else 2)
    parser.add_argument("--compile", action="store_true", help="also measure with torch.compile")
    args = parser.parse_args()
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({os.cpu_count()} cores)"
    precision = "bf16 autocast + channels_last" if device.type == "cuda" else "fp32"
    print(f"{args.backbone}, {args.size} px, batch {args.batch}, {precision}, on {name}; torch {torch.__version__}")
    for compile_ in ([False, True] if args.compile else [False]):
        baseline = None
        for label, overrides in READERS.items():
            rate = _throughput(overrides, args, device, compile_)
            baseline = baseline or rate
            prefix = "compiled " if compile_ else ""
            print(f"  {prefix}{label:26s} {rate:9.1f} img/s  {rate / baseline:6.1%} of baseline")


if __name__ == "__main__":
    main()
