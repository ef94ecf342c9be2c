"""The training loop, on Lightning Fabric, written to read like plain PyTorch.

One process per device (Fabric launches them, or torchrun / SLURM did). Every process builds the same model,
reads its own share of each epoch's batches, and computes the selection metrics over the gathered predictions,
so all processes take the same early-stopping decision; only rank 0 writes files.
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from artextract.config import Config
from artextract.core.atomic import write_with
from artextract.core.progress import Progress, log
from artextract.engine.checkpoint import load_checkpoint, rng_state, save_checkpoint, save_model_file, set_rng_state
from artextract.engine.data import CachedSplit, DataInfo
from artextract.engine.features import FeatureCache, build_features
from artextract.engine.loss import class_weights, masked_multitask_loss
from artextract.engine.preprocessing import Preprocessing
from artextract.engine.runtime import Runtime, cpu_threads_for
from artextract.engine.sampler import EpochSampler, balanced_weights, make_loader
from artextract.engine.selection import evaluate_split, fit_temperatures, selection_metrics
from artextract.errors import ArtExtractError, ConfigError
from artextract.layout import RunFolder
from artextract.models import ConvRecurrentClassifier, build_model
from artextract.models.readers import describe_reader, reader_kind


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
class FitResult:
    state: RunState
    stopped_early: bool
    interrupted: bool


@dataclass
class Session:
    """Everything one process trains with; built once by `build_session`."""

    fabric: Any
    config: Config
    data: DataInfo
    run: RunFolder
    train_set: CachedSplit
    select_set: CachedSplit
    model: Any  # as set up by Fabric (DDP, precision), maybe compiled
    raw_model: ConvRecurrentClassifier  # the same parameters, unwrapped: for evaluation and saving
    optimizer: Any
    scheduler: Any
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


def describe(session: Session) -> list[str]:
    """The start-up summary: what is trained, on what, how; plus warnings about settings that defeat the model."""
    config, fabric, model = session.config, session.fabric, session.raw_model
    m, t = config.model, config.train
    total = sum(p.numel() for p in model.parameters())
    reader_and_heads = sum(p.numel() for name, p in model.named_parameters() if not name.startswith("backbone."))
    tuned = sum(p.numel() for p in model.backbone.tuned_parameters())
    trained = reader_and_heads + tuned if t.freeze_backbone else total
    reader = describe_reader(m)
    frozen_plan = (f"backbone frozen but its last {m.tuned_stages} stages: they, the reader and the heads train "
                   "from the maps entering them in DATA/features/" if m.tuned_stages else
                   "backbone frozen: reader and heads train from DATA/features/")
    plan = (frozen_plan if t.freeze_backbone else
            f"{t.frozen_epochs} frozen epochs from DATA/features/, then fine-tuning" if t.frozen_epochs else
            "whole network trained from the images")
    lines = [f"model: {m.backbone} ({m.weights} weights) + {reader}; tasks {', '.join(m.tasks)}; "
             f"{total:,} parameters ({trained:,} trained); {plan}",
             f"device: {fabric.device} x {fabric.world_size}, precision {session.runtime.precision}, "
             f"channels_last {session.runtime.channels_last}",
             f"images: {len(session.train_set):,} train / {len(session.select_set):,} select; "
             f"{len(session.sampler)} steps of {t.batch_size} per epoch; {t.image_size} px input from a "
             f"{session.preprocessing.cache_size} px cache, normalised with mean "
             f"{_rounded(session.preprocessing.mean)} and std {_rounded(session.preprocessing.std)} (the weights' own)"]
    return lines


def _rounded(values: tuple[float, ...]) -> str:
    return "(" + ", ".join(f"{v:.3g}" for v in values) + ")"


def warnings_for(session: Session) -> list[str]:
    """Settings that quietly defeat the model: upsampled crops, a feature grid too small to read as a sequence."""
    found = []
    cache, size = session.preprocessing.cache_size, session.preprocessing.image_size
    if size > cache:
        found.append(f"the {size} px model input is upsampled from a {cache} px cache: prepare with --image-size "
                     f"{round(size * 8 / 7)} for sharp crops")
    grid = (session.features.layout.shape[1:] if session.features is not None and not session.config.model.tuned_stages
            else _grid(session))
    if reader_kind(session.config.model.reader).sequential and grid[0] * grid[1] < 16:
        found.append(f"the backbone leaves a {grid[0]}x{grid[1]} feature grid at {size} px: the recurrent reader "
                     f"reads a sequence of only {grid[0] * grid[1]} positions; use a larger --image-size")
    return found


def _grid(session: Session) -> tuple[int, int]:
    size = session.preprocessing.image_size
    probe = torch.zeros(1, 3, size, size, device=session.fabric.device)
    model = session.raw_model.backbone
    was_training = model.training
    with torch.no_grad():
        shape = model.eval()(probe).shape
    model.train(was_training)
    return int(shape[2]), int(shape[3])


def _features(fabric: Any, model: ConvRecurrentClassifier, config: Config, data: DataInfo,
              preprocessing: Preprocessing, runtime: Runtime) -> FeatureCache:
    """The backbone's feature cache: rank 0 computes what is missing while the others wait, then all open it."""
    def build() -> FeatureCache:
        return build_features(data, model.backbone, config.model.backbone, preprocessing, runtime, fabric.device,
                              config.train.batch_size)

    built = build() if fabric.is_global_zero else None
    fabric.barrier()
    return built if built is not None else build()  # the others find every map there and only open it


