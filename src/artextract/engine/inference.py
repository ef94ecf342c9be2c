"""The one inference loop: uint8 batches in; logits, embeddings and attention out. Selection during training,
`evaluate` and `predict` all run the model through `forward_batches`."""

from __future__ import annotations

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
                    runtime: Runtime, device: torch.device | None = None) -> Iterator[dict[str, Any]]:
    """Per uint8 N x S x S x 3 batch: `{"logits": {task: N x C float32}, "embedding": N x D float32}` (plus
    `"attention"` for attention readers), on `device` (default: the runtime's). The model must already be
    placed there; it is put in eval mode, and back into train mode afterwards if it was training."""
    device = device or runtime.device
    was_training = model.training
    model.eval()
    try:
        for batch in batches:
            inputs = preprocessing.eval_view(batch.to(device, non_blocking=True), runtime.channels_last)
            with runtime.autocast(device):
                out = model(inputs)
            result: dict[str, Any] = {"logits": {t: v.float() for t, v in out["logits"].items()},
                                      "embedding": out["embedding"].float()}
            if "attention" in out:
                result["attention"] = out["attention"].float()
            yield result
    finally:
        model.train(was_training)


def run_model(model: nn.Module, batches: Iterable[torch.Tensor], total: int, preprocessing: Preprocessing,
              runtime: Runtime, desc: str = "predict", progress: bool = True) -> dict[str, np.ndarray]:
    """`logits_<task>` (N x C) and `embedding` (N x D) as numpy arrays for all `total` images of `batches`."""
    parts: dict[str, list[np.ndarray]] = {}
    with Progress(total, desc, enabled=progress) as bar:
        for out in forward_batches(model, batches, preprocessing, runtime):
            for task, logits in out["logits"].items():
                parts.setdefault(f"logits_{task}", []).append(logits.cpu().numpy())
            parts.setdefault("embedding", []).append(out["embedding"].cpu().numpy())
            bar.update(len(out["embedding"]))
    return {key: np.concatenate(value) for key, value in parts.items()}
