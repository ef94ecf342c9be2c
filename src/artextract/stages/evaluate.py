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

from artextract.analysis.calibration import calibration_report
from artextract.analysis.metrics import classification_metrics
from artextract.analysis.outliers import (
    HEADLINE,
    NOISE_MODES,
    inject_noise,
    most_confused,
    nearest_rows,
    noise_detection,
    score_task,
    summarise,
)
from artextract.analysis.probabilities import softmax, top_k
from artextract.core.atomic import write_bytes, write_json, write_with
from artextract.core.progress import log
from artextract.core.records import read_classes, read_record
from artextract.core.safe_text import write_csv
from artextract.errors import ArtExtractError
from artextract.layout import ENVIRONMENT, EvalFolder, RunFolder

TOP_K = 5
REWRITE_HINT = "rerun artextract evaluate with --force (and without --from-predictions) to write it again"
EXPLAIN_OUTLIERS, EXPLAIN_CORRECT = 12, 6  # per task, as many as the report shows
CONFUSED_EXAMPLES = 3  # thumbnails per confused pair of classes


@dataclass
class EvalResult:
    out: Path
    metrics: dict[str, Any]
    outliers: pd.DataFrame


def stack(column: pd.Series) -> np.ndarray:
    return np.stack(column.to_numpy()) if len(column) else np.zeros((0, 0), np.float32)


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


def resolve_data(run: RunFolder, data: Path | None) -> Path:
    """The DATA folder to evaluate on: the one given, or the one the run was trained on."""
    if data is not None:
        return data
    trained_on = run.trained_on()
    if trained_on is None:
        raise ArtExtractError(f"{run.root} does not say which DATA folder it was trained on: pass --data DATA")
    return trained_on


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
                  device_name: str) -> tuple[Any, Any, str]:
    """Score `split` (see `choose_split`) and the selection split with the run's model into predictions.parquet;
    returns the loaded (model, model info) for the explanations that follow, and the split scored."""
    import torch

    from artextract.data.cache import open_cache
    from artextract.engine.checkpoint import load_model_file
    from artextract.engine.data import load_data_folder
    from artextract.engine.features import backbone_batch_size, find_features
    from artextract.engine.folds import run_fold_view
    from artextract.engine.inference import run_model
    from artextract.engine.runtime import Runtime

    model, meta = load_model_file(run.require_model())
    recorded = run.read_info("restore it from a copy, or evaluate another run") if run.run_info.is_file() else {}
    info = run_fold_view(load_data_folder(data), recorded)  # a cross-validation run selects on its own fold
    _check_classes(meta.classes, info.classes, data)
    meta.preprocessing.check_cache(info.cache_size, data)
    manifest = info.manifest
    split = choose_split(manifest, split, data)
    wanted = manifest[manifest["split"].isin([split, "select"])]
    unusable = int((wanted["status"] != "ok").sum())
    if unusable:
        log.warning("evaluate: %d images of the %s/select splits were skipped by prepare (see its report)",
                    unusable, split)
    rows = wanted[wanted["status"] == "ok"].copy()
    rows["split"] = rows["split"].astype(str)
    images = open_cache(info.folder.cache)
    rows = rows.sort_values("cache_index", kind="stable").reset_index(drop=True)  # read the cache in file order
    cache_rows = rows["cache_index"].to_numpy()
    runtime = Runtime.resolve(device_name)
    model = runtime.place(model)
    # A frozen-backbone run's maps of these images are in DATA/features/ already (same weights, same key): reading
    # them skips the backbone, by far the costliest part of the pass.
    features = find_features(info, model.backbone, meta.model_config["backbone"], meta.preprocessing, cache_rows)
    source = features.maps if features is not None else images
    if features is not None:
        log.info("evaluate: reading the backbone's cached maps from %s", features.folder)
    else:  # on a CPU the backbone runs faster in small batches (bench/bench_features.py: 57 % of it at 256)
        batch_size = backbone_batch_size(batch_size, runtime.device)
    batches = (torch.from_numpy(np.ascontiguousarray(source[cache_rows[i: i + batch_size]]))
               for i in range(0, len(cache_rows), batch_size))
    outputs = run_model(model, batches, len(rows), meta.preprocessing, runtime, desc=f"evaluate {split}",
                        from_features=features is not None)
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
    write_json(out.inputs, {"model": str(run.model.resolve()), "data": str(data.resolve()),
                            "skipped_by_prepare": unusable,
                            "split": split, "note": "images are read from the prepare cache; originals are not needed"})
    return model, meta, split