def _fault(message: str, run: RunFolder, state: RunState) -> TrainingFault:
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


def select(session: Session, epoch: int) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """The selection metrics of the model as it is now (the same on every process), and the predictions."""
    select_set = session.split("select", epoch)
    predicted = evaluate_split(session.fabric, session.raw_model, select_set, session.preprocessing,
                               session.runtime, session.config.train.batch_size)
    return selection_metrics(select_set, predicted), predicted


def fit(session: Session, should_stop: Callable[[int], bool] | None = None) -> FitResult:
    """Train until the configured epochs, early stopping, Ctrl-C or `should_stop(epoch)`; saves every epoch."""
    fabric, train_cfg, state = session.fabric, session.config.train, session.state
    loaders: dict[bool, Any] = {}  # one per phase (frozen, fine-tuning), made when first needed
    interrupted = stopped_early = False
    threads = torch.get_num_threads()  # each CPU phase sets its own (_epochs); given back afterwards
    with _stop_on_first_ctrl_c() as stop, _restored_threads(threads):
        try:
            stopped_early, interrupted = _epochs(session, loaders, stop, should_stop, threads)
        except _StopAtStep:
            interrupted = True
            if fabric.is_global_zero:
                save_checkpoint(session.run.last, _checkpoint(session))
            log.warning("interrupted at step %d (epoch %d, batch %d): saved %s; continue with --resume", state.step,
                        state.epoch + 1, state.batch_in_epoch, session.run.last)
        except _AbortNow:
            kept = (f"{session.run.last} still holds the state after epoch {state.epoch}"
                    if session.run.last.exists() else "no epoch had completed")
            log.warning("second Ctrl-C: stopped at once, without saving the step in progress; %s", kept)
            raise KeyboardInterrupt from None
        except torch.cuda.OutOfMemoryError:
            raise _fault(f"batch size {train_cfg.batch_size} does not fit in GPU memory; try --batch-size "
                         f"{max(1, train_cfg.batch_size // 2)}", session.run, state) from None
    return FitResult(state, stopped_early, interrupted)


