"""`artextract train`: the loop, on Lightning Fabric, written to read like plain PyTorch.

One process per device (Fabric launches them, or torchrun / SLURM did). Every process builds the same model,
reads its own share of each epoch's batches, and computes the selection metrics over the gathered predictions,
so all processes take the same early-stopping decision; only rank 0 writes files.
"""

from __future__ import annotations

import contextlib
import math
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from artextract.config import Config, write_config
from artextract.core.atomic import write_json, write_with
from artextract.core.environment import write_environment
from artextract.core.progress import Progress, log
from artextract.engine.checkpoint import (
    Preprocessing,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    save_model_file,
    set_rng_state,
)
from artextract.engine.data import CachedSplit, DataInfo, augment, batch_indices, center_view, load_data_folder
from artextract.engine.loss import class_weights, masked_multitask_loss
from artextract.engine.metrics import task_metrics
from artextract.errors import ArtExtractError, ConfigError, DataError
from artextract.models import ConvRecurrentClassifier, build_model

LAST, BEST, MODEL_FILE = "checkpoints/last.pt", "checkpoints/best.pt", "model.safetensors"
RUN_INFO = "run.json"  # which DATA folder the run was trained on, for `evaluate`


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
    history: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class TrainResult:
    out: Path
    state: RunState
    stopped_early: bool
    interrupted: bool


# ------------------------------------------------------------------ set-up


def _devices(text: str) -> int | str | list[int]:
    text = text.strip()
    if text == "auto":
        return "auto"
    try:
        return [int(d) for d in text.split(",") if d] if "," in text else int(text)
    except ValueError:
        raise ConfigError(f"train.devices must be 'auto', a count or a list like 0,1; got {text!r}") from None


def _make_fabric(config: Config):
    from lightning.fabric import Fabric

    train = config.train
    accelerator = train.accelerator
    if accelerator == "auto":
        accelerator = "cuda" if torch.cuda.is_available() else "cpu"
    if accelerator == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.accelerator is cuda but no CUDA device is visible; use --set train.accelerator=cpu")
    precision = train.precision
    if precision == "auto":
        precision = "bf16-mixed" if accelerator == "cuda" else "32-true"
    devices = _devices(train.devices)
    if accelerator == "cpu" and devices == "auto":
        devices = 1
    many = devices not in (1, "auto") or train.num_nodes > 1
    return Fabric(accelerator=accelerator, devices=devices, num_nodes=train.num_nodes, precision=precision,
                  strategy="ddp" if many else "auto")


def _check_tasks(info: DataInfo, tasks: list[str]) -> None:
    for task in tasks:
        if task not in info.classes:
            raise DataError(f"task {task!r} is not in {info.folder}/classes.json (it has "
                            f"{', '.join(info.classes)}); choose --tasks among those")
        column = info.manifest[f"label_{task}"]
        usable = info.manifest["status"] == "ok"
        if not ((column >= 0) & usable & (info.manifest["split"] == "train")).any():
            raise DataError(f"task {task!r} has no labelled training images in {info.folder}")


class EpochSampler:
    """Yields this process's batches of the current epoch; `set_epoch` before iterating (persistent workers)."""

    def __init__(self, size: int, config: Config, rank: int, world: int, weights: np.ndarray | None) -> None:
        self.size, self.config, self.rank, self.world, self.weights = size, config, rank, world, weights
        self.epoch, self.skip = 0, 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.epoch, self.skip = epoch, skip

    def batches(self) -> list[np.ndarray]:
        train = self.config.train
        batches = batch_indices(self.size, train.batch_size, self.epoch, train.seed, self.rank, self.world,
                                weights=self.weights)
        return batches[: train.max_steps_per_epoch] if train.max_steps_per_epoch else batches

    def __iter__(self):
        return iter(self.batches()[self.skip:])

    def __len__(self) -> int:
        return max(0, len(self.batches()) - self.skip)


def _loader(dataset: CachedSplit, sampler: Any, workers: int, pin: bool) -> torch.utils.data.DataLoader:
    # Workers only copy rows and draw nothing at random; their own generator keeps the global RNG (dropout)
    # untouched, so a resumed run continues the same random stream.
    return torch.utils.data.DataLoader(dataset, batch_size=None, sampler=sampler, num_workers=workers,
                                       pin_memory=pin, persistent_workers=workers > 0,
                                       prefetch_factor=4 if workers > 0 else None,
                                       generator=torch.Generator().manual_seed(0))


def _balanced_weights(dataset: CachedSplit) -> np.ndarray:
    labels = dataset.labels[:, 0]
    counts = np.bincount(labels[labels >= 0])
    weights = np.where(labels >= 0, 1.0 / np.maximum(counts[np.maximum(labels, 0)], 1), 0.0)
    return weights / weights.sum()


