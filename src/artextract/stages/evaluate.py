"""`artextract evaluate`: run the model once into predictions.parquet, then compute everything else from it.

RUN/eval/ (or --out):
  predictions.parquet   per image: path, split, label, logits, top-5 names and probabilities per task, embedding
  metrics.json          per task: accuracy, top-5, balanced accuracy, macro/weighted P/R/F1, per-class report,
                        bootstrap 95 % intervals, confusion matrix, calibration (ECE before/after temperature)
  confusion_<task>.{csv,png}, confusion_<task>_normalised.{csv,png}, f1_<task>.png, reliability_<task>.png
  outliers.csv          the outlier scores of every labelled image, most suspicious first
  explain/              JPEG thumbnails of every painting the report shows (outliers, their nearest paintings,
                        confused pairs, a sample of correct ones) and Grad-CAM / attention overlays
  report.html, report.md
Everything after predictions.parquet needs no model: `--from-predictions` recomputes it on a CPU.
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from artextract.analysis.evaluation import analyse_task, stack
from artextract.analysis.outliers import summarise
from artextract.analysis.probabilities import softmax, top_k
from artextract.core.atomic import write_json, write_with
from artextract.core.progress import log
from artextract.core.records import file_digest, read_record
from artextract.core.safe_text import write_csv
from artextract.engine.selection import OPEN_SET_ACCEPT
from artextract.errors import ArtExtractError
from artextract.layout import ENVIRONMENT, REWRITE_HINT, EvalFolder, RunFolder

TOP_K = 5


@dataclass
class EvalResult:
    out: Path
    metrics: dict[str, Any]
    outliers: pd.DataFrame


@dataclass
class Predicted:
    """What the explanations need after the predictions: the placed model, its preprocessing, DATA's image cache."""

    model: Any
    preprocessing: Any
    images: np.ndarray
    split: str


# ------------------------------------------------------------------ step 1: the model over the images


def _check_classes(model_classes: dict[str, list[str]], data_classes: dict[str, list[str]], data: Path) -> None:
    for task, names in model_classes.items():
        if task not in data_classes:
            raise ArtExtractError(f"the model predicts {task!r}, but {data}/classes.json has no such task")
        theirs = data_classes[task]
        if theirs != names:
            if len(theirs) != len(names):
                raise ArtExtractError(f"{task}: the model has {len(names)} classes, {data} has {len(theirs)}")
            i = next(i for i, (a, b) in enumerate(zip(names, theirs, strict=True)) if a != b)
            raise ArtExtractError(f"{task}: class {i} is {names[i]!r} in the model but {theirs[i]!r} in {data}")


def choose_split(manifest: pd.DataFrame, split: str, data: Path) -> str:
    """`split`, or the selection split when the official val images (split eval) are all absent from DATA, as
    with an archive that holds only train images: said loudly, since those figures are no val result."""
    usable = manifest["status"] == "ok"
    if (usable & (manifest["split"] == split)).any():
        return split
    if split == "eval" and (usable & (manifest["split"] == "select")).any():
        log.warning("evaluate: %s has no image of the official val splits (prepare_report.md lists the CSV rows "
                    "that matched no file); evaluating the selection split instead, which early stopping and "
                    "temperature scaling also used", data)
        return "select"
    raise ArtExtractError(f"split {split!r} of {data} has no usable images")


