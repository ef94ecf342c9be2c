"""The one inference loop: batches in, the model's outputs out. Selection during training, `evaluate`, `predict`
and the frozen-backbone feature cache all run their model through `forward_batches`."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from artextract.core.progress import Progress
from artextract.engine.preprocessing import Preprocessing
from artextract.engine.runtime import Runtime


@torch.no_grad()
def forward_batches(model: nn.Module, batches: Iterable[torch.Tensor], preprocessing: Preprocessing,
                    runtime: Runtime, device: torch.device | None = None,
                    from_features: bool = False) -> Iterator[Any]:
    """The model's output for each batch, on `device` (default: the runtime's), under the runtime's autocast.

    Batches are uint8 N x S x S x 3 squares (shown to the model through the evaluation view), or with
    `from_features` cached feature maps. The model must already be on `device`; it runs in eval mode and is put
    back into train mode afterwards if it was training. A classifier's output is `{"logits": {task: N x C},
    "embedding": N x D, ...}`, a backbone's the N x C x H x W map, both in the autocast dtype.
    """
    device = device or runtime.device
    was_training = model.training
    model.eval()
    try:
        for batch in batches:
            batch = batch.to(device, non_blocking=True)
            with runtime.autocast(device):
                if from_features:
                    yield model(batch.float(), from_features=True)
                else:
                    yield model(preprocessing.eval_view(batch, runtime.channels_last))
    finally:
        model.train(was_training)


def run_model(model: nn.Module, batches: Iterable[torch.Tensor], total: int, preprocessing: Preprocessing,
              runtime: Runtime, desc: str = "predict", progress: bool = True,
              from_features: bool = False) -> dict[str, np.ndarray]:
    """`logits_<task>` (N x C) and `embedding` (N x D) as numpy arrays for all `total` images (or cached maps,
    with `from_features`) of `batches`."""
    parts: dict[str, list[np.ndarray]] = {}
    with Progress(total, desc, enabled=progress) as bar:
        for out in forward_batches(model, batches, preprocessing, runtime, from_features=from_features):
            for task, logits in out["logits"].items():
                parts.setdefault(f"logits_{task}", []).append(logits.float().cpu().numpy())
            parts.setdefault("embedding", []).append(out["embedding"].float().cpu().numpy())
            bar.update(len(out["embedding"]))
    return {key: np.concatenate(value) for key, value in parts.items()}


def map_shape(module: nn.Module, preprocessing: Preprocessing, runtime: Runtime,
              device: torch.device) -> tuple[int, int, int]:
    """(channels, height, width) of what `module` (a backbone, or the frozen part of one) makes of one evaluation
    view: the shape of a feature cache's rows, and the grid a reader reads."""
    probe = torch.zeros(1, preprocessing.cache_size, preprocessing.cache_size, 3, dtype=torch.uint8)
    with contextlib.closing(forward_batches(module, [probe], preprocessing, runtime, device)) as outputs:
        out = next(outputs)
    return tuple(int(d) for d in out.shape[1:])  # type: ignore[return-value]
