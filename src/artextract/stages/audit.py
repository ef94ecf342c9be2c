"""`artextract audit`: which training labels of a DATA folder are probably wrong, found out of fold.

K models are trained, each on K-1 folds of the training paintings (train and selection splits pooled, the folds of
engine/folds.py), and each painting is predicted by the model that did not train on it; the label issues are then
ranked per task from those predictions (analysis/label_issues.py: the project's scores beside cleanlab's). With a
frozen backbone (configs/wikiart-real-cpu.yaml) the runs train from DATA/features/ in seconds each.

AUDIT/folds/fold-<k>/          one ordinary RUN folder per fold (scored at its last epoch: the held-out fold
                               chooses nothing); on a rerun, one that finished with the same settings on the same
                               DATA and labels is reused, any other is trained again
AUDIT/oof.parquet              every training painting's out-of-fold logits per task, its embedding and fold
AUDIT/label_issues_<task>.csv  ranked, most suspicious first, with the columns a reviewer fills (`action`:
                               keep, relabel or drop; `new_label`), which `prepare --overrides` reads back
AUDIT/audit.json, audit.md     settings, counts, the flagged quota, duplicate groups' ranks, timings
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from artextract.config import Config
from artextract.core.atomic import write_json, write_text, write_with
from artextract.core.outdir import claimed_output_dir, undo_on_failure
from artextract.core.progress import log
from artextract.core.safe_text import write_csv
from artextract.data.overrides import REVIEW_COLUMNS
from artextract.errors import ConfigError
from artextract.stages.audit_rows import TaskAudit, rank_with_copies


@dataclass
class AuditResult:
    out: Path
    tasks: dict[str, TaskAudit]
    record: dict[str, Any] = field(default_factory=dict)


def audit_files(out: Path, tasks: list[str]) -> list[Path]:
    """Everything `audit` writes in AUDIT: what `audit --force` removes."""
    return [out / "folds", out / "oof.parquet", out / "audit.json", out / "audit.md",
            *(out / f"label_issues_{task}.csv" for task in tasks)]


def audit(data: Path, out: Path, config: Config, folds: int = 5, force: bool = False, noise: Any = None,
          rank_by: str | None = None) -> AuditResult:
    """Train `folds` runs of `config` on DATA, predict every training painting out of fold, and rank its label
    issues per task by `rank_by` (default: the headline, analysis/label_issues.py). `noise`
    (engine/label_noise.LabelNoise) flips training labels first: the validation."""
    from artextract.analysis.label_issues import HEADLINE, ranking_column
    from artextract.engine.data import load_data_folder
    from artextract.models.backbone import check_backbone_name
    from artextract.models.readers import reader_kind

    reader_kind(config.model.reader)
    check_backbone_name(config.model.backbone)
    rank_by = rank_by or HEADLINE
    try:
        ranking_column(rank_by)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    if folds < 2:
        raise ConfigError(f"--folds {folds}: the audit needs at least 2 folds (5 is the usual choice)")
    info = load_data_folder(data)
    tasks = list(config.model.tasks)
    info.folder.require_tasks(tasks)
    with undo_on_failure(Path(out), keep=lambda: (Path(out) / "folds").exists()), \
            claimed_output_dir(out, force=force, resumable_marker="folds",
                               earlier_outputs=lambda: audit_files(Path(out), tasks)) as claimed:
        return _audit(data, info, claimed, config, folds, tasks, noise, rank_by)


def _audit(data: Path, info: Any, out: Path, config: Config, folds: int, tasks: list[str],
           noise: Any, rank_by: str) -> AuditResult:
    from artextract.engine.folds import fold_of_rows
    from artextract.engine.label_noise import flip_training_labels, pooled_rows

    started = time.perf_counter()

    def relabel(view: Any) -> Any:  # the flips depend only on the manifest and the seed: every fold sees the same
        return flip_training_labels(view, noise, tasks)[0] if noise is not None else view

    labelled, flipped = flip_training_labels(info, noise, tasks) if noise is not None else (info, {})
    fold = fold_of_rows(info.manifest, folds)
    rows = pooled_rows(info)
    outputs, seconds = _out_of_fold(data, info, out, config, folds, rows, fold, relabel)
    oof = _oof_frame(labelled.manifest, info.manifest, rows, fold, outputs, list(info.classes), flipped)
    write_with(out / "oof.parquet", lambda tmp: oof.to_parquet(tmp, index=False))
    results = {task: rank_with_copies(task, oof, info, config.train.seed, rank_by) for task in tasks}
    for task, result in results.items():
        write_with(out / f"label_issues_{task}.csv", lambda tmp, f=result.frame: write_csv(_review_table(f), tmp))
    record = {"data": str(Path(data).resolve()), "folds": folds, "tasks": tasks, "headline": rank_by,
              "config": {"backbone": config.model.backbone, "weights": config.model.weights,
                         "representation": config.model.representation, "reader": config.model.reader,
                         "epochs": config.train.epochs, "seed": config.train.seed},
              "noise": None if noise is None else {"fraction": noise.fraction, "mode": noise.mode, "seed": noise.seed},
              "seconds": {"training": seconds, "total": time.perf_counter() - started},
              "per_task": {task: _task_record(result) for task, result in results.items()}}
    write_json(out / "audit.json", record)
    from artextract.report.audit_report import render_audit_markdown

    write_text(out / "audit.md", render_audit_markdown(record))
    log.info("audit: %d paintings in %d folds in %.0f s; %s", len(rows), folds, record["seconds"]["total"],
             "; ".join(f"{t}: {r.quota} flagged" for t, r in results.items()))
    return AuditResult(out, results, record)


def _out_of_fold(data: Path, info: Any, out: Path, config: Config, folds: int, rows: np.ndarray,
                 fold: np.ndarray, relabel: Any) -> tuple[dict[str, np.ndarray], list[float]]:
    """Every pooled row's outputs from the run of the fold that held it out; the training seconds per fold."""
    from artextract.engine.checkpoint import load_checkpoint, load_model_file
    from artextract.engine.features import predict_rows
    from artextract.engine.folds import fold_view
    from artextract.engine.runtime import Runtime
    from artextract.layout import RunFolder
    from artextract.stages.ablate_runs import train_or_reuse

    outputs: dict[str, np.ndarray] = {}
    seconds = []
    runtime = Runtime.resolve(config.train.accelerator, config.train.precision, config.train.channels_last)
    for k in range(folds):
        view = relabel(fold_view(info, folds, k))
        run, took = train_or_reuse(data, view, out / "folds" / f"fold-{k}", _fold_config(config, folds, k), relabel)
        seconds.append(took)
        model, meta = load_model_file(RunFolder(run).model, runtime)
        model.load_state_dict(load_checkpoint(RunFolder(run).last)["model"])  # its last epoch: nothing selected
        held = rows[fold[rows] == k]
        cache_rows = info.manifest["cache_index"].to_numpy()[held]
        order = np.argsort(cache_rows, kind="stable")
        predicted = predict_rows(model, meta.model_config["backbone"], meta.preprocessing, view, cache_rows[order],
                                 runtime, config.train.batch_size, f"audit fold {k + 1}/{folds}")
        for key, values in predicted.items():
            target = outputs.setdefault(key, np.zeros((len(info.manifest), values.shape[1]), np.float32))
            target[held[order]] = values
    return {key: values[rows] for key, values in outputs.items()}, seconds


