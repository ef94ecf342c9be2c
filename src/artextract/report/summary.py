"""What was evaluated, in words: the header of report.html, read from the RUN, DATA and EVAL folders' own files.

Every entry is read from a file written when that thing happened (config.yaml and env.json of the run, the model
file's tensor shapes, metrics.csv, prepare_report.json, inputs.json), never from the code that runs now, so a
report recomputed later (`--from-predictions`) still describes the model that made the predictions.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from artextract.layout import ENVIRONMENT, DataFolder, EvalFolder, RunFolder
from artextract.models.readers import describe_reader
from artextract.models.weights import weights_phrase

# What a figure on each split can and cannot claim: a report of the selection or training split must not read like
# a held-out one (the sample route has no val image, so evaluate falls back to the selection split).
SPLIT_CAVEATS = {
    "select": "Selection split, not a held-out score: these images also chose the epoch that was kept and fitted "
              "the calibration temperature, so every figure here is optimistic. A held-out score needs the "
              "official val images (split eval), or a test split carved from train before training "
              "(`artextract prepare --test-fraction 0.1`).",
    "train": "Training split, not a held-out score: the model learned from these images, so the figures measure "
             "how well it fits them, not how well it generalises.",
}


GENERATED_NOTE = ("These paintings are generated stand-ins (artextract synth), named after real painters but not "
                  "their works: the figures show how the pipeline behaves, not how well paintings are classified.")


def reduction_phrase(model: Any) -> str:
    """What `reduce_channels` does for this reader: only a recurrent reader uses it (models/readers.py)."""
    from artextract.models.readers import reader_kind

    if not model.reduce_channels or not reader_kind(model.reader).sequential:
        return ""
    if model.representation == "pyramid":
        return f"; each stage's statistics projected to {model.reduce_channels} channels"
    return f"; 1x1 reduction to {model.reduce_channels} channels"


def generated_note(data: Path | None) -> str | None:
    """GENERATED_NOTE when `data` holds the generated stand-ins of `artextract synth`, else None."""
    return GENERATED_NOTE if data is not None and DataFolder(Path(data)).synthetic() else None


def split_caveat(split: str) -> str | None:
    """The warning a report of `split` opens with; None for the held-out eval split."""
    return SPLIT_CAVEATS.get(split)


def best_epoch(history: pd.DataFrame) -> int | None:
    """The epoch whose model was kept: the first with the highest selection score (NaN never counts), as the
    training loop decides it."""
    if "score" not in history or history["score"].isna().all():
        return None
    scores = history["score"].to_numpy(float)
    best = max(s for s in scores if not math.isnan(s))
    return int(history["epoch"].iloc[next(i for i, s in enumerate(scores) if s == best)])


def parameter_count(model_file: Path) -> tuple[int, int] | None:
    """(all parameters, those outside the backbone) from the model file's tensor shapes, without loading it."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(model_file), framework="numpy") as handle:
            sizes = {name: math.prod(handle.get_slice(name).get_shape()) for name in handle.keys()}  # noqa: SIM118
    except (SafetensorError, OSError):
        return None
    # Buffers such as BatchNorm's running statistics are stored too; they are no parameters.
    kept = {n: size for n, size in sizes.items() if not n.endswith(("running_mean", "running_var",
                                                                   "num_batches_tracked"))}
    return sum(kept.values()), sum(size for n, size in kept.items() if not n.startswith("backbone."))


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _training(run: RunFolder, epochs_planned: int | None) -> str:
    if not run.metrics.is_file():
        return "n/a (no metrics.csv)"
    history = pd.read_csv(run.metrics)
    best = best_epoch(history)
    ran = len(history)
    planned = f" of {epochs_planned}" if epochs_planned else ""
    stopped = " (stopped early)" if epochs_planned and ran < epochs_planned else ""
    return f"{ran}{planned} epochs{stopped}; model kept from epoch {best if best else 'n/a'}"