def explain_examples(model: Any, meta: Any, data: Path, out: EvalFolder, outliers: pd.DataFrame,
                     metrics: dict[str, Any], seed: int) -> None:
    """Thumbnails and heat maps of the flagged outliers (evidence for the class each resembles) and of a sample
    of correct predictions (evidence for the predicted class), per task, each of the view the model saw; and
    thumbnails of the other paintings the report shows (nearest paintings, examples of confused pairs)."""
    import torch

    from artextract.data.cache import open_cache
    from artextract.engine.explain import attention_maps, grad_cam
    from artextract.layout import DataFolder
    from artextract.report.images import REPORT_FORMAT, blend, encode

    images = open_cache(DataFolder(data).cache)
    preprocessing = meta.preprocessing

    def picture(cache_row: int) -> np.ndarray:
        return preprocessing.visible(np.ascontiguousarray(images[cache_row]))

    for task, chosen in explained_rows(outliers, seed).items():
        cache_rows = chosen["cache_index"].to_numpy(np.int64)
        batch = torch.from_numpy(np.ascontiguousarray(images[cache_rows]))
        targets = torch.tensor(chosen["target"].to_numpy(np.int64))
        cams = grad_cam(model, batch, task, targets, preprocessing)
        attention = attention_maps(model, batch, preprocessing)
        for i, row in enumerate(cache_rows):
            seen = preprocessing.visible(batch[i].numpy())
            write_bytes(out.heatmap(row, task, "cam"), encode(blend(seen, cams[i]), REPORT_FORMAT))
            if attention is not None:
                write_bytes(out.heatmap(row, task, "attention"), encode(blend(seen, attention[i]), REPORT_FORMAT))
    for row in sorted(thumbnail_rows(outliers, metrics, seed)):
        write_bytes(out.thumbnail(row), encode(picture(row), REPORT_FORMAT))


def explained_rows(outliers: pd.DataFrame, seed: int) -> dict[str, pd.DataFrame]:
    """Per task, the rows that get heat maps, with the class each map explains (`target`): the flagged outliers
    the gallery shows (for the class they resemble) and a seeded sample of correct predictions."""
    rng = np.random.default_rng(seed)
    chosen = {}
    for task, frame in outliers.groupby("task", sort=False):
        flagged = frame[frame["flagged"]].head(EXPLAIN_OUTLIERS)
        correct = frame[frame["predicted"] == frame["label"]]
        sample = correct.iloc[np.sort(rng.permutation(len(correct))[:EXPLAIN_CORRECT])]
        rows = pd.concat([flagged.assign(target=flagged["resembles"]), sample.assign(target=sample["predicted"])])
        if not rows.empty:
            chosen[str(task)] = rows
    return chosen


def thumbnail_rows(outliers: pd.DataFrame, metrics: dict[str, Any], seed: int) -> set[int]:
    """Cache indices of every painting report.html shows as a thumbnail."""
    rows: set[int] = set()
    for task, chosen in explained_rows(outliers, seed).items():
        rows.update(chosen["cache_index"].astype(int))
        frame = outliers[outliers["task"] == task]
        for _, outlier in chosen[chosen["flagged"]].iterrows():
            rows.update(index for _, index in nearest_rows(frame, outlier))
    for task_metrics in metrics["tasks"].values():
        for pair in task_metrics.get("most_confused", []):
            rows.update(example["cache_index"] for example in pair.get("examples", []))
    return rows


def confused_examples(pairs: list[dict[str, Any]], labels: np.ndarray, logits: np.ndarray, paths: np.ndarray,
                      cache_rows: np.ndarray) -> None:
    """Adds to each confused pair up to CONFUSED_EXAMPLES paintings of its true class predicted as the other
    class, the most confidently wrong first."""
    predicted, confidence = logits.argmax(axis=1), softmax(logits).max(axis=1)
    for pair in pairs:
        rows = np.flatnonzero((labels == pair["true"]) & (predicted == pair["predicted"]))
        rows = rows[np.argsort(-confidence[rows], kind="stable")[:CONFUSED_EXAMPLES]]
        pair["examples"] = [{"path": str(paths[i]), "cache_index": int(cache_rows[i])} for i in rows]