def _epochs(session: Session, loaders: dict[bool, Any], stop: _StopRequest,
            should_stop: Callable[[int], bool] | None, threads: int) -> tuple[bool, bool]:
    """The epoch loop of `fit`; returns (stopped early, interrupted)."""
    fabric, train_cfg, state = session.fabric, session.config.train, session.state
    while state.epoch < train_cfg.epochs:
        frozen = session.frozen(state.epoch)
        if frozen not in loaders:
            if not frozen and session.features is not None:
                log.info("epoch %d: unfreezing the backbone; fine-tuning from the images", state.epoch + 1)
            session.set_backbone_trainable(not frozen)
            loaders[frozen] = make_loader(session.split("train", state.epoch), session.sampler,
                                          train_cfg.workers, pin=fabric.device.type == "cuda")
        if fabric.device.type == "cpu":
            chosen = cpu_threads_for(frozen, train_cfg.cpu_threads, otherwise=threads)
            if chosen != torch.get_num_threads():
                log.info("epoch %d: %d torch thread(s)%s", state.epoch + 1, chosen,
                         " (other processes are busy on this CPU: one thread stalls far less beside them)"
                         if chosen < threads and not train_cfg.cpu_threads else "")
            torch.set_num_threads(chosen)
        session.sampler.set_epoch(state.epoch, skip=state.batch_in_epoch)
        started = time.perf_counter()
        steps_before = state.step
        epoch_losses = train_epoch(session, loaders[frozen], len(session.sampler), stop)
        seconds = time.perf_counter() - started
        images = (state.step - steps_before) * train_cfg.batch_size * fabric.world_size
        metrics, predicted = (select(session, state.epoch) if len(session.select_set)
                              else ({"score": -epoch_losses["train_loss"]}, None))
        state.epoch += 1
        state.batch_in_epoch, state.epoch_loss_sums = 0, {}
        row = {"epoch": state.epoch, "step": state.step, **epoch_losses, **metrics,
               "lr": session.scheduler.get_last_lr()[0], "images_per_s": images / seconds,
               "epoch_seconds": seconds}
        state.history.append(row)
        # A NaN score is never the best epoch, not even the first one.
        improved = not math.isnan(row["score"]) and (state.best_epoch == 0 or row["score"] > state.best_score)
        if improved:
            state.best_score, state.best_epoch, state.bad_epochs = row["score"], state.epoch, 0
        else:
            state.bad_epochs += 1
        temperatures = (fit_temperatures(session.select_set, predicted, session.calibration_noted)
                        if improved and predicted is not None else None)
        _save(session, improved, temperatures)
        log.info("epoch %d/%d: train loss %.4f, selection score %.4f%s, %.0f img/s", state.epoch,
                 train_cfg.epochs, epoch_losses["train_loss"], row["score"], " (best)" if improved else "",
                 row["images_per_s"])
        if train_cfg.patience and state.bad_epochs >= train_cfg.patience:
            log.info("early stopping: no better selection score for %d epochs (best: epoch %d)",
                     state.bad_epochs, state.best_epoch)
            return True, False
        if stop.requested:  # Ctrl-C during the selection pass or the save: the epoch is whole and saved
            log.warning("interrupted after epoch %d (saved); continue with --resume", state.epoch)
            return False, True
        if should_stop is not None and should_stop(state.epoch):
            return False, True
    return False, False


def train_epoch(session: Session, batches: Iterable[tuple[torch.Tensor, torch.Tensor, Any]],
                total: int, stop: _StopRequest | None = None) -> dict[str, float]:
    """One pass over `batches` of (uint8 images, labels, rows); returns the mean losses over the whole epoch (the
    batches taken before a resume included). Raises _StopAtStep at the step boundary after a Ctrl-C."""
    fabric, state, tasks, train_cfg = session.fabric, session.state, session.tasks, session.config.train
    from_features = session.frozen(state.epoch)
    session.model.train()
    step_losses: list[torch.Tensor] = []  # kept on the device: checking them every step would stall the GPU
    task_sums = {t: torch.zeros((), device=fabric.device) for t in tasks}
    generator = torch.Generator(device=fabric.device)
    checked = 0
    # A log line every 10 s off a terminal; the loss is read back from the device every `log_every` steps.
    progress = Progress(total, f"epoch {state.epoch + 1}/{train_cfg.epochs}", unit="step",
                        enabled=fabric.is_global_zero, also=(train_cfg.batch_size * fabric.world_size, "img"))

    def check_finite() -> None:
        """Stop on a NaN or infinite loss, naming the first bad step (all processes agree)."""
        nonlocal checked
        recent = torch.stack(step_losses[checked:]) if len(step_losses) > checked else torch.zeros(0)
        bad_positions = torch.nonzero(~torch.isfinite(recent)).flatten()
        bad = torch.tensor(float(len(bad_positions) > 0), device=fabric.device)
        if fabric.all_reduce(bad, reduce_op="sum").item() > 0:
            first = checked + (int(bad_positions[0]) if len(bad_positions) else 0)
            step = state.step - len(step_losses) + first + 1
            raise _fault(f"the loss became NaN or infinite at step {step} (epoch {state.epoch + 1}); lower the "
                         "learning rate (--set train.lr=...)", session.run, state)
        checked = len(step_losses)

    def loss_sums() -> dict[str, float]:
        """The epoch's loss sums so far, the part before a resume included."""
        earlier = state.epoch_loss_sums
        sums = {"train_loss": float(torch.stack(step_losses).sum()) if step_losses else 0.0}
        sums |= {f"train_loss_{t}": float(task_sums[t]) for t in tasks}
        return {key: value + earlier.get(key, 0.0) for key, value in sums.items()}

    with progress:
        for images, labels, _rows in batches:
            images = images.to(fabric.device, non_blocking=True)
            labels = labels.to(fabric.device, non_blocking=True)
            # One seed per (run, step): a resumed run draws the same crops and flips as an uninterrupted one.
            generator.manual_seed(train_cfg.seed * 1_000_003 + state.step)
            if from_features:  # the frozen backbone's maps of the evaluation view
                inputs = mirror_half(images.float(), generator) if train_cfg.feature_hflip else images.float()
            else:
                inputs = session.preprocessing.train_view(images, generator, train_cfg.min_crop_scale,
                                                          train_cfg.hflip, session.runtime.channels_last)
            logits = session.model(inputs, from_features=from_features)["logits"]
            loss, per_task = masked_multitask_loss(logits, labels, tasks, session.class_weights,
                                                   train_cfg.label_smoothing)
            session.optimizer.zero_grad(set_to_none=True)
            fabric.backward(loss)
            if train_cfg.grad_clip > 0:
                fabric.clip_gradients(session.model, session.optimizer, max_norm=train_cfg.grad_clip,
                                      error_if_nonfinite=False)
            session.optimizer.step()
            session.scheduler.step()
            state.step += 1
            state.batch_in_epoch += 1
            step_losses.append(loss.detach())
            for task in tasks:
                task_sums[task] += per_task[task]
            if len(step_losses) % train_cfg.log_every == 0:
                check_finite()
                progress.update(1, info=f"loss {step_losses[-1].item():.4f}")
            else:
                progress.update(1)
            if stop is not None and stop.requested:  # at a step boundary, so the checkpoint resumes exactly here
                check_finite()
                state.epoch_loss_sums = loss_sums()
                raise _StopAtStep
        check_finite()
    count = state.batch_in_epoch  # every batch of the epoch, before and after a resume
    if not count:
        return {"train_loss": float("nan"), **{f"train_loss_{t}": float("nan") for t in tasks}}
    return {key: value / count for key, value in loss_sums().items()}