def _lr_lambda(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


# ------------------------------------------------------------------ evaluation on the selection set


@torch.no_grad()
def evaluate_split(session: Session, dataset: CachedSplit) -> dict[str, np.ndarray]:
    """Predictions for every image of `dataset`, each exactly once, on every process.

    Each process scores rows rank, rank + world, ...; the shares are padded to one length for the gather and
    the padding (row -1) dropped after it, so no image is counted twice.
    """
    fabric, config, model = session.fabric, session.config, session.raw_model
    rows = np.arange(len(dataset))[fabric.global_rank::fabric.world_size]
    per_rank = math.ceil(len(dataset) / fabric.world_size)
    batch = config.train.batch_size
    outputs: dict[str, list[torch.Tensor]] = {"row": [], "loss": []} | {f"pred_{t}": [] for t in dataset.tasks}
    model.eval()
    for start in range(0, len(rows), batch):
        images, labels, picked = dataset[rows[start: start + batch]]
        images = images.to(fabric.device, non_blocking=True)
        labels = labels.to(fabric.device)
        inputs = center_view(images, config.train.image_size, session.info.cache_size, session.mean, session.std,
                             session.channels_last)
        with fabric.autocast():
            logits = model(inputs)["logits"]
        for task in dataset.tasks:
            outputs[f"pred_{task}"].append(logits[task].argmax(dim=1))
        losses = torch.stack([torch.nn.functional.cross_entropy(logits[t].float(), labels[:, c].clamp(min=0),
                                                                reduction="none") * (labels[:, c] >= 0)
                              for c, t in enumerate(dataset.tasks)], dim=1)
        outputs["loss"].append(losses)
        outputs["row"].append(picked.to(fabric.device))
    model.train()
    gathered = {}
    for key, parts in outputs.items():
        width = (len(dataset.tasks),) if key == "loss" else ()
        dtype = torch.float32 if key == "loss" else torch.int64
        local = torch.cat(parts) if parts else torch.empty((0, *width), dtype=dtype, device=fabric.device)
        padded = torch.full((per_rank, *width), -1, dtype=local.dtype, device=fabric.device)
        padded[: len(local)] = local
        gathered[key] = fabric.all_gather(padded).reshape(-1, *width).cpu().numpy()
    keep = gathered["row"] >= 0
    order = np.argsort(gathered["row"][keep], kind="stable")
    return {key: value[keep][order] for key, value in gathered.items()}


def selection_metrics(dataset: CachedSplit, predicted: dict[str, np.ndarray]) -> dict[str, float]:
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


# ------------------------------------------------------------------ the run


def _fault(message: str, out: Path, state: RunState) -> TrainingFault:
    kept = (f"the last good checkpoint is {out / LAST} (epoch {state.epoch}); resume from it with --resume"
            if (out / LAST).exists() else "no epoch had completed, so nothing was kept")
    return TrainingFault(f"{message}; {kept}")


@dataclass
class Session:
    """Everything one process trains with; built once by `build_session`."""

    fabric: Any
    config: Config
    tasks: list[str]
    info: DataInfo
    out: Path
    train_set: CachedSplit
    select_set: CachedSplit
    model: Any  # as set up by Fabric (DDP, precision), maybe compiled
    raw_model: ConvRecurrentClassifier  # the same parameters, unwrapped: for evaluation and saving
    optimizer: Any
    scheduler: Any
    sampler: EpochSampler
    mean: torch.Tensor
    std: torch.Tensor
    channels_last: bool
    class_weights: dict[str, torch.Tensor] | None
    state: RunState = field(default_factory=RunState)


def build_session(fabric: Any, info: DataInfo, out: Path, config: Config, tasks: list[str]) -> Session:
    train_cfg = config.train
    fabric.seed_everything(train_cfg.seed, verbose=False)
    train_set = CachedSplit(info, "train", tasks)
    if len(train_set) < train_cfg.batch_size * fabric.world_size:
        raise ConfigError(f"the training split has {len(train_set)} images, fewer than one batch of "
                          f"{train_cfg.batch_size} per device; lower --batch-size")
    model = build_model(config, info.classes)
    channels_last = fabric.device.type == "cuda" and train_cfg.channels_last
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    weights = ({t: class_weights(train_set.labels[:, c], len(info.classes[t])) for c, t in enumerate(tasks)}
               if train_cfg.class_weights else None)
    sampler = EpochSampler(len(train_set), config, fabric.global_rank, fabric.world_size,
                           _balanced_weights(train_set) if train_cfg.balanced_sampling else None)
    steps = len(sampler.batches())
    optimizer = torch.optim.AdamW(model.parameters(), lr=train_cfg.lr, weight_decay=train_cfg.weight_decay)
    warmup = max(1, round(train_cfg.warmup_epochs * steps))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(train_cfg.epochs * steps, warmup))
    wrapped, optimizer = fabric.setup(torch.compile(model) if train_cfg.compile else model, optimizer)
    return Session(fabric, config, tasks, info, out, train_set, CachedSplit(info, "select", tasks), wrapped, model,
                   optimizer, scheduler, sampler, torch.tensor(model.backbone.mean, dtype=torch.float32),
                   torch.tensor(model.backbone.std, dtype=torch.float32), channels_last, weights)