# ------------------------------------------------------------------ step 2: everything from predictions.parquet


def analyse(out: EvalFolder, split: str, inject: float, seed: int) -> EvalResult:
    """Metrics, calibration, outliers and figures from `out/predictions.parquet` alone."""
    from artextract.report import plots

    path = out.predictions
    if not path.is_file():
        raise ArtExtractError(f"{out.root} has no {path.name}: run evaluate without --from-predictions first")
    predictions, classes = read_predictions(out)
    scored = predictions[predictions["split"] == split]
    select = predictions[predictions["split"] == "select"]
    if scored.empty:
        raise ArtExtractError(f"{path} holds no images of split {split!r}")
    metrics: dict[str, Any] = {"split": split, "images": len(scored), "tasks": {}}
    if out.inputs.is_file():
        metrics["inputs"] = read_record(out.inputs, REWRITE_HINT)
    outlier_frames = {}
    embeddings = stack(scored["embedding"])
    cache_index = dict(zip(scored["path"], scored["cache_index"], strict=True))
    for task, names in classes.items():
        labels = scored[f"label_{task}"].to_numpy()
        logits = stack(scored[f"logits_{task}"])
        task_metrics = classification_metrics(labels, logits, names, seed=seed)
        if task_metrics["images"] == 0:
            metrics["tasks"][task] = task_metrics
            continue
        select_logits = stack(select[f"logits_{task}"]) if len(select) else np.zeros((0, len(names)))
        select_labels = select[f"label_{task}"].to_numpy() if len(select) else np.zeros(0, np.int64)
        task_metrics["calibration"] = calibration = calibration_report(labels, logits, select_labels, select_logits)
        if calibration["worsened_on_select"]:
            log.warning("%s: temperature scaling raised the selection set's calibration error (%.3f -> %.3f on %d "
                        "images): its ECE-after figures are not to be trusted", task, calibration["select_ece_before"],
                        calibration["select_ece_after"], calibration["fitted_on_images"])
        paths = scored["path"].to_numpy()
        confused_examples(task_metrics["most_confused"], labels, logits, paths, scored["cache_index"].to_numpy())
        if inject > 0:
            # The gallery shows the uniform mode's outliers; both modes are scored (see analysis/outliers.py).
            confused_with = most_confused(select_labels, select_logits.argmax(axis=1), len(names))
            modes = {}
            for mode in NOISE_MODES:
                noisy, flipped = inject_noise(labels, inject, len(names), seed,
                                              confused_with if mode == "confusion" else None)
                scored_frame = score_task(task, paths, noisy, logits, embeddings, names, seed=seed)
                flipped_paths = dict(zip(paths, flipped, strict=True))
                modes[mode] = {"flipped": int(flipped.sum()), "scores": noise_detection(scored_frame, flipped_paths)}
                if mode == "uniform":
                    frame = scored_frame.assign(injected_noise=scored_frame["path"].map(flipped_paths),
                                                original_label=scored_frame["path"].map(dict(zip(paths, labels,
                                                                                                 strict=True))))
            task_metrics["noise_detection"] = {"fraction": inject, "headline": HEADLINE, "modes": modes}
        else:
            frame = score_task(task, paths, labels, logits, embeddings, names, seed=seed)
        frame["cache_index"] = frame["path"].map(cache_index)
        outlier_frames[task] = frame
        metrics["tasks"][task] = task_metrics
        _figures(out, task, names, task_metrics, plots)
    metrics["outliers"] = summarise(outlier_frames)
    outliers = pd.concat(outlier_frames.values(), ignore_index=True) if outlier_frames else pd.DataFrame()
    write_json(out.metrics, metrics)
    write_with(out.outliers, lambda tmp: write_csv(outliers, tmp, float_format="%.6g"))
    return EvalResult(out.root, metrics, outliers)


