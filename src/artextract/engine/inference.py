"""Running a trained model over cached images: logits, top-k and embeddings per image, batched, bf16 on GPU."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from artextract.core.progress import Progress
from artextract.engine.data import center_view


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        from artextract.errors import ArtExtractError

        raise ArtExtractError("--device cuda asked for, but no CUDA device is visible; use --device cpu")
    return torch.device(name)


def autocast_for(device: torch.device) -> contextlib.AbstractContextManager[Any]:
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()


@torch.no_grad()
def run_model(model: nn.Module, batches: Iterator[torch.Tensor], total: int, image_size: int, cache_size: int,
              mean: Sequence[float], std: Sequence[float], device: torch.device,
              desc: str = "predict") -> dict[str, np.ndarray]:
    """Logits per task (N x C, float32) and embeddings (N x D) for uint8 N x S x S x 3 batches."""
    model = model.to(device).eval()
    channels_last = device.type == "cuda"
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    mean_t, std_t = torch.tensor(mean, dtype=torch.float32), torch.tensor(std, dtype=torch.float32)
    parts: dict[str, list[np.ndarray]] = {}
    with Progress(total, desc) as progress:
        for batch in batches:
            images = center_view(batch.to(device, non_blocking=True), image_size, cache_size, mean_t, std_t,
                                 channels_last)
            with autocast_for(device):
                out = model(images)
            for task, logits in out["logits"].items():
                parts.setdefault(f"logits_{task}", []).append(logits.float().cpu().numpy())
            parts.setdefault("embedding", []).append(out["embedding"].float().cpu().numpy())
            progress.update(len(batch))
    return {key: np.concatenate(value) for key, value in parts.items()}


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    scaled = logits / temperature
    scaled = scaled - scaled.max(axis=1, keepdims=True)
    exp = np.exp(scaled)
    return exp / exp.sum(axis=1, keepdims=True)


def top_k(probabilities: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(indices, probabilities) of the k most probable classes, most probable first."""
    k = min(k, probabilities.shape[1])
    indices = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
    return indices, np.take_along_axis(probabilities, indices, axis=1)
