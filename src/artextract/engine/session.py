"""One training process's set-up: the run state, everything it trains with (`Session`), how it is built, and
how a resumed run gets back its state. The loop itself is in engine/loop.py.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import Any

import torch

from artextract.config import Config
from artextract.core.progress import log
from artextract.engine.checkpoint import (
    load_checkpoint,
    rng_state,
    save_checkpoint,
    save_model_file,
    set_rng_state,
)
from artextract.engine.data import CachedSplit, DataInfo
from artextract.engine.features import FeatureCache, build_features
from artextract.engine.loss import class_weights
from artextract.engine.preprocessing import Preprocessing
from artextract.engine.runtime import Runtime
from artextract.engine.sampler import EpochSampler, balanced_weights
from artextract.engine.selection import Calibration
from artextract.errors import ArtExtractError, ConfigError
from artextract.layout import RunFolder
from artextract.models import ConvRecurrentClassifier, build_model


class TrainingFault(ArtExtractError):
    """Training cannot go on (NaN loss, out of memory); the message says what was kept and what to do."""


@dataclass
class RunState:
    """Everything a resumed run needs besides the model and optimizer."""

    epoch: int = 0  # epochs completed
    step: int = 0  # optimizer steps taken
    best_score: float = -math.inf
    best_epoch: int = 0
    bad_epochs: int = 0
    batch_in_epoch: int = 0  # batches of the current epoch already taken (a run interrupted mid-epoch)
    # Loss sums over those batches ("train_loss", "train_loss_<task>"), so that a resumed epoch's row in
    # metrics.csv averages the whole epoch, not only the part after the resume.
    epoch_loss_sums: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Session:
    """Everything one process trains with; built once by `build_session`."""

    fabric: Any  # lightning.fabric.Fabric (imported lazily: importing lightning costs seconds)
    config: Config
    data: DataInfo
    run: RunFolder
    train_set: CachedSplit
    select_set: CachedSplit
    model: torch.nn.Module  # as set up by Fabric (DDP, precision), maybe compiled
    raw_model: ConvRecurrentClassifier  # the same parameters, unwrapped: for evaluation and saving
    optimizer: torch.optim.Optimizer  # Fabric's wrapper, which behaves as one
    scheduler: torch.optim.lr_scheduler.LRScheduler
    sampler: EpochSampler
    preprocessing: Preprocessing
    runtime: Runtime
    class_weights: dict[str, torch.Tensor] | None
    features: FeatureCache | None  # the frozen backbone's maps, for the frozen epochs
    state: RunState = field(default_factory=RunState)
    calibration_noted: set[str] = field(default_factory=set)  # tasks whose temperature caveat was logged this run

    @property
    def tasks(self) -> list[str]:
        return list(self.config.model.tasks)

    def frozen(self, epoch: int) -> bool:
        """Whether epoch `epoch` (0-based) trains the reader and heads alone, from the feature cache."""
        return frozen_at(self.config, epoch)

    def split(self, name: str, epoch: int) -> CachedSplit:
        """The train or select split as epoch `epoch` reads it: feature maps when frozen, images otherwise."""
        split = self.train_set if name == "train" else self.select_set
        return split.with_features(self.features if self.frozen(epoch) else None)

    def set_backbone_trainable(self, trainable: bool) -> None:
        self.raw_model.backbone.set_frozen(not trainable)  # frozen: the tuned stages, if any, still train

    @cached_property
    def trained_on_synthetic(self) -> bool:
        """Whether DATA holds `artextract synth` output (read once: the prepare report is 22 MB on the real CSVs)."""
        return self.data.folder.synthetic()

    def checkpoint(self) -> dict[str, Any]:
        """What last.pt holds: model, optimizer, scheduler, run state and every random generator's state."""
        return {"model": {k: v.detach().cpu().clone() for k, v in self.raw_model.state_dict().items()},
                "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "state": asdict(self.state), "rng": rng_state()}

    def save_epoch(self, improved: bool, calibration: Calibration | None = None) -> None:
        """Rank 0 writes last.pt and metrics.csv every epoch, model.safetensors (with the temperatures and open-set
        thresholds fitted on the selection set: engine/selection.Calibration) when the selection score improved;
        every process waits for it."""
        import pandas as pd

        from artextract.core.atomic import write_with

        if self.fabric.is_global_zero:
            if improved:
                save_model_file(self.run.model, self.raw_model, {t: self.data.classes[t] for t in self.tasks},
                                self.config.model, self.preprocessing,
                                calibration.temperature if calibration else None,
                                synthetic=self.trained_on_synthetic,
                                unknown_below=calibration.unknown_below if calibration else None)
            save_checkpoint(self.run.last, self.checkpoint())
            history = pd.DataFrame(self.state.history)
            write_with(self.run.metrics, lambda tmp: history.to_csv(tmp, index=False, float_format="%.6g"))
        self.fabric.barrier()


def frozen_at(config: Config, epoch: int) -> bool:
    """Whether epoch `epoch` (0-based) of a run with `config` keeps the backbone frozen."""
    return config.train.freeze_backbone or epoch < config.train.frozen_epochs


def _lr_lambda(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def build_session(fabric: Any, runtime: Runtime, data: DataInfo, run: RunFolder, config: Config) -> Session:
    train_cfg, tasks = config.train, list(config.model.tasks)
    fabric.seed_everything(train_cfg.seed, verbose=False)
    train_set = CachedSplit(data, "train", tasks)
    if len(train_set) < train_cfg.batch_size * fabric.world_size:
        raise ConfigError(f"the training split has {len(train_set)} images, fewer than one batch of "
                          f"{train_cfg.batch_size} per device; lower --batch-size")
    model = runtime.place(build_model(config.model, data.classes), fabric.device)
    preprocessing = Preprocessing(data.cache_size, train_cfg.image_size, model.backbone.mean, model.backbone.std)
    starts_frozen = frozen_at(config, 0)
    if train_cfg.frozen_epochs and not train_cfg.freeze_backbone and fabric.world_size > 1:
        raise ConfigError("train.frozen_epochs (frozen, then fine-tuned) runs on one device only: DDP cannot start "
                          "synchronising the backbone mid-run. Use train.freeze_backbone, or one device")
    features = _features(fabric, model, config, data, preprocessing, runtime) if starts_frozen else None
    weights = ({t: class_weights(train_set.labels[:, c], len(data.classes[t])) for c, t in enumerate(tasks)}
               if train_cfg.class_weights else None)
    sampler = EpochSampler(len(train_set), train_cfg.batch_size, train_cfg.seed, fabric.global_rank,
                           fabric.world_size, train_cfg.max_steps_per_epoch,
                           balanced_weights(train_set) if train_cfg.balanced_sampling else None)
    steps = len(sampler.batches())
    backbone = list(model.backbone.parameters())
    in_backbone = {id(p) for p in backbone}
    others = [p for p in model.parameters() if id(p) not in in_backbone]
    # Backbone first: the order of model.parameters(), which gradient clipping sums the norm in.
    groups = [{"params": backbone, "lr": train_cfg.lr * train_cfg.backbone_lr_scale}, {"params": others}]
    optimizer = torch.optim.AdamW(groups, lr=train_cfg.lr, weight_decay=train_cfg.weight_decay)
    if starts_frozen:  # before Fabric wraps the model, so DDP leaves the frozen parameters out
        model.backbone.set_frozen(True)
    warmup = max(1, round(train_cfg.warmup_epochs * steps))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(train_cfg.epochs * steps, warmup))
    wrapped, optimizer = fabric.setup(torch.compile(model) if train_cfg.compile else model, optimizer)
    return Session(fabric=fabric, config=config, data=data, run=run, train_set=train_set,
                   select_set=CachedSplit(data, "select", tasks), model=wrapped, raw_model=model,
                   optimizer=optimizer, scheduler=scheduler, sampler=sampler, preprocessing=preprocessing,
                   runtime=runtime, class_weights=weights, features=features)


def _features(fabric: Any, model: ConvRecurrentClassifier, config: Config, data: DataInfo,
              preprocessing: Preprocessing, runtime: Runtime) -> FeatureCache:
    """The backbone's feature cache: rank 0 computes what is missing while the others wait, then all open it."""
    def build() -> FeatureCache:
        return build_features(data, model.backbone, config.model.backbone, preprocessing, runtime, fabric.device,
                              config.train.batch_size)

    built = build() if fabric.is_global_zero else None
    fabric.barrier()
    return built if built is not None else build()  # the others find every map there and only open it


def training_fault(message: str, run: RunFolder, state: RunState) -> TrainingFault:
    kept = (f"the last good checkpoint is {run.last} (epoch {state.epoch}); resume from it with --resume"
            if run.last.exists() else "no epoch had completed, so nothing was kept")
    return TrainingFault(f"{message}; {kept}")


def resume_from_last(session: Session) -> None:
    checkpoint = load_checkpoint(session.run.last)
    session.raw_model.load_state_dict(checkpoint["model"])
    session.optimizer.load_state_dict(checkpoint["optimizer"])
    session.scheduler.load_state_dict(checkpoint["scheduler"])
    session.state = RunState(**checkpoint["state"])
    set_rng_state(checkpoint["rng"])
    log.info("resuming %s after epoch %d (step %d)", session.run.root, session.state.epoch, session.state.step)
