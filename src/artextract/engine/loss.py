"""Masked multi-task cross-entropy: label -1 means "no label for this task" and contributes nothing."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def inverse_frequency(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """1 / (images of the class) per class among the labelled images (label >= 0); 0 for absent classes."""
    counts = np.bincount(labels[labels >= 0], minlength=num_classes).astype(np.float64)
    return np.where(counts > 0, 1.0 / np.maximum(counts, 1), 0.0)


def class_weights(labels: np.ndarray, num_classes: int) -> torch.Tensor:
    """Inverse-frequency loss weights (mean 1 over the classes present); absent classes get weight 0."""
    weights = inverse_frequency(labels, num_classes)
    present = weights > 0
    if present.any():
        weights[present] *= present.sum() / weights[present].sum()
    return torch.tensor(weights, dtype=torch.float32)


def per_image_losses(logits: dict[str, torch.Tensor], labels: torch.Tensor, tasks: list[str],
                     weights: dict[str, torch.Tensor] | None = None,
                     label_smoothing: float = 0.0) -> torch.Tensor:
    """N x tasks cross-entropy of each image (times its class weight, if any), 0 where the image has no label
    for the task (label -1)."""
    columns = []
    for column, task in enumerate(tasks):
        target = labels[:, column]
        weight = None if weights is None else weights[task].to(labels.device)
        losses = F.cross_entropy(logits[task].float(), target.clamp(min=0), reduction="none", weight=weight,
                                 label_smoothing=label_smoothing)
        columns.append(losses * (target >= 0))
    return torch.stack(columns, dim=1)


def masked_multitask_loss(logits: dict[str, torch.Tensor], labels: torch.Tensor, tasks: list[str],
                          weights: dict[str, torch.Tensor] | None = None,
                          label_smoothing: float = 0.0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Sum over tasks of the mean cross-entropy over the images labelled for that task (the weighted mean with
    class weights).

    A task with no label in the batch contributes an exact zero that is still part of the graph, so every head
    takes part in the backward pass (distributed training requires it).
    """
    total = torch.zeros((), device=labels.device)
    per_task = {}
    losses = per_image_losses(logits, labels, tasks, weights, label_smoothing)
    for column, task in enumerate(tasks):
        target = labels[:, column]
        mask = target >= 0
        weight = None if weights is None else weights[task].to(labels.device)
        # The weighted mean, as F.cross_entropy(weight=...) defines it: divided by the labelled images' weights.
        norm = mask.sum().float() if weight is None else (weight[target.clamp(min=0)] * mask).sum()
        task_loss = losses[:, column].sum() / norm.clamp(min=1e-12)
        per_task[task] = task_loss.detach()
        total = total + task_loss
    return total, per_task
