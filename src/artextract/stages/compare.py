"""`artextract compare RUN_OR_EVAL ...`: one table across evaluated runs, and for every pair of models scored on the
same images a paired test of the accuracy and macro-F1 differences, per task, Holm-corrected over the table.

A model may be several runs that differ only in their seed (`RUN_S0,RUN_S1,RUN_S2` as one argument): its figures
are averaged over them and the verdicts include the seed-to-seed variance (analysis/compare.py). Reads only what
`evaluate` wrote (predictions.parquet, metrics.json) and the runs' config.yaml: no model, no GPU.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from artextract.analysis.compare import apply_holm, format_p, seeded_paired_test, verdict_cell
from artextract.config_files import load_config
from artextract.core.progress import log
from artextract.core.records import read_record
from artextract.core.safe_text import markdown_cell
from artextract.errors import ArtExtractError
from artextract.layout import REWRITE_HINT, EvalFolder, RunFolder
from artextract.models.readers import reader_label


@dataclass
class Evaluation:
    name: str
    folder: EvalFolder
    description: str
    metrics: dict[str, Any]
    predictions: pd.DataFrame  # the evaluated split's rows
    classes: dict[str, list[str]]
    settings: dict[str, Any] | None = None  # the run's config.yaml without its seed, when readable
    named_after: Path = Path()  # the folder the name is taken from (the run's, or the EVAL folder's own)


@dataclass
class Model:
    """One model in the verdicts: one evaluated run, or several that differ only in their training seed."""

    name: str
    runs: list[Evaluation]

    @property
    def first(self) -> Evaluation:
        return self.runs[0]


def load_evaluation(path: Path) -> Evaluation:
    """An EVAL folder, or a RUN folder holding one in RUN/eval."""
    folder = EvalFolder(path)
    if not folder.predictions.is_file() and RunFolder(path).default_eval.is_dir():
        folder = EvalFolder(RunFolder(path).default_eval)
    if not folder.predictions.is_file() or not folder.metrics.is_file():
        raise ArtExtractError(f"{path} holds no evaluation (predictions.parquet and metrics.json): run "
                              f"`artextract evaluate --run RUN` first")
    metrics = read_record(folder.metrics, REWRITE_HINT, keys=("split", "tasks"))
    predictions, classes = folder.read_predictions()
    split = predictions[predictions["split"] == metrics["split"]]
    _check_agreement(folder, metrics, split)
    run = _run_of(folder)
    # resolved: a relative RUN argument must still be named after its run, not 'eval'
    own_eval = run is not None and folder.root.resolve() == run.default_eval.resolve()
    named_after = run.root.resolve() if own_eval else folder.root.resolve()
    return Evaluation(named_after.name, folder, _describe(run), metrics, split, classes,
                      _settings_without_seed(run), named_after)


def _settings_without_seed(run: RunFolder | None) -> dict[str, Any] | None:
    try:
        settings = yaml.safe_load(run.config.read_text(encoding="utf-8")) if run and run.config.is_file() else None
    except (OSError, yaml.YAMLError):
        return None
    if not isinstance(settings, dict) or not isinstance(settings.get("train"), dict):
        return None
    settings["train"].pop("seed", None)
    return settings


def load_model(argument: Path) -> Model:
    """One RUN_OR_EVAL argument: a folder, or comma-separated folders of runs that differ only in their seed."""
    paths = [argument] if argument.exists() or "," not in str(argument) else \
        [Path(p) for p in str(argument).split(",") if p]
    runs = [load_evaluation(p) for p in paths]
    if len(runs) == 1:
        return Model(runs[0].name, runs)
    for run in runs[1:]:
        if run.settings is None or runs[0].settings is None or run.settings != runs[0].settings:
            raise ArtExtractError(f"{argument}: the runs of one model must differ only in train.seed, and "
                                  f"{run.folder.root} and {runs[0].folder.root} "
                                  + ("differ in other settings" if run.settings and runs[0].settings
                                     else "cannot be checked (a config.yaml is missing or unreadable)")
                                  + ": compare them as separate arguments")
    return Model(f"{runs[0].name} (+{len(runs) - 1} seeds)", runs)


def _check_agreement(folder: EvalFolder, metrics: dict[str, Any], split: pd.DataFrame) -> None:
    """metrics.json must be what the predictions give: an edited file on either side would make the table (from
    metrics.json) and the paired test (from the predictions) disagree without a word."""
    where = f"{folder.metrics} and {folder.predictions}"
    fix = "one of them was edited or replaced: " + REWRITE_HINT
    duplicated = split["path"].duplicated()
    if duplicated.any():
        raise ArtExtractError(f"{folder.predictions} lists {split['path'][duplicated].iloc[0]} more than once; {fix}")
    if not isinstance(metrics["tasks"], dict):
        raise ArtExtractError(f"{folder.metrics} is damaged ('tasks' is not an object); {REWRITE_HINT}")
    for task, figures in metrics["tasks"].items():
        if not isinstance(figures, dict) or not figures.get("images"):
            continue
        try:
            numbers = [figures["images"], figures["accuracy"], figures["macro_f1"],
                       *figures["intervals_95"]["accuracy"], *figures["intervals_95"]["macro_f1"]]
            if not all(isinstance(n, int | float) and math.isfinite(n) for n in numbers) or len(numbers) != 7:
                raise TypeError
        except (KeyError, TypeError):
            raise ArtExtractError(f"{folder.metrics} is damaged ({task}: images, accuracy, macro_f1 or their "
                                  f"intervals_95 missing or not numbers); {REWRITE_HINT}") from None
        if f"label_{task}" not in split.columns:
            raise ArtExtractError(f"{where} disagree: metrics.json scores {task}, the predictions have no "
                                  f"label_{task}; {fix}")
        labelled = split[split[f"label_{task}"] >= 0]
        accuracy = float((labelled[f"pred_{task}"] == labelled[f"label_{task}"]).mean()) if len(labelled) else 0.0
        if len(labelled) != figures["images"] or abs(accuracy - figures["accuracy"]) > 1e-9:
            raise ArtExtractError(f"{where} disagree on {task}: the predictions give {len(labelled)} images at "
                                  f"accuracy {accuracy:.4f}, metrics.json says {figures['images']} at "
                                  f"{figures['accuracy']:.4f}; {fix}")


def _run_of(folder: EvalFolder) -> RunFolder | None:
    parent = RunFolder(folder.root.resolve().parent)
    if parent.default_eval.resolve() == folder.root.resolve() and parent.config.is_file():
        return parent  # RUN/eval belongs to RUN, also when RUN was copied (inputs.json names the original)
    if folder.inputs.is_file():
        model = Path(read_record(folder.inputs, REWRITE_HINT, keys=("model",))["model"])
        return RunFolder(model.parent)
    return None


def _describe(run: RunFolder | None) -> str:
    if run is None or not run.config.is_file():
        return "unknown model"
    try:  # a damaged or hand-edited config.yaml only costs the description
        model = load_config(run.config).model
        tuned = f", last {model.tuned_stages} stage(s) tuned" if model.tuned_stages else ""
        return f"{model.backbone} ({model.weights}{tuned}) + {reader_label(model)}"
    except (OSError, ValueError, yaml.YAMLError, KeyError, TypeError, ArtExtractError):
        return f"unknown model ({run.config} is unreadable)"


def _named_apart(models: list[Model]) -> list[Model]:
    """Runs whose folders share a name (copies of one run in two places) are named with their parent folders as
    well, until every row of the tables says which is which."""
    suffixes = [model.name[len(model.first.name):] for model in models]  # " (+2 seeds)"
    runs = [run for model in models for run in model.runs]
    for depth in range(1, 8):
        names = [run.name for run in runs]
        if len(set(names)) == len(names):
            break
        for run, name in zip(runs, names, strict=True):
            if names.count(name) > 1:
                run.name = "/".join(run.named_after.parts[-depth - 1:])
    for model, suffix in zip(models, suffixes, strict=True):
        model.name = model.first.name + suffix
    return models


def compare(paths: list[Path], seed: int = 0) -> dict[str, Any]:
    """`{"runs": [...], "pairs": [...], "skipped": [...], "tests": N}`: per run and task the figures with
    intervals; per pair of models and task scored on the same images, the paired accuracy and macro-F1
    differences (over each model's seeds), Holm-corrected over the N tests of the table."""
    if len(paths) < 2:
        raise ArtExtractError("compare needs at least two evaluated runs")
    models = _named_apart([load_model(p) for p in paths])
    runs = []
    for e in (run for model in models for run in model.runs):
        tasks = {}
        for task, m in e.metrics["tasks"].items():
            if m.get("images"):
                tasks[task] = {"images": m["images"], "accuracy": m["accuracy"], "macro_f1": m["macro_f1"],
                               "accuracy_interval_95": m["intervals_95"]["accuracy"],
                               "macro_f1_interval_95": m["intervals_95"]["macro_f1"]}
        runs.append({"name": e.name, "folder": str(e.folder.root), "model": e.description,
                     "split": e.metrics["split"], "tasks": tasks})
    pairs, skipped = [], []
    for a, b in itertools.combinations(models, 2):
        for task in sorted(set(a.first.metrics["tasks"]) | set(b.first.metrics["tasks"])):
            paired = _paired_models(a, b, task, seed)
            if isinstance(paired, str):
                log.warning("compare: %s and %s are not paired on %s: %s", a.name, b.name, task, paired)
                skipped.append({"a": a.name, "b": b.name, "task": task, "why": paired})
            else:
                pairs.append({"a": a.name, "b": b.name, "task": task, **paired})
    return {"runs": runs, "pairs": pairs, "skipped": skipped, "tests": apply_holm(pairs)}


def _paired_models(a: Model, b: Model, task: str, seed: int) -> dict[str, Any] | str:
    """The seed-aware paired test of B against A on `task`, or why they cannot be paired: every run of both must
    have scored the same images with the same labels under the same class names."""
    reference, truth, predicted = a.first, None, []
    for model in (a, b):
        rows = []
        for run in model.runs:
            paired = _aligned(reference, run, task)
            if isinstance(paired, str):
                return paired if run is model.first else f"{run.folder.root}, a seed of {model.name}: {paired}"
            truth, labels = paired
            rows.append(labels)
        predicted.append(np.stack(rows))
    return seeded_paired_test(truth, *predicted, len(reference.classes[task]), seed=seed)


def _aligned(a: Evaluation, b: Evaluation, task: str) -> tuple[np.ndarray, np.ndarray] | str:
    """b's labels and predictions of `task` in a's order of images, or why the two runs cannot be paired on it
    (paired only when they scored the same images with the same labels under the same class names)."""
    if task not in a.classes or task not in b.classes:
        return f"only {a.name if task in a.classes else b.name} scored it"
    if a.classes[task] != b.classes[task]:
        return "their class names differ (other DATA, or a classes.json edited)"
    columns = ["path", f"label_{task}", f"pred_{task}"]
    left = a.predictions[columns][a.predictions[f"label_{task}"] >= 0].set_index("path")
    right = b.predictions[columns][b.predictions[f"label_{task}"] >= 0].set_index("path")
    if len(left) == 0 or len(right) == 0:
        return "no labelled image in one of them"
    if set(left.index) != set(right.index):
        return (f"they scored different images ({len(set(left.index) - set(right.index))} only in {a.name}, "
                f"{len(set(right.index) - set(left.index))} only in {b.name})")
    right = right.loc[left.index]
    differ = int((left[f"label_{task}"] != right[f"label_{task}"]).sum())
    if differ:
        return f"their labels differ on {differ} of the {len(left)} images"
    return left[f"label_{task}"].to_numpy(), right[f"pred_{task}"].to_numpy()


def render_markdown(result: dict[str, Any]) -> str:
    def interval(values: list[float]) -> str:
        return f"[{values[0]:.3f}, {values[1]:.3f}]"

    lines = ["| run | model | split | task | images | accuracy [95 % CI] | macro-F1 [95 % CI] |",
             "|---|---|---|---|---|---|---|"]
    for run in result["runs"]:
        for task, f in run["tasks"].items():
            lines.append(f"| {markdown_cell(run['name'])} | {markdown_cell(run['model'])} | {run['split']} | "
                         f"{task} | {f['images']} | "
                         f"{f['accuracy']:.3f} {interval(f['accuracy_interval_95'])} | "
                         f"{f['macro_f1']:.3f} {interval(f['macro_f1_interval_95'])} |")
    single = any(not pair["training_variance"] for pair in result["pairs"])
    lines += ["", "Paired, on the same images: B minus A in points of accuracy and of macro-F1, each model averaged "
              "over its seeds (a comma-separated argument), with a 95 % interval and p from the images' variance "
              "(a bootstrap stratified by class) plus the seeds' (each model's seed-to-seed variance over its "
              f"number of seeds). Holm's correction over all {result.get('tests', 0)} tests of this table (both "
              "metrics, every pair and task); bold: significant at 0.05 after it. McNemar's exact test where "
              "both models are one run."
              + (" One run per model leaves the training variance out: a verdict can be the luck of one seed."
                 if single else ""), "",
              "| A | B | task | images | seeds | accuracy B - A | macro-F1 B - A | McNemar p |",
              "|---|---|---|---|---|---|---|---|"]
    for pair in result["pairs"]:
        mcnemar = pair["accuracy"].get("mcnemar")
        lines.append(f"| {markdown_cell(pair['a'])} | {markdown_cell(pair['b'])} | {pair['task']} | {pair['images']} | "
                     f"{pair['seeds_a']} / {pair['seeds_b']} | {verdict_cell(pair['accuracy'])} | "
                     f"{verdict_cell(pair['macro_f1'])} | {format_p(mcnemar['p_value']) if mcnemar else ''} |")
    if not result["pairs"]:
        lines.append("| (no two runs scored the same images) | | | | | | | |")
    if result.get("skipped"):
        lines += ["", "Not paired:", ""]
        lines += [f"- {markdown_cell(s['a'])} and {markdown_cell(s['b'])}, {s['task']}: {markdown_cell(s['why'])}"
                  for s in result["skipped"]]
    return "\n".join(lines) + "\n"
