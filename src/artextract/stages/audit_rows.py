"""The rows of one task's label audit: every labelled training painting, plus each copy of a duplicate painting
whose copies disagree on the task (prepare left that painting unlabelled there; each copy's label is judged
against the kept copy's out-of-fold prediction, so the reviewer sees both labels of one painting side by side)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from artextract.analysis.evaluation import stack
from artextract.analysis.label_issues import HEADLINE, detection, nearest_of_suggested, rank_label_issues
from artextract.core.progress import log


@dataclass
class TaskAudit:
    frame: pd.DataFrame  # the ranked label issues (label_issues_<task>.csv)
    quota: int  # how many are flagged: Confident Learning's estimate of the wrong labels
    detection: dict[str, Any] | None = None  # with injected noise: how well each score found the flips


def rank_with_copies(task: str, oof: pd.DataFrame, info: Any, seed: int, rank_by: str = HEADLINE) -> TaskAudit:
    names = info.classes[task]
    pool = oof[oof[f"label_{task}"] >= 0]
    copies = _conflicting_copies(task, oof, info)
    paths = np.concatenate([pool["path"].to_numpy(dtype=object), copies["path"].to_numpy(dtype=object)])
    labels = np.concatenate([pool[f"label_{task}"].to_numpy(np.int64), copies["label"].to_numpy(np.int64)])
    logits = np.vstack([stack(pool[f"logits_{task}"]), *([stack(copies["logits"])] if len(copies) else [])])
    embeddings = np.vstack([stack(pool["embedding"]), *([stack(copies["embedding"])] if len(copies) else [])])
    others = {other: np.concatenate([pool[f"label_{other}"].to_numpy(np.int64), copies[f"label_{other}"].to_numpy(
        np.int64)]) for other in info.classes if other != task and f"label_{other}" in oof.columns}
    counted = np.arange(len(paths)) < len(pool)
    frame, quota = rank_label_issues(task, paths, labels, logits, embeddings, names, others, counted, seed=seed,
                                     rank_by=rank_by)
    copy_group = dict(zip(copies["path"], copies["group"], strict=True))
    frame["copy_of_group"] = frame["path"].map(copy_group).fillna(-1).astype(int)
    group_of = dict(zip(oof["path"], oof["duplicate_group"], strict=True))
    frame["duplicate_group"] = frame["path"].map(group_of).fillna(frame["copy_of_group"]).astype(int)
    frame["cache_index"] = frame["path"].map(dict(zip(oof["path"], oof["cache_index"], strict=True))
                                             | dict(zip(copies["path"], copies["cache_index"], strict=True)))
    frame["nearest_of_suggested"] = nearest_of_suggested(frame, dict(zip(paths, embeddings, strict=True)))
    result = TaskAudit(frame, quota)
    if f"flipped_{task}" in oof.columns:
        flipped = dict(zip(pool["path"], pool[f"flipped_{task}"], strict=True))
        true = dict(zip(pool["path"], pool[f"true_{task}"], strict=True))
        frame["injected"] = frame["path"].map(flipped).fillna(False).astype(bool)
        frame["true_label_name"] = [names[int(t)] if t >= 0 else "" for t in frame["path"].map(true).fillna(-1)]
        scored = frame[frame["copy_of_group"] < 0]  # the flip experiment is about the pooled paintings
        result.detection = detection(scored, scored["injected"].to_numpy(), quota, seed)
    return result


def _conflicting_copies(task: str, oof: pd.DataFrame, info: Any) -> pd.DataFrame:
    """One row per copy of a duplicate painting whose copies disagree on `task`: its label, and the kept copy's
    out-of-fold logits and embedding."""
    others = [f"label_{t}" for t in info.classes if t != task and f"label_{t}" in oof.columns]
    columns = ["path", "group", "label", "logits", "embedding", "cache_index", *others]
    listing = info.folder.duplicates_csv
    if not listing.is_file():
        return pd.DataFrame(columns=columns)
    try:
        table = pd.read_csv(listing, dtype=str, keep_default_na=False)
    except (OSError, ValueError) as err:
        log.warning("audit: %s is unreadable (%s); duplicate paintings are left out of the audit (rerun "
                    "artextract prepare to write it again)", listing, err)
        return pd.DataFrame(columns=columns)
    if table.empty or not {task, "group", "kept", "conflicting_tasks"} <= set(table.columns):
        return pd.DataFrame(columns=columns)
    conflicting = table[table["conflicting_tasks"].str.split().map(lambda tasks: task in tasks)]
    index = {name: i for i, name in enumerate(info.classes[task])}
    by_path = oof.set_index("path")
    cache_of = dict(zip(info.manifest["path"], info.manifest["cache_index"], strict=True))
    rows = []
    for group, copies in conflicting.groupby("group"):
        kept = copies.loc[copies["kept"].str.lower() == "true", "path"]
        if kept.empty or kept.iloc[0] not in by_path.index:
            continue  # the painting is not among the pooled training paintings (a val painting)
        source = by_path.loc[kept.iloc[0]]
        for path, label in zip(copies["path"], copies[task], strict=True):
            if label in index:
                rows.append({"path": path, "group": int(group), "label": index[label],
                             "logits": source[f"logits_{task}"], "embedding": source["embedding"],
                             "cache_index": int(cache_of.get(path, -1)),
                             **{column: int(source[column]) for column in others}})
    return pd.DataFrame(rows, columns=columns)
