"""`artextract compare RUN_OR_EVAL ...`: one table across evaluated runs, and for every pair scored on the same
images a paired test of the accuracy difference (bootstrap interval and McNemar's exact test), per task.

Reads only what `evaluate` wrote (predictions.parquet, metrics.json) and the runs' config.yaml: no model, no GPU.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from artextract.analysis.compare import mcnemar_exact, paired_difference
from artextract.core.records import read_record
from artextract.errors import ArtExtractError
from artextract.layout import EvalFolder, RunFolder
from artextract.stages.evaluate import REWRITE_HINT, read_predictions


@dataclass
class Evaluation:
    name: str
    folder: EvalFolder
    description: str
    metrics: dict[str, Any]
    predictions: pd.DataFrame  # the evaluated split's rows


def load_evaluation(path: Path) -> Evaluation:
    """An EVAL folder, or a RUN folder holding one in RUN/eval."""
    folder = EvalFolder(path)
    if not folder.predictions.is_file() and RunFolder(path).default_eval.is_dir():
        folder = EvalFolder(RunFolder(path).default_eval)
    if not folder.predictions.is_file() or not folder.metrics.is_file():
        raise ArtExtractError(f"{path} holds no evaluation (predictions.parquet and metrics.json): run "
                              f"`artextract evaluate --run RUN` first")
    metrics = read_record(folder.metrics, REWRITE_HINT, keys=("split", "tasks"))
    predictions, _classes = read_predictions(folder)
    run = _run_of(folder)
    # resolved: a relative RUN argument must still be named after its run, not 'eval'
    own_eval = run is not None and folder.root.resolve() == run.default_eval.resolve()
    name = run.root.resolve().name if own_eval else folder.root.resolve().name
    return Evaluation(name, folder, _describe(run), metrics, predictions[predictions["split"] == metrics["split"]])


def _run_of(folder: EvalFolder) -> RunFolder | None:
    if folder.inputs.is_file():
        model = Path(read_record(folder.inputs, REWRITE_HINT, keys=("model",))["model"])
        return RunFolder(model.parent)
    return None


def _describe(run: RunFolder | None) -> str:
    if run is None or not run.config.is_file():
        return "unknown model"
    try:  # a damaged or hand-edited config.yaml only costs the description
        model = yaml.safe_load(run.config.read_text(encoding="utf-8"))["model"]
        reader = "GAP" if model["reader"] == "none" else f"{model['reader']} {model['scan']} {model['pooling']}"
        return f"{model['backbone']} ({model['weights']}) + {reader}"
    except (OSError, ValueError, yaml.YAMLError, KeyError, TypeError):
        return f"unknown model ({run.config} is unreadable)"


def compare(paths: list[Path], seed: int = 0) -> dict[str, Any]:
    """`{"runs": [...], "pairs": [...]}`: per run and task the figures with intervals; per pair of runs and task
    scored on the same images, the paired accuracy difference and McNemar's test."""
    if len(paths) < 2:
        raise ArtExtractError("compare needs at least two evaluated runs")
    evaluations = [load_evaluation(p) for p in paths]
    runs = []
    for e in evaluations:
        tasks = {}
        for task, m in e.metrics["tasks"].items():
            if m.get("images"):
                tasks[task] = {"images": m["images"], "accuracy": m["accuracy"], "macro_f1": m["macro_f1"],
                               "accuracy_interval_95": m["intervals_95"]["accuracy"],
                               "macro_f1_interval_95": m["intervals_95"]["macro_f1"]}
        runs.append({"name": e.name, "folder": str(e.folder.root), "model": e.description,
                     "split": e.metrics["split"], "tasks": tasks})
    pairs = []
    for a, b in itertools.combinations(evaluations, 2):
        for task in sorted(set(a.metrics["tasks"]) & set(b.metrics["tasks"])):
            paired = _paired(a, b, task, seed)
            if paired is not None:
                pairs.append({"a": a.name, "b": b.name, "task": task, **paired})
    return {"runs": runs, "pairs": pairs}


def _paired(a: Evaluation, b: Evaluation, task: str, seed: int) -> dict[str, Any] | None:
    """The paired statistics, or None when the two runs did not score the same labelled images."""
    columns = ["path", f"label_{task}", f"pred_{task}"]
    left = a.predictions[columns][a.predictions[f"label_{task}"] >= 0].set_index("path")
    right = b.predictions[columns][b.predictions[f"label_{task}"] >= 0].set_index("path")
    if len(left) == 0 or set(left.index) != set(right.index):
        return None
    right = right.loc[left.index]
    if not (left[f"label_{task}"] == right[f"label_{task}"]).all():
        return None
    truth = left[f"label_{task}"].to_numpy()
    a_correct = left[f"pred_{task}"].to_numpy() == truth
    b_correct = right[f"pred_{task}"].to_numpy() == truth
    return paired_difference(a_correct, b_correct, seed=seed) | {"mcnemar": mcnemar_exact(a_correct, b_correct)}


def render_markdown(result: dict[str, Any]) -> str:
    def interval(values: list[float]) -> str:
        return f"[{values[0]:.3f}, {values[1]:.3f}]"

    lines = ["| run | model | split | task | images | accuracy [95 % CI] | macro-F1 [95 % CI] |",
             "|---|---|---|---|---|---|---|"]
    for run in result["runs"]:
        for task, f in run["tasks"].items():
            lines.append(f"| {run['name']} | {run['model']} | {run['split']} | {task} | {f['images']} | "
                         f"{f['accuracy']:.3f} {interval(f['accuracy_interval_95'])} | "
                         f"{f['macro_f1']:.3f} {interval(f['macro_f1_interval_95'])} |")
    lines += ["", "Paired, on the same images: accuracy of B minus A with a 95 % bootstrap interval, and McNemar's "
              "exact test (p: the chance of a split at least this uneven if both were equally accurate).", "",
              "| A | B | task | images | B - A [95 % CI] | only A right | only B right | McNemar p |",
              "|---|---|---|---|---|---|---|---|"]
    for pair in result["pairs"]:
        m = pair["mcnemar"]
        lines.append(f"| {pair['a']} | {pair['b']} | {pair['task']} | {pair['images']} | {pair['difference']:+.3f} "
                     f"{interval(pair['interval_95'])} | {m['only_a_right']} | {m['only_b_right']} | "
                     f"{m['p_value']:.3g} |")
    if not result["pairs"]:
        lines.append("| (no two runs scored the same images) | | | | | | | |")
    return "\n".join(lines) + "\n"
