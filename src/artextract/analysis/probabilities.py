"""Probabilities from logits, in numpy: the analysis layer never needs torch."""

from __future__ import annotations

import numpy as np


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