def _fold_config(config: Config, folds: int, fold: int) -> Config:
    fold_config = copy.deepcopy(config)
    fold_config.train.folds, fold_config.train.fold = folds, fold
    fold_config.train.patience = 0  # the held-out fold measures; it chooses nothing
    return fold_config


def _oof_frame(labelled: pd.DataFrame, clean: pd.DataFrame, rows: np.ndarray, fold: np.ndarray,
               outputs: dict[str, np.ndarray], tasks: list[str], flipped: dict[str, np.ndarray]) -> pd.DataFrame:
    frame = pd.DataFrame({"path": clean["path"].to_numpy()[rows], "cache_index": clean["cache_index"].to_numpy()[rows],
                          "fold": fold[rows], "duplicate_group": _column(clean, "duplicate_group", -1)[rows]})
    for task in tasks:  # every task of DATA: the audit of one judges its labels against the others
        frame[f"label_{task}"] = labelled[f"label_{task}"].to_numpy(np.int64)[rows]
        if f"logits_{task}" in outputs:
            frame[f"logits_{task}"] = list(outputs[f"logits_{task}"])
        if task in flipped:
            frame[f"true_{task}"] = clean[f"label_{task}"].to_numpy(np.int64)[rows]
            frame[f"flipped_{task}"] = flipped[task][rows]
    frame["embedding"] = list(outputs["embedding"])
    return frame


def _column(manifest: pd.DataFrame, name: str, default: Any) -> np.ndarray:
    return manifest[name].to_numpy() if name in manifest.columns else np.full(len(manifest), default)


# What a reviewer reads first, then the two columns they fill, then every score.
_FIRST = ("rank", "task", "path", "label_name", "suggested_name", "p_label", "flagged", "cleanlab_issue",
          "duplicate_group", "copy_of_group", "nearest_of_suggested", "injected", "true_label_name")


def _review_table(frame: pd.DataFrame) -> pd.DataFrame:
    table = frame.drop(columns=[c for c in ("label", "predicted", "resembles", "suggested", "embedding")
                                if c in frame.columns])
    for column in REVIEW_COLUMNS:
        table[column] = ""
    first = [c for c in _FIRST if c in table.columns] + list(REVIEW_COLUMNS)
    return table[first + [c for c in table.columns if c not in first]]


def _task_record(result: TaskAudit) -> dict[str, Any]:
    frame = result.frame
    copies = frame[frame["copy_of_group"] >= 0]
    groups = {int(g): int(ranks.min()) for g, ranks in copies.groupby("copy_of_group")["rank"]}
    return {"paintings": int((frame["copy_of_group"] < 0).sum()), "flagged": result.quota,
            "cleanlab_issues": int(frame["cleanlab_issue"].sum()),
            "conflicting_duplicate_groups": {"count": len(groups), "best_rank": groups,
                                             "within_quota": sum(r <= result.quota for r in groups.values())},
            "detection": result.detection}
