"""Does the label audit find wrong labels that a model trained on? The validation on a real collection.

For each mode (uniform 5 % and 10 %: a random other class that has training paintings; confusion 5 %: the class
the true one is most often mistaken for, learnt from a clean audit) and each seed, a share of the training labels
of every task is flipped before the out-of-fold training (`artextract audit`'s Python API with LabelNoise), and
every ranking is scored on finding the flips: AUROC, average precision, and precision and recall at the flagged
quota (Confident Learning's own estimate of the number of wrong labels). Figures are averaged over the seeds;
brackets are 95 % bootstrap intervals of that average (paintings resampled within each seed). The headline
(analysis/label_issues.py, HEADLINE) is compared with cleanlab's best score of the cell, paired on the same
resamples, with a two-sided bootstrap p-value, Holm-corrected over the cells. The clean audit also says where
the collection's own duplicate paintings with conflicting labels rank: a ground truth nobody injected.

    python bench/validate_label_audit.py DATA --out OUT [--config configs/wikiart-real-cpu.yaml] [--seeds 0,1,2]

Audits already in OUT are reused (their fold runs, when finished with the same settings and labels).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from datetime import date
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np

from artextract.analysis.detection import FIGURES, figure_draws, interval
from artextract.analysis.evaluation import stack
from artextract.analysis.label_issues import CLEANLAB_SCORES, HEADLINE, score_columns
from artextract.analysis.outliers import most_confused
from artextract.config_files import load_config
from artextract.engine.label_noise import LabelNoise
from artextract.stages.audit import audit

MODES = (("uniform", 0.05), ("uniform", 0.10), ("confusion", 0.05))


def _audit(data: Path, out: Path, config, folds: int, noise: LabelNoise | None):
    return audit(data, out, config, folds=folds, noise=noise)


def _confusions(clean) -> dict[str, list[int]]:
    """Per task, the class each class is most often predicted as in the clean out-of-fold predictions."""
    import pandas as pd

    oof = pd.read_parquet(clean.out / "oof.parquet")
    targets = {}
    for task in clean.tasks:
        logits = stack(oof[f"logits_{task}"])
        targets[task] = most_confused(oof[f"label_{task}"].to_numpy(), logits.argmax(axis=1), logits.shape[1]).tolist()
    return targets


def _cell(results: list, task: str) -> dict:
    """One (mode, task) cell: every ranking's figures averaged over the seeds, with intervals, and the headline
    against cleanlab's best by average precision, paired."""
    draws = {}
    for name, column in score_columns().items():
        per_seed = []
        for seed, result in enumerate(results):
            frame = result.tasks[task].frame
            scored = frame[frame["copy_of_group"] < 0]
            per_seed.append(figure_draws(scored["injected"].to_numpy(), scored[column].to_numpy(np.float64),
                                         result.tasks[task].quota, seed))
        draws[name] = {figure: np.nanmean([d[figure] for d in per_seed], axis=0) for figure in FIGURES}
        draws[name]["per_seed"] = [float(d["average_precision"][0]) for d in per_seed]
    figures = {name: {figure: {"value": float(d[figure][0]), "ci": interval(d[figure][1:])} for figure in FIGURES}
               | {"average_precision_per_seed": d["per_seed"]} for name, d in draws.items()}
    best = max((f"cleanlab {name}" for name in CLEANLAB_SCORES), key=lambda n: figures[n]["average_precision"]["value"])
    difference = draws[HEADLINE]["average_precision"] - draws[best]["average_precision"]
    tail = min(np.mean(difference[1:] <= 0), np.mean(difference[1:] >= 0))
    auroc_difference = draws[HEADLINE]["auroc"] - draws[best]["auroc"]
    return {"figures": figures, "versus": {"cleanlab_best": best, "ap_difference": float(difference[0]),
                                           "ap_difference_ci": interval(difference[1:]),
                                           "auroc_difference": float(auroc_difference[0]),
                                           "auroc_difference_ci": interval(auroc_difference[1:]),
                                           "p_value": float(min(1.0, 2 * tail + 1 / len(difference)))}}