def read_predictions(out: EvalFolder) -> tuple[pd.DataFrame, dict[str, list[str]]]:
    """predictions.parquet and its classes.json, checked: a damaged or hand-edited file is named in one line, not
    met as a traceback deep inside the metrics."""
    fix = REWRITE_HINT
    classes = read_classes(out.classes, fix)
    try:
        predictions = pd.read_parquet(out.predictions)
    except (OSError, ValueError) as err:  # pyarrow's ArrowInvalid is a ValueError
        raise ArtExtractError(f"{out.predictions} is damaged ({str(err).splitlines()[0]}); {fix}") from None
    needed = ["path", "split", "cache_index", "embedding", *(f"{kind}_{task}" for task in classes
                                                              for kind in ("label", "pred", "logits"))]
    missing = [column for column in needed if column not in predictions.columns]
    if missing:
        raise ArtExtractError(f"{out.predictions} has no column {missing[0]!r}; {fix}")
    for task, names in classes.items():
        labels = pd.to_numeric(predictions[f"label_{task}"], errors="coerce")
        bad = ~labels.between(-1, len(names) - 1)
        bad |= ~pd.to_numeric(predictions[f"pred_{task}"], errors="coerce").between(0, len(names) - 1)  # NaN too
        widths = predictions[f"logits_{task}"].map(lambda row: len(row) if hasattr(row, "__len__") else -1)
        bad |= widths != len(names)
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise ArtExtractError(f"{out.predictions} row {row} ({predictions['path'].iloc[row]}): label_{task}, "
                                  f"pred_{task} or logits_{task} does not fit the {len(names)} {task} classes of "
                                  f"{out.classes.name}; {fix}")
    return predictions, classes


def _figures(out: EvalFolder, task: str, names: list[str], task_metrics: dict[str, Any], plots: Any) -> None:
    matrix = np.array(task_metrics["confusion"])
    for normalised in (False, True):
        suffix = "_normalised" if normalised else ""
        values = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1) if normalised else matrix
        table = pd.DataFrame(values, index=pd.Index(names, name="true \\ predicted"), columns=names)
        write_with(out.confusion(task, suffix, "csv"),
                   lambda tmp, t=table, f="%.4f" if normalised else None: write_csv(t, tmp, index=True, float_format=f))
        title = f"{task}: confusion matrix{' (row-normalised)' if normalised else ''}"
        write_bytes(out.confusion(task, suffix, "png"), plots.confusion_png(matrix, names, title, normalised))
    write_bytes(out.figure("f1", task), plots.per_class_f1_png(task_metrics["per_class"], f"{task}: F1 per class"))
    write_bytes(out.figure("reliability", task),
                plots.reliability_png(task_metrics["calibration"], f"{task}: reliability"))


def evaluate_run(run: Path, *, data: Path | None = None, split: str = "eval", out: Path | None = None,
                 inject: float = 0.0, batch_size: int = 256, device: str = "auto", seed: int = 0,
                 from_predictions: bool = False, force: bool = False) -> tuple[EvalResult, Path]:
    """The whole of `artextract evaluate`: predictions (unless `from_predictions`), analysis, heat maps, report.
    `out` defaults to RUN/eval."""
    from artextract.core.environment import write_environment
    from artextract.core.lock import folder_lock
    from artextract.core.outdir import claimed_output_dir, undo_on_failure
    from artextract.report.html import write_report

    run_folder = RunFolder(Path(run))
    folder = EvalFolder(Path(out) if out is not None else run_folder.default_eval)
    with ExitStack() as held:  # the EVAL folder is locked while it is written, DATA shared while it is read
        if from_predictions:
            if data is None:
                data = run_folder.trained_on()
            if split == "eval" and folder.inputs.is_file():  # predictions made for the fallback (see choose_split)
                split = read_record(folder.inputs, REWRITE_HINT).get("split", split)
            if folder.root.is_dir():  # (if not, reading the predictions says what is missing)
                held.enter_context(folder_lock(folder.root))
        else:
            run_folder.require_model()  # before DATA: a folder that is no run must not be asked for its DATA
            data = resolve_data(run_folder, data)
            # A failure before the predictions are written leaves nothing; after, they are kept for --from-predictions.
            held.enter_context(undo_on_failure(folder.root, keep=folder.predictions.is_file))
            held.enter_context(claimed_output_dir(folder.root, force=force, earlier_outputs=folder.outputs))
            held.enter_context(folder_lock(data, exclusive=False))
            model, meta, split = predict_split(run_folder, data, split, folder, batch_size, device)
        result = analyse(folder, split, inject, seed)
        if not from_predictions:  # heat maps need the model; a recomputation reuses the ones already drawn
            explain_examples(model, meta, data, folder, result.outliers, result.metrics, seed)
        write_environment(folder.root / ENVIRONMENT)
        return result, write_report(folder, run_folder, data, result.metrics, result.outliers)