def train(data_dir: Path, out: Path, config: Config, resume: bool = False,
          should_stop: Callable[[int], bool] | None = None) -> TrainResult:
    """Train (or resume) a run in `out`. `should_stop(epoch)` is polled after each epoch (for tests and tools)."""
    info = load_data_folder(data_dir)
    tasks = list(config.model.tasks)
    _check_tasks(info, tasks)
    fabric = _make_fabric(config)
    fabric.launch()
    try:
        session = build_session(fabric, info, out, config, tasks)
        return _fit(session, resume, should_stop)
    finally:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            # Without this a fraction of multi-process runs abort at interpreter exit.
            torch.distributed.destroy_process_group()


def _fit(session: Session, resume: bool, should_stop: Callable[[int], bool] | None) -> TrainResult:
    fabric, out, train_cfg = session.fabric, session.out, session.config.train
    created = fabric.is_global_zero and not resume and not (out / LAST).exists()
    if resume:
        checkpoint = load_checkpoint(out / LAST)
        session.raw_model.load_state_dict(checkpoint["model"])
        session.optimizer.load_state_dict(checkpoint["optimizer"])
        session.scheduler.load_state_dict(checkpoint["scheduler"])
        session.state = RunState(**checkpoint["state"])
        set_rng_state(checkpoint["rng"])
        log.info("resuming %s after epoch %d (step %d)", out, session.state.epoch, session.state.step)
    elif fabric.is_global_zero:
        write_config(session.config, out / "config.yaml", sections=("model", "train"))
        write_environment(out)
        write_json(out / RUN_INFO, {"data": str(session.info.folder.resolve()), "tasks": session.tasks})

    state = session.state
    loader = _loader(session.train_set, session.sampler, train_cfg.workers, pin=fabric.device.type == "cuda")
    interrupted = stopped_early = False
    try:
        while state.epoch < train_cfg.epochs:
            session.sampler.set_epoch(state.epoch, skip=state.batch_in_epoch)
            started = time.perf_counter()
            steps_before = state.step
            epoch_losses = train_epoch(session, loader, len(session.sampler))
            seconds = time.perf_counter() - started
            images = (state.step - steps_before) * train_cfg.batch_size * fabric.world_size
            metrics = (selection_metrics(session.select_set, evaluate_split(session, session.select_set))
                       if len(session.select_set) else {"score": -epoch_losses["train_loss"]})
            state.epoch += 1
            state.batch_in_epoch = 0
            row = {"epoch": state.epoch, "step": state.step, **epoch_losses, **metrics,
                   "lr": session.scheduler.get_last_lr()[0], "images_per_s": images / seconds,
                   "epoch_seconds": seconds}
            state.history.append(row)
            improved = state.best_epoch == 0 or row["score"] > state.best_score  # NaN never improves
            if improved:
                state.best_score, state.best_epoch, state.bad_epochs = row["score"], state.epoch, 0
            else:
                state.bad_epochs += 1
            _save(session, improved)
            log.info("epoch %d/%d: train loss %.4f, selection score %.4f%s, %.0f img/s", state.epoch,
                     train_cfg.epochs, epoch_losses["train_loss"], row["score"], " (best)" if improved else "",
                     row["images_per_s"])
            if train_cfg.patience and state.bad_epochs >= train_cfg.patience:
                log.info("early stopping: no better selection score for %d epochs (best: epoch %d)",
                         state.bad_epochs, state.best_epoch)
                stopped_early = True
                break
            if should_stop is not None and should_stop(state.epoch):
                interrupted = True
                break
    except KeyboardInterrupt:
        interrupted = True
        if fabric.is_global_zero:
            save_checkpoint(out / LAST, _checkpoint(session))
        log.warning("interrupted at step %d (epoch %d, batch %d): saved %s; continue with --resume", state.step,
                    state.epoch + 1, state.batch_in_epoch, out / LAST)
    except BaseException as err:
        if created and not (out / LAST).exists():
            _remove_partial_run(out)  # a run that never finished an epoch leaves nothing behind
        if isinstance(err, torch.cuda.OutOfMemoryError):
            raise _fault(f"batch size {train_cfg.batch_size} does not fit in GPU memory; try --batch-size "
                         f"{max(1, train_cfg.batch_size // 2)}", out, state) from None
        raise
    return TrainResult(out, state, stopped_early, interrupted)