def predict_split(run: RunFolder, data: Path, split: str, out: EvalFolder, batch_size: int,
                  device_name: str, every_split: bool = False) -> Predicted:
    """Score `split` (see `choose_split`) and the selection split with the run's model into predictions.parquet,
    or with `every_split` all usable paintings of DATA (a similarity index over a whole collection). DATA is
    opened once, here; a cross-validation run's selection split is its own held-out fold."""
    from artextract.data.cache_files import open_cache
    from artextract.data.split_record import note_test_scoring
    from artextract.engine.checkpoint import load_model_file
    from artextract.engine.data import data_key, load_data_folder
    from artextract.engine.features import predict_rows
    from artextract.engine.folds import run_fold_view
    from artextract.engine.runtime import Runtime
    from artextract.engine.seen_images import guard_scored_rows

    runtime = Runtime.resolve(device_name)
    model, meta = load_model_file(run.require_model(), runtime)
    recorded = run.read_info("restore it from a copy, or evaluate another run") if run.run_info.is_file() else {}
    loaded = load_data_folder(data)
    info = run_fold_view(loaded, recorded)
    _check_classes(meta.classes, info.classes, data)
    meta.preprocessing.check_cache(info.cache_size, data)
    manifest = info.manifest
    split = choose_split(manifest, split, data) if not every_split else split
    wanted = manifest if every_split else manifest[manifest["split"].isin([split, "select"])]
    unusable = int((~wanted["status"].isin(["ok", "duplicate"])).sum())
    if unusable:
        log.warning("evaluate: %d images of the %s/select splits were skipped by prepare (see its report)",
                    unusable, split)
    copies = int((wanted["status"] == "duplicate").sum())
    if copies:
        log.info("evaluate: %d copies of paintings found under another name are counted once (DATA/duplicates.csv)",
                 copies)
    rows = wanted[wanted["status"] == "ok"].copy()
    rows["split"] = rows["split"].astype(str)
    rows, left_out = guard_scored_rows(run, rows, split, data) if not every_split else (rows, None)
    images = open_cache(info.folder.cache)
    rows = rows.sort_values("cache_index", kind="stable").reset_index(drop=True)  # read the cache in file order
    outputs = predict_rows(model, meta.model_config["backbone"], meta.preprocessing, info,
                           rows["cache_index"].to_numpy(), runtime, batch_size, f"evaluate {split}")
    frame = pd.DataFrame({"path": rows["path"], "split": rows["split"], "cache_index": rows["cache_index"]})
    for task, names in meta.classes.items():
        logits = outputs[f"logits_{task}"]
        indices, probabilities = top_k(softmax(logits), TOP_K)
        frame[f"label_{task}"] = rows[f"label_{task}"].to_numpy(np.int64)
        frame[f"pred_{task}"] = logits.argmax(axis=1)
        frame[f"top{TOP_K}_{task}"] = [[names[i] for i in row] for row in indices]
        frame[f"top{TOP_K}_prob_{task}"] = list(probabilities.astype(np.float32))
        frame[f"logits_{task}"] = list(logits.astype(np.float32))
    frame["embedding"] = list(outputs["embedding"].astype(np.float32))
    write_with(out.predictions, lambda tmp: frame.to_parquet(tmp, index=False))
    write_json(out.classes, meta.classes)
    # The model and DATA by content too (engine/provenance.py): the paths may move or come to hold other files.
    write_json(out.inputs, {"model": str(run.model.resolve()), "data": str(data.resolve()),
                            "model_sha256": file_digest(run.model), "data_key": data_key(loaded),
                            "skipped_by_prepare": unusable,
                            # images of the scored splits the run trained or selected on (None: not checked)
                            "left_out_seen_by_run": left_out,
                            # only of the DATA the run trained on: another folder's train split says nothing
                            "training_images_per_class": (_training_counts(manifest, meta.classes)
                                                          if _trained_on(recorded, data) else None),
                            "split": split, "test_split": note_test_scoring(data, split, run.model),
                            # the model file's open-set flag, as `predict` applies it (analysis/open_set.py)
                            "open_set": {"temperature": meta.temperature, "unknown_below": meta.unknown_below,
                                         "accept": OPEN_SET_ACCEPT},
                            "note": "images are read from the prepare cache; originals are not needed"})
    return Predicted(model, meta.preprocessing, images, split)


