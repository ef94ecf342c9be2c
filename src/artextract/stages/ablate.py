"""`artextract ablate`: does the recurrent reader beat global average pooling? Every reader trained on the same
frozen-backbone feature cache, with several seeds, scored on the selection set beside a linear probe.

OUT/runs/<variant>-s<seed>[-f<fold>]/  one ordinary RUN folder per training (on a rerun, one that finished with
                               the same settings on the same DATA is reused; any other is trained again)
OUT/ablation.json, ablation.md the table: per variant and task, accuracy and macro-F1 averaged over the seeds,
                               with 95 % bootstrap intervals over the scored images; then the verdicts: each pair
                               (every variant against `gap` by default, or --pairs) tested with the images' and the
                               seeds' variance, Holm-corrected over the table (stages/ablate_table.py)

With --folds K the runs are scored by K-fold cross-validation over the train and selection splits pooled: K runs
per variant and seed, each painting scored once by the run that did not train on it; about K times the paintings
of a selection split, so differences a third to a half as large become detectable (docs/real-data.md).

Every run trains for the configured epochs with early stopping off and is scored at its last epoch, so the
selection set chooses nothing inside a run: it only measures. The linear probe is logistic regression on the
pooled (global-average) feature maps, its regularisation chosen by cross-validation on the training split.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from artextract.config import Config
from artextract.core.atomic import write_json, write_text
from artextract.core.outdir import claimed_output_dir, undo_on_failure
from artextract.core.progress import log
from artextract.errors import ArtExtractError, ConfigError
from artextract.stages.ablate_runs import features_and_model, last_epoch_predictions, train_or_reuse
from artextract.stages.ablate_table import default_pairs, render_markdown, verdicts
from artextract.stages.ablate_variants import LAST_MAP, VARIANTS

LINEAR_PROBE = "linear-probe"
PROBE_C_GRID = (0.01, 0.1, 1.0)  # inverse regularisation strengths tried by 3-fold cross-validation on train


@dataclass
class AblationResult:
    out: Path
    table: dict[str, dict[str, dict[str, Any]]]  # variant -> task -> figures
    markdown: str
    verdicts: list[dict[str, Any]]


def variant_settings(name: str) -> dict[str, Any] | None:
    """The settings of variant `name`: one of VARIANTS, or any registered reader by its name (models/readers.py)
    reading the last map; None for neither."""
    from artextract.models.readers import READERS

    if name in VARIANTS:
        return VARIANTS[name]
    return {**LAST_MAP, "reader": name} if name in READERS else None


def parse_variants(text: str) -> list[str]:
    from artextract.models.readers import READERS

    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if variant_settings(n) is None]
    if unknown or not names:
        raise ConfigError(f"unknown variants {', '.join(unknown) or '(none given)'}; choose among "
                          f"{', '.join(VARIANTS)}, or a reader's name ({', '.join(READERS)})")
    return names


def parse_seeds(text: str) -> list[int]:
    """`0,1,2` -> [0, 1, 2]."""
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise ConfigError(f"--seeds expects integers like 0,1,2, got {text!r}") from None
    return seeds


def ablate(data: Path, out: Path, config: Config, variants: list[str], seeds: list[int],
           force: bool = False, folds: int = 0, probe: bool = True,
           pairs: list[tuple[str, str]] | None = None) -> AblationResult:
    """Train every variant once per seed and score it on the selection split, or with `folds` >= 2 by K-fold
    cross-validation over the train and selection splits pooled (each painting scored once, by the run that did
    not train on it: engine/folds.py); then test `pairs` (A, B) of variants (by default each against `gap`)."""
    from artextract.models.backbone import check_backbone_name
    from artextract.models.readers import reader_kind

    reader_kind(config.model.reader)  # refused before the first run, not after the first variants trained
    check_backbone_name(config.model.backbone)
    if not seeds:
        raise ConfigError("--seeds names no seed")
    if folds == 1:
        raise ConfigError("--folds 1 leaves nothing to score on: give 0 (the selection split) or at least 2")
    # OUT locked for the whole ablation: two on one folder would train the same runs side by side. One that fails
    # before any run started leaves nothing behind (not a folder holding only the lock file); runs are kept.
    with undo_on_failure(Path(out), keep=lambda: (Path(out) / "runs").exists()), \
            claimed_output_dir(out, force=force, resumable_marker="runs") as claimed:
        return _ablate(data, claimed, config, variants, seeds, folds, probe,
                       pairs if pairs else default_pairs(variants))


def _ablate(data: Path, out: Path, config: Config, variants: list[str], seeds: list[int],
            folds: int, probe: bool, pairs: list[tuple[str, str]]) -> AblationResult:
    from artextract.analysis.metrics import seed_mean_metrics
    from artextract.engine.data import load_data_folder
    from artextract.engine.folds import fold_view

    info = load_data_folder(data)
    # DATA as each fold's runs see it (one view, the prepared selection split, when not cross-validating)
    views = [fold_view(info, folds, fold) for fold in range(max(folds, 1))]
    tasks = list(config.model.tasks)
    if folds < 2:
        _require_selection(info, tasks, data)
    table: dict[str, dict[str, dict[str, Any]]] = {}
    selection = None
    every_seed: dict[str, dict[str, np.ndarray]] = {}  # variant -> task -> seeds x images predicted
    for name in variants:
        predictions: dict[str, list[np.ndarray]] = {t: [] for t in tasks}
        seconds = []
        for seed in seeds:
            fold_labels, fold_predictions = [], []
            for fold, view in enumerate(views):
                run, took = train_or_reuse(data, view, out / "runs" / _run_name(name, seed, folds, fold),
                                           _variant_config(config, name, seed, folds, fold))
                seconds.append(took)
                labels, predicted, parameters = last_epoch_predictions(run, view, config)
                fold_labels.append(labels)
                fold_predictions.append(predicted)
            selection = {t: np.concatenate([labels[t] for labels in fold_labels]) for t in tasks}
            for task in tasks:
                predictions[task].append(np.concatenate([predicted[task] for predicted in fold_predictions]))
        table[name] = {task: seed_mean_metrics(selection[task], np.stack(predictions[task]),
                                               len(info.classes[task]))
                       | {"trainable_parameters": parameters, "seconds_per_run": float(np.mean(seconds))}
                       for task in tasks}
        every_seed[name] = {task: np.stack(runs) for task, runs in predictions.items()}
        log.info("ablate: %s done (%s)", name, _headline(table[name]))
    assert selection is not None
    found = verdicts(pairs, every_seed, selection, {t: len(info.classes[t]) for t in tasks})
    if probe:  # on the first variant's features (minutes on wide ones such as the pyramid's 4,128 statistics)
        table[LINEAR_PROBE] = _linear_probe(out / "runs" / _run_name(variants[0], seeds[0], folds, 0), views,
                                            config)
    markdown = render_markdown(table, found, tasks, seeds, config, folds)
    write_json(out / "ablation.json", {"seeds": seeds, "epochs": config.train.epochs, "tasks": tasks,
                                       "folds": folds, "pairs": [list(p) for p in pairs], "table": table,
                                       "verdicts": found})
    write_text(out / "ablation.md", markdown)
    return AblationResult(out, table, markdown, found)


def _require_selection(info: Any, tasks: list[str], data: Path) -> None:
    selection_rows = info.manifest[(info.manifest["split"] == "select") & (info.manifest["status"] == "ok")]
    if not any((selection_rows[f"label_{t}"] >= 0).any() for t in tasks if f"label_{t}" in selection_rows):
        raise ArtExtractError(f"{data} has no selection split for {', '.join(tasks)}, and ablate scores every run "
                              "on it: prepare the DATA again with --select-fraction above 0 (0.1 by default), or "
                              "cross-validate with --folds 5")


def _run_name(variant: str, seed: int, folds: int, fold: int) -> str:
    return f"{variant}-s{seed}" + (f"-f{fold}" if folds >= 2 else "")


def _variant_config(config: Config, name: str, seed: int, folds: int = 0, fold: int = 0) -> Config:
    variant = copy.deepcopy(config)
    for key, value in (variant_settings(name) or {}).items():
        section, _, field_name = key.rpartition(".")
        setattr(getattr(variant, section or "model"), field_name, value)
    variant.train.seed, variant.train.patience, variant.train.freeze_backbone = seed, 0, True
    variant.train.folds, variant.train.fold = (folds, fold) if folds >= 2 else (0, 0)
    return variant


def _pooled(features: Any, rows: np.ndarray, known: dict[int, np.ndarray]) -> np.ndarray:
    """The global-average-pooled maps of cache `rows`, each computed once into `known`."""
    missing = np.array([r for r in rows if r not in known], dtype=np.int64)
    for i in range(0, len(missing), 512):
        chunk = missing[i: i + 512]
        for row, vector in zip(chunk, features.maps[chunk].astype(np.float32).mean(axis=(2, 3)), strict=True):
            known[int(row)] = vector
    return np.stack([known[int(r)] for r in rows])


def _linear_probe(run: Path, views: list[Any], config: Config) -> dict[str, dict[str, Any]]:
    """Logistic regression on the pooled maps of the training split, scored on the selection split (with `folds`,
    on each fold in turn, C chosen on the first fold's training part and kept for the others)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from artextract.analysis.metrics import seed_mean_metrics
    from artextract.engine.data import CachedSplit

    info = views[0]
    features = features_and_model(run, info, config, final=False)[3]
    tasks = list(config.model.tasks)
    pooled = {}  # cache row -> its pooled map, computed once for every fold
    result = {}
    for column, task in enumerate(tasks):
        started = time.perf_counter()
        labels, predicted, chosen = [], [], None
        for view in views:
            train, select = CachedSplit(view, "train", tasks, features), CachedSplit(view, "select", tasks, features)
            x_train, x_select = (_pooled(features, split.cache_rows, pooled) for split in (train, select))
            labelled = train.labels[:, column] >= 0
            grid = [chosen] if chosen is not None else list(PROBE_C_GRID)
            search = GridSearchCV(make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)),
                                  {"logisticregression__C": grid}, cv=3, n_jobs=1) if len(grid) > 1 else None
            probe = search or make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=chosen))
            probe.fit(x_train[labelled], train.labels[labelled, column])
            chosen = float(search.best_params_["logisticregression__C"]) if search is not None else chosen
            labels.append(select.labels[:, column])
            predicted.append(probe.predict(x_select))
        result[task] = seed_mean_metrics(np.concatenate(labels), np.concatenate(predicted)[None],
                                         len(info.classes[task])) | {
            "C": chosen, "trainable_parameters": int(x_train.shape[1] + 1) * len(info.classes[task]),
            "seconds_per_run": (time.perf_counter() - started) / len(views)}
    return result


def _headline(figures: dict[str, dict[str, Any]]) -> str:
    return "; ".join(f"{task} acc {f['accuracy']:.3f} macro-F1 {f['macro_f1']:.3f}" for task, f in figures.items())
