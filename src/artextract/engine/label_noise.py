"""Training labels flipped on purpose, to measure how well the label audit finds wrong labels that a model has
trained on (the case a collection's users meet), not only wrong labels it never saw.

A share of the labelled training paintings (train and selection splits) of each task gets another class: in mode
`uniform` a random class among those that have training paintings (a flip into an empty class would be found by
any score), in mode `confusion` the class the true one is most often mistaken for (the hard case: a plausible
wrong label). The flips depend only on the manifest and the seed, so every fold of an audit sees the same ones.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np

from artextract.analysis.outliers import NOISE_MODES, inject_noise
from artextract.engine.data import DataInfo

POOLED = ("train", "select")


@dataclass(frozen=True)
class LabelNoise:
    fraction: float
    mode: str = "uniform"
    seed: int = 0
    # mode "confusion": per task, the class each true class is most often mistaken for (analysis/outliers.py's
    # most_confused on a clean audit's out-of-fold predictions)
    confused_with: dict[str, list[int]] | None = None

    def __post_init__(self) -> None:
        if self.mode not in NOISE_MODES:
            raise ValueError(f"noise mode {self.mode!r} is not one of {', '.join(NOISE_MODES)}")
        if not 0 < self.fraction < 1:
            raise ValueError(f"the share of flipped labels must lie in (0, 1), got {self.fraction}")
        if self.mode == "confusion" and not self.confused_with:
            raise ValueError("noise mode 'confusion' needs the class each class is most confused with")


def pooled_rows(info: DataInfo) -> np.ndarray:
    """Manifest rows of the usable training paintings (train and selection splits)."""
    manifest = info.manifest
    return np.flatnonzero((manifest["split"].astype(str).isin(POOLED) & (manifest["status"] == "ok")).to_numpy())


def flip_training_labels(info: DataInfo, noise: LabelNoise,
                         tasks: list[str]) -> tuple[DataInfo, dict[str, np.ndarray]]:
    """(DATA with the flipped labels, per task a manifest-long mask of the flipped rows)."""
    rows = pooled_rows(info)
    manifest = info.manifest.copy()
    flipped: dict[str, np.ndarray] = {}
    for index, task in enumerate(tasks):
        column = f"label_{task}"
        labels = manifest[column].to_numpy(np.int64)
        pooled = labels[rows]
        allowed = np.unique(pooled[pooled >= 0])
        targets = np.asarray(noise.confused_with[task]) if noise.mode == "confusion" and noise.confused_with else None
        noisy, mask = inject_noise(pooled, noise.fraction, len(info.classes[task]), [noise.seed, index],
                                   confused_with=targets, allowed=allowed)
        labels[rows] = noisy
        manifest[column] = labels.astype(manifest[column].dtype)
        flipped[task] = np.zeros(len(manifest), bool)
        flipped[task][rows[mask]] = True
    view = copy.copy(info)
    view.manifest = manifest
    return view, flipped