def _trained_on(recorded: dict[str, Any], data: Path) -> bool:
    """Whether DATA is the folder the run trained on (as run.json records it)."""
    return bool(recorded.get("data")) and Path(recorded["data"]).resolve() == Path(data).resolve()


def _training_counts(manifest: pd.DataFrame, classes: dict[str, list[str]]) -> dict[str, list[int]]:
    """Usable training images per class and task: the report leaves out the confusion-matrix columns of classes
    the model never saw and never predicted (16 of the 27 styles on the WikiArt sample)."""
    train = manifest[(manifest["split"] == "train") & (manifest["status"] == "ok")]
    counts = {}
    for task, names in classes.items():
        labels = train[f"label_{task}"].to_numpy(np.int64)
        counts[task] = np.bincount(labels[labels >= 0], minlength=len(names)).tolist()
    return counts


# ------------------------------------------------------------------ step 2: everything from predictions.parquet


def analyse(out: EvalFolder, split: str, inject: float, seed: int) -> EvalResult:
    """Metrics, calibration, outliers and figures from `out/predictions.parquet` alone."""
    from artextract.report.gallery import write_task_figures

    path = out.predictions
    if not path.is_file():
        raise ArtExtractError(f"{out.root} has no {path.name}: run evaluate without --from-predictions first")
    predictions, classes = out.read_predictions()
    scored = predictions[predictions["split"] == split]
    select = predictions[predictions["split"] == "select"]
    if scored.empty:
        raise ArtExtractError(f"{path} holds no images of split {split!r}")
    metrics: dict[str, Any] = {"split": split, "images": len(scored), "tasks": {}}
    if out.inputs.is_file():
        metrics["inputs"] = read_record(out.inputs, REWRITE_HINT)
    outlier_frames = {}
    embeddings = stack(scored["embedding"])
    for task, names in classes.items():
        metrics["tasks"][task], frame = analyse_task(task, names, scored, select, embeddings, inject, seed,
                                                     _open_set(metrics.get("inputs"), task))
        if frame is None:  # no labelled image of this task in the split
            continue
        calibration = metrics["tasks"][task]["calibration"]
        if calibration["worsened_on_select"]:
            log.warning("%s: temperature scaling raised the selection set's calibration error (%.3f -> %.3f on %d "
                        "images): its ECE-after figures are not to be trusted", task, calibration["select_ece_before"],
                        calibration["select_ece_after"], calibration["fitted_on_images"])
        outlier_frames[task] = frame
        trained = (metrics.get("inputs", {}).get("training_images_per_class") or {}).get(task)
        write_task_figures(out, task, names, metrics["tasks"][task], trained)
    metrics["outliers"] = summarise(outlier_frames)
    outliers = pd.concat(outlier_frames.values(), ignore_index=True) if outlier_frames else pd.DataFrame()
    write_json(out.metrics, metrics)
    write_with(out.outliers, lambda tmp: write_csv(outliers, tmp, float_format="%.6g"))
    return EvalResult(out.root, metrics, outliers)


# ------------------------------------------ the command: predict -> analyse -> explain -> report


SPLITS = ("eval", "select", "train")


def _open_set(inputs: dict[str, Any] | None, task: str) -> tuple[float, float, float] | None:
    """(temperature, threshold, accepted share) of `task` from inputs.json, when the model file has a threshold."""
    record = (inputs or {}).get("open_set")
    try:
        return (float(record["temperature"][task]), float(record["unknown_below"][task]), float(record["accept"]))
    except (KeyError, TypeError, ValueError):
        return None


def _say_if_unfinished(run: RunFolder) -> None:
    """A run still training, or one that stopped before its last epoch, is evaluated as it stands (its best model
    so far); the user is told which, and what finishes it."""
    from artextract.core.lock import writer_of

    epochs = len(pd.read_csv(run.metrics)) if run.metrics.is_file() else 0
    writer = writer_of(run.root)
    if writer is not None:
        log.warning("%s is still training (%s): this evaluates its best model after %d epoch(s); evaluate again "
                    "when the run has finished", run.root, writer, epochs)
    elif run.finished() is None and run.last.is_file():
        log.warning("%s did not finish its training (stopped after %d epoch(s)): this evaluates its best model so "
                    "far; `artextract train --out %s --resume` continues it", run.root, epochs, run.root)


