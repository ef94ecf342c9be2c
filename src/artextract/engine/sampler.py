"""Which cached rows each process reads in each epoch, and the loader that reads them.

Batches are drawn from a permutation seeded by (seed, epoch), so a resumed run reads exactly the batches an
uninterrupted one would have, and dealt out by rank, so processes never read the same image in an epoch.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from artextract.core.processes import become_worker
from artextract.engine.data import CachedSplit
from artextract.engine.loss import inverse_frequency


def batch_indices(size: int, batch_size: int, epoch: int, seed: int, rank: int = 0, world: int = 1,
                  shuffle: bool = True, weights: np.ndarray | None = None, drop_last: bool = True) -> list[np.ndarray]:
    """This process's batches for one epoch: a seeded permutation (or weighted draw), dealt out by rank.

    Training drops the incomplete tail so that every process takes the same number of steps.
    """
    rng = np.random.default_rng([seed, epoch])
    if weights is not None:
        order = rng.choice(size, size=size, replace=True, p=weights / weights.sum())
    else:
        order = rng.permutation(size) if shuffle else np.arange(size)
    mine = order[rank::world]
    if drop_last:
        per_rank = size // world
        mine = mine[: per_rank - per_rank % batch_size] if per_rank >= batch_size else mine[:per_rank]
        if len(mine) == 0:
            return []
    return [mine[i: i + batch_size] for i in range(0, len(mine), batch_size)]


def balanced_weights(dataset: CachedSplit) -> np.ndarray:
    """Per image, a draw probability under which every task has the same total weight and, within a task, every
    class is equally likely; an image counts for each task it is labelled for, so none is left out (an image
    without an artist label is still drawn for its style and genre)."""
    weights = np.zeros(len(dataset))
    for column in range(dataset.labels.shape[1]):
        labels = dataset.labels[:, column]
        if not (labels >= 0).any():
            continue
        per_class = inverse_frequency(labels, int(labels.max()) + 1)
        task_weights = np.where(labels >= 0, per_class[np.maximum(labels, 0)], 0.0)
        weights += task_weights / task_weights.sum()
    return weights / weights.sum()


class EpochSampler:
    """Yields this process's batches of the current epoch; `set_epoch` before iterating (persistent workers)."""

    def __init__(self, size: int, batch_size: int, seed: int, rank: int, world: int, max_steps: int = 0,
                 weights: np.ndarray | None = None) -> None:
        self.size, self.batch_size, self.seed, self.rank, self.world = size, batch_size, seed, rank, world
        self.max_steps, self.weights = max_steps, weights
        self.epoch, self.skip = 0, 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.epoch, self.skip = epoch, skip

    def batches(self) -> list[np.ndarray]:
        batches = batch_indices(self.size, self.batch_size, self.epoch, self.seed, self.rank, self.world,
                                weights=self.weights)
        return batches[: self.max_steps] if self.max_steps else batches

    def __iter__(self) -> Iterator[np.ndarray]:
        return iter(self.batches()[self.skip:])

    def __len__(self) -> int:
        return max(0, len(self.batches()) - self.skip)


def make_loader(dataset: CachedSplit, sampler: EpochSampler, workers: int, pin: bool) -> torch.utils.data.DataLoader:
    # Workers only copy rows and draw nothing at random; their own generator keeps the global RNG (dropout)
    # untouched, so a resumed run continues the same random stream.
    return torch.utils.data.DataLoader(dataset, batch_size=None, sampler=sampler, num_workers=workers,
                                       pin_memory=pin, persistent_workers=workers > 0,
                                       prefetch_factor=4 if workers > 0 else None,
                                       generator=torch.Generator().manual_seed(0),
                                       worker_init_fn=_worker_init if workers > 0 else None)


def _worker_init(_worker_id: int) -> None:
    # The main process alone decides what a Ctrl-C means (stop after this step, then save); a loader worker
    # that died of it would break the loader instead.
    become_worker()