def _model_rows(run: RunFolder) -> list[tuple[str, str]]:
    from artextract.config_files import load_config
    from artextract.errors import ConfigError

    try:
        config = load_config(run.config)
    except ConfigError:
        return [("model", f"n/a ({run.config} is missing or unreadable)")]
    m, t = config.model, config.train
    plan = ("backbone frozen" if t.freeze_backbone else
            f"{t.frozen_epochs} epochs frozen, then fine-tuned" if t.frozen_epochs else "whole network trained")
    rows = [("backbone", f"{m.backbone}, {weights_phrase(m.weights)}; {plan}"),
            ("reader", describe_reader(m) + reduction_phrase(m)),
            ("tasks", ", ".join(m.tasks))]
    counts = parameter_count(run.model)
    if counts is not None:
        total, outside = counts
        rows.append(("parameters", f"{total:,} ({outside:,} outside the backbone)"))
    rows += [("image size", f"{t.image_size} px"), ("training", _training(run, t.epochs))]
    return rows


def seen_phrase(left_out: dict[str, int] | None) -> str:
    if left_out is None:
        return "not checked: the run does not record the images it trained on (trained by an earlier version)"
    if not any(left_out.values()):
        return "none of the scored images (checked by content against the images it trained and selected on)"
    counts = ", ".join(f"{n} {split}" for split, n in left_out.items() if n)
    return (f"{counts} image(s) left out of the scores: the run trained or selected on the same files (by "
            "content), so they were not scored")


def header_rows(out: EvalFolder, run: RunFolder | None, data: Path | None,
                split: str = "eval") -> list[tuple[str, str]]:
    """(what, value) rows saying what was evaluated, on which data, by which code."""
    rows: list[tuple[str, str]] = []
    if run is not None:
        rows.append(("run", str(run.root.resolve())))
        rows += _model_rows(run)
    inputs = _read_json(out.inputs)
    data_path = inputs.get("data") or (str(data) if data else None)
    rows.append(("DATA folder", data_path or "n/a"))
    report = _read_json(DataFolder(Path(data_path)).report_json) if data_path else {}
    if report.get("protocol"):
        name, description = report["protocol"]["name"], report["protocol"]["description"]
        # The description may open with the name ("Leak-free protocol ..."): say it once.
        rows.append(("protocol", description if description.lower().startswith(name.lower()) else
                     f"{name}: {description}"))
    carved = (report.get("protocol") or {}).get("test_fraction") or 0
    held_out = (f"eval: the test split carved from train by `prepare --test-fraction {carved}` (held out from this "
                "run's training and selection; not from choices made before it was carved, such as settings chosen "
                "by cross-validation over the same paintings)" if carved
                else "eval: the official val images (held out from training and selection)")
    rows.append(("scored split", {"eval": held_out,
                                  "select": "select: the selection set carved from train (NOT held out; see the "
                                            "warning above)",
                                  "train": "train: the training images (NOT held out)"}.get(split, split)))
    test_split = inputs.get("test_split")
    if split == "eval" and isinstance(test_split, dict) and test_split.get("models_scored"):
        rows.append(("test split looked at", f"by {test_split['models_scored']} model(s) of this DATA folder so "
                                             "far, this one included (a split used to choose among models is no "
                                             "longer held out from the choice)"))
    if "left_out_seen_by_run" in inputs:
        rows.append(("images the run saw", seen_phrase(inputs["left_out_seen_by_run"])))
    evaluated, trained = _read_json(out.root / ENVIRONMENT), _read_json(run.root / ENVIRONMENT) if run else {}
    for label, record in (("evaluated by", evaluated), ("trained by", trained)):
        if record:
            version = (record.get("versions") or {}).get("artextract", "?")
            rows.append((label, f"artextract {version}, commit {record.get('git_commit') or 'n/a (not a git checkout)'}"
                                f", {record.get('created', '?')}"))
    return rows