def _remove_partial_run(out: Path) -> None:
    for name in ("config.yaml", "env.json", RUN_INFO, "metrics.csv", "checkpoints"):
        target = out / name
        if target.is_dir():
            shutil.rmtree(target, ignore_errors=True)
        else:
            target.unlink(missing_ok=True)


def train_epoch(session: Session, batches: Iterable[tuple[torch.Tensor, torch.Tensor, Any]],
                total: int) -> dict[str, float]:
    """One pass over `batches` of (uint8 images, labels, rows); returns the mean losses."""
    fabric, state, tasks, train_cfg = session.fabric, session.state, session.tasks, session.config.train
    session.model.train()
    step_losses: list[torch.Tensor] = []  # kept on the device: checking them every step would stall the GPU
    task_sums = {t: torch.zeros((), device=fabric.device) for t in tasks}
    generator = torch.Generator(device=fabric.device)
    checked = 0
    progress = Progress(total, f"epoch {state.epoch + 1}/{train_cfg.epochs}", unit="step",
                        every=train_cfg.log_every, enabled=fabric.is_global_zero,
                        also=(train_cfg.batch_size * fabric.world_size, "img"))

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
                         "learning rate (--set train.lr=...)", session.out, state)
        checked = len(step_losses)

    with progress, _stop_on_first_ctrl_c() as stop:
        for images, labels, _rows in batches:
            images = images.to(fabric.device, non_blocking=True)
            labels = labels.to(fabric.device, non_blocking=True)
            # One seed per (run, step): a resumed run draws the same crops as an uninterrupted one.
            generator.manual_seed(train_cfg.seed * 1_000_003 + state.step)
            inputs = augment(images, train_cfg.image_size, session.mean, session.std, generator,
                             train_cfg.min_crop_scale, train_cfg.hflip, session.channels_last)
            logits = session.model(inputs)["logits"]
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
            if stop.requested:  # at a step boundary, so the checkpoint resumes exactly here
                check_finite()
                raise KeyboardInterrupt
        check_finite()
    count = max(1, len(step_losses))
    losses = {"train_loss": float(torch.stack(step_losses).mean()) if step_losses else float("nan")}
    losses |= {f"train_loss_{t}": float(task_sums[t]) / count for t in tasks}
    return losses


class _StopRequest:
    requested = False


@contextlib.contextmanager
def _stop_on_first_ctrl_c() -> Iterator[_StopRequest]:
    """The first Ctrl-C asks the loop to stop after the current step (which it then saves); a second one
    interrupts at once."""
    stop = _StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum: int, frame: Any) -> None:
        if stop.requested:
            raise KeyboardInterrupt
        stop.requested = True
        log.warning("Ctrl-C: stopping after this step and saving a checkpoint (press again to abort at once)")

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)


def _checkpoint(session: Session) -> dict[str, Any]:
    return {"model": {k: v.detach().cpu().clone() for k, v in session.raw_model.state_dict().items()},
            "optimizer": session.optimizer.state_dict(), "scheduler": session.scheduler.state_dict(),
            "state": asdict(session.state), "rng": rng_state()}


def _save(session: Session, improved: bool) -> None:
    """Rank 0 writes last.pt (every epoch), best.pt and model.safetensors (when improved), metrics.csv."""
    fabric, out, state, config = session.fabric, session.out, session.state, session.config
    if fabric.is_global_zero:
        checkpoint = _checkpoint(session)
        if improved:
            save_checkpoint(out / BEST, {"model": checkpoint["model"], "epoch": state.epoch,
                                         "score": state.best_score})
            preprocessing = Preprocessing(session.info.cache_size, config.train.image_size,
                                          tuple(session.mean.tolist()), tuple(session.std.tolist()))
            save_model_file(out / MODEL_FILE, session.raw_model, {t: session.info.classes[t] for t in session.tasks},
                            config.model, preprocessing)
        save_checkpoint(out / LAST, checkpoint)
        history = pd.DataFrame(state.history)
        write_with(out / "metrics.csv", lambda tmp: history.to_csv(tmp, index=False, float_format="%.6g"))
    fabric.barrier()