def mirror_half(maps: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each N x C x H x W map mirrored left-right with probability 1/2: cheap augmentation of cached maps."""
    flip = torch.rand(len(maps), generator=generator, device=maps.device) < 0.5
    return torch.where(flip.view(-1, 1, 1, 1), maps.flip(3), maps)


@contextlib.contextmanager
def _restored_threads(threads: int) -> Iterator[None]:
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class _StopAtStep(Exception):
    """The first Ctrl-C, acted on at a step boundary: the state is whole and is saved."""


class _AbortNow(KeyboardInterrupt):
    """A second Ctrl-C: stop in the middle of whatever runs, saving nothing."""


class _StopRequest:
    requested = False


@contextlib.contextmanager
def _stop_on_first_ctrl_c() -> Iterator[_StopRequest]:
    """The first Ctrl-C (or SIGTERM) asks the loop to stop after the current step (which it then saves); a second
    one interrupts at once."""
    stop = _StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum: int, frame: Any) -> None:
        if stop.requested:
            raise _AbortNow
        stop.requested = True
        if signum == signal.SIGTERM:  # what SLURM, Kubernetes and `kill` send before a kill -9
            log.warning("SIGTERM: stopping after this step and saving a checkpoint (a second one aborts at once)")
        else:
            log.warning("Ctrl-C: stopping after this step and saving a checkpoint (press again to abort at once)")

    previous = {number: signal.signal(number, handler) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for number, earlier in previous.items():
            signal.signal(number, earlier)


def _checkpoint(session: Session) -> dict[str, Any]:
    return {"model": {k: v.detach().cpu().clone() for k, v in session.raw_model.state_dict().items()},
            "optimizer": session.optimizer.state_dict(), "scheduler": session.scheduler.state_dict(),
            "state": asdict(session.state), "rng": rng_state()}


def _save(session: Session, improved: bool, temperatures: dict[str, float] | None) -> None:
    """Rank 0 writes last.pt and metrics.csv every epoch, model.safetensors (with the temperatures fitted on the
    selection set) when the selection score improved."""
    fabric, run, state = session.fabric, session.run, session.state
    if fabric.is_global_zero:
        if improved:
            save_model_file(run.model, session.raw_model, {t: session.data.classes[t] for t in session.tasks},
                            session.config.model, session.preprocessing, temperatures)
        save_checkpoint(run.last, _checkpoint(session))
        history = pd.DataFrame(state.history)
        write_with(run.metrics, lambda tmp: history.to_csv(tmp, index=False, float_format="%.6g"))
    fabric.barrier()
