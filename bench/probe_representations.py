"""Would more frozen features help the recipe? A quick paired probe over the cached features of a DATA folder.

Not the project's model family (`artextract ablate` is): the recipe's head alone (dropout 0.2 and one linear head
per task on the features, AdamW lr 1e-3, weight decay 0.05, one-cycle schedule, 10 epochs, batch 64, seed 0)
trained on feature sets that the family does not offer, with `ablate --folds 5`'s folds, so that every training
painting is scored once and every variant is paired with the recipe's own features on the same paintings:

- recipe: Lite0's stage statistics (the representation of configs/wikiart-real-cpu.yaml);
- regions2 / regions3: those plus the last map's means over a 2 x 2 / 3 x 3 grid (where things are: composition);
- lite01 / lite012: the stage statistics of Lite0 and Lite1 (and Lite2) concatenated (a backbone ensemble).

It reads the caches that `ablate` builds (`--variants pyramid-gap,gap,lite1,lite2`); a variant whose cache is
missing is skipped with the reason. Usage:
    python bench/probe_representations.py DATA [--variants recipe,regions2,regions3,lite01,lite012] [--folds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from artextract.analysis.compare import mcnemar_exact, paired_difference
from artextract.engine.folds import fold_of_rows

TASKS = ("artist", "style", "genre")
PYRAMID = "tf_efficientnet_{}-224px-pyramid-*"
LAST_MAP = "tf_efficientnet_lite0-224px-????????????????"  # the last map at stride 32: no tag in the name


def _open(data: Path, pattern: str, hint: str) -> np.ndarray:
    found = sorted((data / "features").glob(pattern))
    if not found:
        raise FileNotFoundError(f"no feature cache {pattern} in {data}/features (build it with {hint})")
    layout = json.loads((found[-1] / "layout.json").read_text())
    return np.memmap(found[-1] / "features.f16", np.float16, "r", shape=(layout["count"], *layout["shape"]))


def _regions(data: Path, rows: np.ndarray, grid: int) -> np.ndarray:
    """The last map's channel means over a grid x grid layout, read in chunks (1.7 GB for 13,493 paintings)."""
    source = _open(data, LAST_MAP, "artextract ablate --variants gap")
    chunks = [torch.nn.functional.adaptive_avg_pool2d(torch.from_numpy(source[rows[i: i + 512]].astype(np.float32)),
                                                      grid).flatten(1).numpy() for i in range(0, len(rows), 512)]
    return np.concatenate(chunks)


def _features(name: str, data: Path, rows: np.ndarray) -> np.ndarray:
    def pyramid(backbone: str) -> np.ndarray:
        variant = "pyramid-gap" if backbone == "lite0" else backbone
        maps = _open(data, PYRAMID.format(backbone), f"artextract ablate --variants {variant}")
        return maps[rows].reshape(len(rows), -1).astype(np.float32)

    parts = {"recipe": lambda: [pyramid("lite0")],
             "regions2": lambda: [pyramid("lite0"), _regions(data, rows, 2)],
             "regions3": lambda: [pyramid("lite0"), _regions(data, rows, 3)],
             "lite01": lambda: [pyramid("lite0"), pyramid("lite1")],
             "lite012": lambda: [pyramid("lite0"), pyramid("lite1"), pyramid("lite2")]}[name]()
    return np.hstack(parts)


def _out_of_fold(features: np.ndarray, labels: np.ndarray, fold: np.ndarray, classes: list[int]) -> np.ndarray:
    """Each painting's predicted class per task, from the run that did not train on its fold."""
    predicted = np.full(labels.shape, -1)
    for held_out in range(fold.max() + 1):
        train, test = np.flatnonzero(fold != held_out), np.flatnonzero(fold == held_out)
        torch.manual_seed(0)
        x, y = torch.from_numpy(features[train]), torch.from_numpy(labels[train])
        heads = torch.nn.ModuleList(torch.nn.Linear(features.shape[1], n) for n in classes)
        dropout = torch.nn.Dropout(0.2)
        optimiser = torch.optim.AdamW(heads.parameters(), 1e-3, weight_decay=0.05)
        steps = 10 * -(-len(train) // 64)
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, 1e-3, total_steps=steps, pct_start=0.1)
        order = torch.Generator().manual_seed(0)
        for _ in range(10):
            for batch in torch.randperm(len(train), generator=order).split(64):
                seen, loss = dropout(x[batch]), torch.zeros(())
                for k, head in enumerate(heads):
                    known = y[batch, k] >= 0  # a painting without this task's label adds nothing to its loss
                    if known.any():
                        loss = loss + torch.nn.functional.cross_entropy(head(seen[known]), y[batch, k][known])
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                schedule.step()
        with torch.no_grad():
            test_x = torch.from_numpy(features[test])
            for k, head in enumerate(heads):
                predicted[test, k] = head(test_x).argmax(1).numpy()
    return predicted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", type=Path)
    parser.add_argument("--variants", default="recipe,regions2,regions3,lite01,lite012")
    parser.add_argument("--folds", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(len(os.sched_getaffinity(0)))

    manifest = pd.read_parquet(args.data / "manifest.parquet")
    classes = json.loads((args.data / "classes.json").read_text())
    fold_all = fold_of_rows(manifest, args.folds)
    pooled = manifest[fold_all >= 0].sort_values("cache_index")  # cache order: contiguous reads
    fold = fold_all[pooled.index.to_numpy()]
    rows = pooled["cache_index"].to_numpy()
    labels = np.stack([pooled[f"label_{t}"].to_numpy(np.int64) for t in TASKS], axis=1)
    print(f"{len(rows)} paintings, {args.folds} folds; paired against 'recipe' (points, [95 % CI], McNemar p)")
    correct_recipe = None
    for name in ["recipe", *[v for v in args.variants.split(",") if v != "recipe"]]:
        started = time.perf_counter()
        try:
            features = _features(name, args.data, rows)
        except FileNotFoundError as err:
            print(f"{name}: skipped, {err}", file=sys.stderr)
            continue
        predicted = _out_of_fold(features, labels, fold, [len(classes[t]) for t in TASKS])
        cells = []
        for k, task in enumerate(TASKS):
            known = labels[:, k] >= 0
            correct = predicted[known, k] == labels[known, k]
            cell = f"{task} {correct.mean():.3f}"
            if correct_recipe is not None:
                base = correct_recipe[k]
                diff = paired_difference(base, correct)
                low, high = (100 * v for v in diff["interval_95"])
                cell += (f" ({100 * diff['difference']:+.1f} [{low:+.1f}, {high:+.1f}], "
                         f"p {mcnemar_exact(base, correct)['p_value']:.2g})")
            cells.append(cell)
        if correct_recipe is None:
            correct_recipe = [predicted[labels[:, k] >= 0, k] == labels[labels[:, k] >= 0, k]
                              for k in range(len(TASKS))]
        print(f"{name:9s} {features.shape[1]:6d} features | " + "; ".join(cells) +
              f" | {time.perf_counter() - started:.0f} s", flush=True)


if __name__ == "__main__":
    main()
