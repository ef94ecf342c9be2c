"""K-fold cross-validation over the training paintings (the train and selection splits pooled).

A selection set of a few hundred paintings cannot show a 2-point difference between two models (docs/real-data.md,
"What the selection set can detect"). With `train.folds: K`, a run trains on K-1 folds and takes the remaining
one as its selection split; K runs together score every training painting once, by the model that did not see it.
The folds depend only on the manifest (seed FOLD_SEED), never on the training seed: every variant and every seed
of an ablation is scored on the same paintings, so they can be paired. The eval split is never touched.
"""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd

from artextract.config import TASKS
from artextract.core.progress import log
from artextract.engine.data import DataInfo

FOLD_SEED = 0
_POOLED = ("train", "select")


def fold_of_rows(manifest: pd.DataFrame, folds: int) -> np.ndarray:
    """Per manifest row, its fold in [0, folds), or -1 for rows outside the pooled splits or not usable. Each
    stratum (the first labelled task's class) is shuffled and dealt round-robin, so every fold holds about 1/K of
    each class."""
    pooled = (manifest["split"].astype(str).isin(_POOLED) & (manifest["status"].astype(str) == "ok")).to_numpy()
    strata = np.full(len(manifest), "", dtype=object)
    unassigned = np.ones(len(manifest), dtype=bool)
    for task in TASKS:  # stratified by the first labelled task, as prepare does
        column = f"label_{task}"
        if column in manifest.columns:
            labels = manifest[column].to_numpy()
            hit = unassigned & (labels >= 0)
            strata[hit] = [f"{task}:{label}" for label in labels[hit]]
            unassigned &= ~hit
    order = np.argsort(manifest["path"].astype(str).to_numpy(), kind="stable")  # independent of the row order
    fold = np.full(len(manifest), -1, dtype=np.int64)
    rng = np.random.default_rng(FOLD_SEED)
    dealt = 0  # carries on across strata so that the small classes' remainders do not all land in fold 0
    for stratum in sorted(set(strata[pooled])):
        members = order[(strata[order] == stratum) & pooled[order]]
        members = members[rng.permutation(len(members))]
        fold[members] = (np.arange(len(members)) + dealt) % folds
        dealt += len(members)
    return fold


def fold_view(info: DataInfo, folds: int, fold: int) -> DataInfo:
    """DATA as a run of fold `fold` of `folds` sees it: that fold is the selection split, the other folds the
    training split; folds < 2 returns `info` unchanged (the selection split prepare carved)."""
    if folds < 2:
        return info
    if not 0 <= fold < folds:
        raise ValueError(f"fold {fold} is outside 0..{folds - 1}")
    assignment = fold_of_rows(info.manifest, folds)
    manifest = info.manifest.copy()
    split = manifest["split"].astype(str).to_numpy(dtype=object)
    split[assignment >= 0] = "train"
    split[assignment == fold] = "select"
    manifest["split"] = split
    view = copy.copy(info)
    view.manifest = manifest
    return view


def run_fold_view(info: DataInfo, run_info: dict[str, object]) -> DataInfo:
    """DATA as the run recorded in `run_info` (its run.json) saw it: a cross-validation run's selection split is
    its own held-out fold, not the one prepare carved (which it trained on)."""
    recorded = run_info.get("folds")
    if not recorded:
        return info
    folds, fold = (int(v) for v in recorded)  # type: ignore[union-attr]
    log.info("the run trained on %d of %d cross-validation folds: its selection split is fold %d", folds - 1, folds,
             fold)
    return fold_view(info, folds, fold)