def _holm(cells: dict) -> None:
    order = sorted(cells, key=lambda key: cells[key]["versus"]["p_value"])
    running = 0.0
    for rank, key in enumerate(order):
        adjusted = min(1.0, (len(order) - rank) * cells[key]["versus"]["p_value"])
        running = max(running, adjusted)
        cells[key]["versus"]["p_holm"] = running


def _markdown(report: dict) -> str:
    lines = [f"# Label audit validation ({report['machine']}, {report['date']})", "",
             f"DATA `{report['data']}`, {report['folds']} folds, seeds {report['seeds']}; headline `{HEADLINE}`. "
             "Figures averaged over the seeds, [95 % bootstrap interval of the average].", ""]
    for key, cell in report["cells"].items():
        lines += [f"## {key}", "", "| ranking | AUROC | average precision | precision at quota | recall at quota |",
                  "|---|---|---|---|---|"]
        for name, f in cell["figures"].items():
            row = [f"{f[k]['value']:.3f} [{f[k]['ci'][0]:.3f}, {f[k]['ci'][1]:.3f}]" for k in FIGURES]
            lines.append(f"| {name} | " + " | ".join(row) + " |")
        v = cell["versus"]
        lines += ["", f"{HEADLINE} vs {v['cleanlab_best']}: average precision {v['ap_difference']:+.3f} "
                  f"[{v['ap_difference_ci'][0]:+.3f}, {v['ap_difference_ci'][1]:+.3f}], AUROC "
                  f"{v['auroc_difference']:+.3f} [{v['auroc_difference_ci'][0]:+.3f}, "
                  f"{v['auroc_difference_ci'][1]:+.3f}]; p {v['p_value']:.2g}, Holm over {len(report['cells'])} "
                  f"cells {v['p_holm']:.2g}", ""]
    lines += ["## Duplicate paintings with conflicting labels (clean audit)", ""]
    for task, groups in report["conflicting_groups"].items():
        lines.append(f"- {task}: {groups['count']} groups, {groups['within_quota']} with a copy within the flagged "
                     f"{groups['quota']:,}; median best rank {groups['median_rank']}")
    lines += ["", f"Audit times (seconds, training and in all): {report['seconds']}", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--config", type=Path, default=Path("configs/wikiart-real-cpu.yaml"))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--folds", type=int, default=5)
    args = parser.parse_args()
    config = load_config(args.config)
    seeds = [int(s) for s in args.seeds.split(",")]
    started = time.perf_counter()
    clean = _audit(args.data, args.out / "clean", config, args.folds, None)
    seconds = {"clean": clean.record["seconds"]}
    targets = _confusions(clean)
    cells = {}
    for mode, fraction in MODES:
        results = []
        for seed in seeds:
            noise = LabelNoise(fraction, mode, seed, targets if mode == "confusion" else None)
            result = _audit(args.data, args.out / f"{mode}-{fraction:g}-s{seed}", config, args.folds, noise)
            results.append(result)
            seconds[f"{mode}-{fraction:g}-s{seed}"] = result.record["seconds"]
        for task in clean.tasks:
            cells[f"{mode} {fraction:.0%}, {task}"] = _cell(results, task)
    _holm(cells)
    groups = {}
    for task, figures in clean.record["per_task"].items():  # as the audit recorded them
        conflicting = figures["conflicting_duplicate_groups"]
        ranks = list(conflicting["best_rank"].values())
        groups[task] = {"count": conflicting["count"], "within_quota": conflicting["within_quota"],
                        "quota": figures["flagged"], "median_rank": float(np.median(ranks)) if ranks else None,
                        "ranks": conflicting["best_rank"]}
    report = {"data": str(args.data), "folds": args.folds, "seeds": seeds, "date": str(date.today()),
              "machine": f"{platform.machine()}, {os.cpu_count()} cores", "cells": cells,
              "conflicting_groups": groups, "seconds": seconds, "wall_seconds": time.perf_counter() - started}
    (args.out / "validation.json").write_text(json.dumps(report, indent=1))
    (args.out / "validation.md").write_text(_markdown(report))
    print(_markdown(report))


if __name__ == "__main__":
    main()
