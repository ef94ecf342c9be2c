"""Training from cached maps on a shared CPU: alone, and beside one competing CPU-bound process, in one run.

The recipe's reader (a BiGRU over a 7 x 7 map of 1280 channels reduced to 128, three heads) trains on random
float16 maps shaped like Lite0's, with the trainer's own step (AdamW, clipping). Each torch thread setting is
timed alone and while another process spins on one core (a plain Python loop, like a browser tab or a second
job). Every op of the recurrent reader is small; torch's intra-op threads meet at a barrier after each, so one
descheduled thread stalls the other for a time slice.

Target (issue 24): at least half the solo throughput with one competing process.

`--tuned-stages 1`: the partial fine-tuning recipe's step instead (Lite0's last stage and head convolution train
from the 192 x 7 x 7 maps entering them, then the reader).

Usage: python bench/bench_contention.py [--steps 30] [--batch 64] [--threads 1,2] [--tuned-stages 1]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import time

import torch

from artextract.config import ModelConfig
from artextract.engine.loss import masked_multitask_loss
from artextract.engine.runtime import cpu_threads_for
from artextract.models import build_model

CLASSES = {"artist": [f"a{i}" for i in range(23)], "style": [f"s{i}" for i in range(27)],
           "genre": [f"g{i}" for i in range(10)]}


def _spin(stop: multiprocessing.synchronize.Event) -> None:
    while not stop.is_set():
        sum(range(10_000))


def _steps_per_s(threads: int, steps: int, batch: int, tuned_stages: int) -> float:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    config = ModelConfig(backbone="tf_efficientnet_lite0", weights="none", reader="gru", scan="snake",
                         hidden_size=128, reduce_channels=128, dropout=0.2, tuned_stages=tuned_stages)
    model = build_model(config, CLASSES).train()
    model.backbone.set_frozen(True)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad])
    with torch.no_grad():
        shape = model.backbone.eval().frozen_part()(torch.zeros(1, 3, 224, 224)).shape[1:]
    model.train()
    maps = torch.randn(batch, *shape).half()
    labels = torch.stack([torch.randint(0, len(names), (batch,)) for names in CLASSES.values()], dim=1)

    def step() -> None:
        logits = model(maps.float(), from_features=True)["logits"]
        loss, _ = masked_multitask_loss(logits, labels, list(CLASSES), None, 0.0)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()

    for _ in range(3):
        step()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    return steps / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", default="1,2", help="torch thread counts to time")
    parser.add_argument("--tuned-stages", type=int, default=0)
    args = parser.parse_args()
    settings = [int(t) for t in args.threads.split(",")]
    chosen = cpu_threads_for(from_features=True)
    what = f"last {args.tuned_stages} stage(s) + reader" if args.tuned_stages else "reader"
    print(f"{what} training step from cached Lite0 maps, batch {args.batch}, {os.cpu_count()} cores; "
          f"ArtExtract's choice on this quiet CPU: {chosen} thread(s)")
    solo = {}
    for threads in settings:
        solo[threads] = _steps_per_s(threads, args.steps, args.batch, args.tuned_stages) * args.batch
        print(f"  {threads} thread(s), alone           : {solo[threads]:8.1f} img/s", flush=True)
    for threads in settings:
        stop = multiprocessing.Event()
        spinner = multiprocessing.Process(target=_spin, args=(stop,), daemon=True)
        spinner.start()
        try:
            if threads == settings[0]:
                print(f"  ArtExtract's choice beside the busy process: {cpu_threads_for(from_features=True)} "
                      "thread(s)", flush=True)
            shared = _steps_per_s(threads, args.steps, args.batch, args.tuned_stages) * args.batch
        finally:
            stop.set()
            spinner.join()
        best_solo = max(solo.values())
        print(f"  {threads} thread(s), one busy process: {shared:8.1f} img/s  ({shared / solo[threads]:5.0%} of its "
              f"solo figure, {shared / best_solo:5.0%} of the best solo; target >= 50 %)", flush=True)


if __name__ == "__main__":
    main()