def check_arguments(run: Path, split: str, inject: float, batch_size: int) -> None:
    """The arguments of `evaluate_run` that are wrong whatever the files hold, refused before any is read."""
    if split not in SPLITS:
        raise ArtExtractError(f"--split must be {', '.join(SPLITS[:-1])} or {SPLITS[-1]}, got {split!r}")
    if not 0.0 <= inject < 1.0:
        raise ArtExtractError(f"--inject-noise must be in [0, 1), got {inject}")
    if batch_size < 1:
        raise ArtExtractError(f"--batch-size must be at least 1, got {batch_size}")
    if not run.is_dir():
        raise ArtExtractError(f"--run {run} is not a folder")


def evaluate_run(run: Path, *, data: Path | None = None, split: str = "eval", out: Path | None = None,
                 inject: float = 0.0, batch_size: int = 256, device: str = "auto", seed: int = 0,
                 from_predictions: bool = False, force: bool = False,
                 audit: Path | None = None) -> tuple[EvalResult, Path]:
    """The whole of `artextract evaluate`: predictions (unless `from_predictions`), analysis, heat maps, report.
    `out` defaults to RUN/eval; `audit`: a label audit of the run's DATA, summarised in the report."""
    from artextract.core.environment import write_environment
    from artextract.core.lock import folder_lock
    from artextract.core.outdir import claimed_output_dir, undo_on_failure
    from artextract.report.audit_report import audit_section
    from artextract.report.gallery import explain_examples
    from artextract.report.html import write_report

    check_arguments(Path(run), split, inject, batch_size)
    run_folder = RunFolder(Path(run))
    folder = EvalFolder(Path(out) if out is not None else run_folder.default_eval)
    predicted = None
    with ExitStack() as held:  # the EVAL folder is locked while it is written, DATA shared while it is read
        if from_predictions:
            recorded = read_record(folder.inputs, REWRITE_HINT) if folder.inputs.is_file() else {}
            if data is None:  # the DATA folder the predictions were made on, else the one the run trained on
                data = Path(recorded["data"]) if recorded.get("data") else \
                    run_folder.data_folder() if run_folder.run_info.is_file() else None
            if split == "eval":  # predictions made for the fallback (see choose_split)
                split = recorded.get("split", split)
            if folder.root.is_dir():  # (if not, reading the predictions says what is missing)
                held.enter_context(folder_lock(folder.root))
        else:
            run_folder.require_model()  # before DATA: a folder that is no run must not be asked for its DATA
            _say_if_unfinished(run_folder)
            data = run_folder.data_folder(data)
            # A failure before the predictions are written leaves nothing; after, they are kept for --from-predictions.
            held.enter_context(undo_on_failure(folder.root, keep=folder.predictions.is_file))
            held.enter_context(claimed_output_dir(folder.root, force=force, earlier_outputs=folder.outputs))
            held.enter_context(folder_lock(data, exclusive=False))
        section = audit_section(Path(audit), data) if audit is not None else None  # refused before any work
        if not from_predictions:
            predicted = predict_split(run_folder, data, split, folder, batch_size, device)
            split = predicted.split
        result = analyse(folder, split, inject, seed)
        if predicted is not None:  # heat maps need the model; a recomputation reuses the ones already drawn
            explain_examples(predicted.model, predicted.preprocessing, predicted.images, folder, result.outliers,
                             result.metrics, seed)
        write_environment(folder.root / ENVIRONMENT)
        return result, write_report(folder, run_folder, data, result.metrics, result.outliers, section)
