"""Scoring the selection set during training: every image exactly once, on every process, the same decision.

Each process scores rows rank, rank + world, ... through the shared inference loop; the shares are padded to one
length for the gather and the padding (row -1) dropped after it, so no image is counted twice (the bias
torchvision's references warn about with distributed samplers).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from sklearn.metrics import accuracy_score, f1_score
from torch import nn

from artextract.core.progress import log
from artextract.engine.data import CachedSplit
from artextract.engine.inference import forward_batches
from artextract.engine.loss import per_image_losses
from artextract.engine.preprocessing import Preprocessing
from artextract.engine.runtime import Runtime


@torch.no_grad()
def evaluate_split(fabric: Any, model: nn.Module, dataset: CachedSplit, preprocessing: Preprocessing,
                   runtime: Runtime, batch_size: int) -> dict[str, np.ndarray]:
    """`row`, `loss` (N x tasks, 0 where unlabelled), `pred_<task>` and `logits_<task>` for every image of
    `dataset`."""
    rows = np.arange(len(dataset))[fabric.global_rank::fabric.world_size]
    per_rank = math.ceil(len(dataset) / fabric.world_size)
    tasks = dataset.tasks
    read: list[tuple[torch.Tensor, torch.Tensor]] = []  # (labels, rows) of the batch being scored

    def images() -> Iterator[torch.Tensor]:
        for start in range(0, len(rows), batch_size):
            batch, labels, picked = dataset[rows[start: start + batch_size]]
            read.append((labels.to(fabric.device), picked.to(fabric.device)))
            yield batch

    outputs: dict[str, list[torch.Tensor]] = ({"row": [], "loss": []} | {f"pred_{t}": [] for t in tasks}
                                              | {f"logits_{t}": [] for t in tasks})
    for out in forward_batches(model, images(), preprocessing, runtime, fabric.device, dataset.from_features):
        labels, picked = read.pop()  # the loop takes one batch, then yields its outputs
        logits = {t: v.float() for t, v in out["logits"].items()}
        for task in tasks:
            outputs[f"pred_{task}"].append(logits[task].argmax(dim=1))
            outputs[f"logits_{task}"].append(logits[task])
        outputs["loss"].append(per_image_losses(logits, labels, tasks))  # plain: no class weights, no smoothing
        outputs["row"].append(picked)
    gathered = {}
    widths = {"loss": len(tasks)} | {f"logits_{t}": model.heads[t].out_features for t in tasks}
    for key, parts in outputs.items():
        width = (widths[key],) if key in widths else ()
        dtype = torch.float32 if key in widths else torch.int64
        local = torch.cat(parts) if parts else torch.empty((0, *width), dtype=dtype, device=fabric.device)
        padded = torch.full((per_rank, *width), -1, dtype=local.dtype, device=fabric.device)
        padded[: len(local)] = local
        gathered[key] = fabric.all_gather(padded).reshape(-1, *width).cpu().numpy()
    keep = gathered["row"] >= 0
    order = np.argsort(gathered["row"][keep], kind="stable")
    return {key: value[keep][order] for key, value in gathered.items()}


def task_metrics(labels: np.ndarray, predictions: np.ndarray) -> dict[str, float]:
    """Accuracy and macro-F1 over the images that carry a label (label >= 0)."""
    labelled = labels >= 0
    if not labelled.any():
        return {"acc": float("nan"), "macro_f1": float("nan")}
    y_true, y_pred = labels[labelled], predictions[labelled]
    return {"acc": float(accuracy_score(y_true, y_pred)),
            "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0))}


def selection_metrics(dataset: CachedSplit, predicted: dict[str, np.ndarray]) -> dict[str, float]:
    """Per task `select_acc_<task>`, `select_macro_f1_<task>`; `select_loss`; `score` = mean macro-F1.

    `select_loss` is the training loss's function (engine/loss.py) without class weights or label smoothing: the
    plain cross-entropy, summed over tasks of each task's mean, so that runs with other loss settings compare."""
    rows = predicted["row"]
    assert len(np.unique(rows)) == len(rows) == len(dataset), "every selection image scored exactly once"
    labels = dataset.labels[rows]
    metrics: dict[str, float] = {}
    losses = []
    for column, task in enumerate(dataset.tasks):
        labelled = labels[:, column] >= 0
        for name, value in task_metrics(labels[:, column], predicted[f"pred_{task}"]).items():
            metrics[f"select_{name}_{task}"] = value
        if labelled.any():
            losses.append(predicted["loss"][labelled, column].mean())
    metrics["select_loss"] = float(np.sum(losses)) if losses else float("nan")
    f1s = [metrics[f"select_macro_f1_{t}"] for t in dataset.tasks if not math.isnan(metrics[f"select_macro_f1_{t}"])]
    metrics["score"] = float(np.mean(f1s)) if f1s else float("nan")
    return metrics


# Open-set: the share of the selection set's paintings (all by known classes) a task's threshold accepts; a new
# painting whose top calibrated probability falls below it is flagged "unknown" (e.g. a painter outside the classes).
OPEN_SET_ACCEPT = 0.95


@dataclass
class Calibration:
    """What the selection set fits for the model file: per task, the temperature and the open-set threshold."""

    temperature: dict[str, float]
    unknown_below: dict[str, float]


def calibrate(dataset: CachedSplit, predicted: dict[str, np.ndarray], noted: set[str] | None = None) -> Calibration:
    """Temperatures (see `fit_temperatures`), then per task the top calibrated probability that OPEN_SET_ACCEPT of
    the selection paintings reach: below it a painting looks like none of the classes seen in training."""
    from artextract.analysis.probabilities import softmax

    temperatures = fit_temperatures(dataset, predicted, noted)
    labels = dataset.labels[predicted["row"]]
    thresholds = {}
    for column, task in enumerate(dataset.tasks):
        labelled = labels[:, column] >= 0
        if labelled.any():
            top = softmax(predicted[f"logits_{task}"][labelled], temperatures[task]).max(axis=1)
            thresholds[task] = float(np.quantile(top, 1 - OPEN_SET_ACCEPT, method="lower"))  # at least 95 % pass
    return Calibration(temperatures, thresholds)


def fit_temperatures(dataset: CachedSplit, predicted: dict[str, np.ndarray],
                     noted: set[str] | None = None) -> dict[str, float]:
    """Per task, the temperature that minimises the selection logits' negative log-likelihood (the file's
    calibration); says so when it raises the selection set's binned calibration error (a fit on a handful of
    images can), once per task of `noted` (the run's: not again at every better epoch)."""
    from artextract.analysis.calibration import fit_temperature, reliability
    from artextract.analysis.probabilities import softmax

    labels = dataset.labels[predicted["row"]]
    temperatures = {}
    for column, task in enumerate(dataset.tasks):
        labelled = labels[:, column] >= 0
        y, logits = labels[labelled, column], predicted[f"logits_{task}"][labelled]
        temperatures[task] = temperature = fit_temperature(logits, y)
        before, after = reliability(y, softmax(logits))["ece"], reliability(y, softmax(logits, temperature))["ece"]
        if after > before and task not in (noted if noted is not None else set()):
            if noted is not None:
                noted.add(task)
            log.info("%s: temperature %.3f raises the selection set's calibration error (%.3f -> %.3f, %d images)",
                     task, temperature, before, after, len(y))
    return temperatures
