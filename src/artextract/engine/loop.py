"""The training loop, on Lightning Fabric, written to read like plain PyTorch.

One process per device (Fabric launches them, or torchrun / SLURM did). Every process builds the same model,
reads its own share of each epoch's batches, and computes the selection metrics over the gathered predictions,
so all processes take the same early-stopping decision; only rank 0 writes files. The set-up is in
engine/session.py, Ctrl-C in engine/interrupts.py, saving in engine/checkpoint.py.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch

from artextract.core.progress import Progress, log
from artextract.engine.checkpoint import save_checkpoint
from artextract.engine.interrupts import AbortNow, StopAtStep, StopRequest, stop_on_first_ctrl_c
from artextract.engine.loss import masked_multitask_loss
from artextract.engine.runtime import cpu_threads_for
from artextract.engine.sampler import make_loader
from artextract.engine.selection import calibrate, evaluate_split, selection_metrics
from artextract.engine.session import RunState, Session, training_fault


@dataclass
class FitResult:
    state: RunState
    stopped_early: bool
    interrupted: bool


class _EpochsEnd(NamedTuple):
    stopped_early: bool = False
    interrupted: bool = False


def select(session: Session, epoch: int) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """The selection metrics of the model as it is now (the same on every process), and the predictions."""
    select_set = session.split("select", epoch)
    predicted = evaluate_split(session.fabric, session.raw_model, select_set, session.preprocessing,
                               session.runtime, session.config.train.batch_size)
    return selection_metrics(select_set, predicted), predicted


def fit(session: Session, should_stop: Callable[[int], bool] | None = None) -> FitResult:
    """Train until the configured epochs, early stopping, Ctrl-C or `should_stop(epoch)`; saves every epoch."""
    state, end = session.state, _EpochsEnd()
    threads = torch.get_num_threads()  # each CPU phase sets its own (_epochs); given back afterwards
    with stop_on_first_ctrl_c() as stop, _restored_threads(threads):
        try:
            end = _epochs(session, stop, should_stop, threads)
        except StopAtStep:
            end = _EpochsEnd(interrupted=True)
            if session.fabric.is_global_zero:
                save_checkpoint(session.run.last, session.checkpoint())
            log.warning("interrupted at step %d (epoch %d, batch %d): saved %s; continue with --resume", state.step,
                        state.epoch + 1, state.batch_in_epoch, session.run.last)
        except AbortNow:
            kept = (f"{session.run.last} still holds the state after epoch {state.epoch}"
                    if session.run.last.exists() else "no epoch had completed")
            log.warning("second Ctrl-C: stopped at once, without saving the step in progress; %s", kept)
            raise KeyboardInterrupt from None
        except torch.cuda.OutOfMemoryError:
            batch = session.config.train.batch_size
            raise training_fault(f"batch size {batch} does not fit in GPU memory; try --batch-size "
                                 f"{max(1, batch // 2)}", session.run, state) from None
    return FitResult(state, end.stopped_early, end.interrupted)


def _epochs(session: Session, stop: StopRequest, should_stop: Callable[[int], bool] | None,
            threads: int) -> _EpochsEnd:
    """The epoch loop of `fit`: train, select, save, decide."""
    fabric, train_cfg, state = session.fabric, session.config.train, session.state
    loaders: dict[bool, Any] = {}  # one per phase (frozen, fine-tuning), made when first needed
    while state.epoch < train_cfg.epochs:
        frozen = session.frozen(state.epoch)
        if frozen not in loaders:
            if not frozen and session.features is not None:
                log.info("epoch %d: unfreezing the backbone; fine-tuning from the images", state.epoch + 1)
            session.set_backbone_trainable(not frozen)
            loaders[frozen] = make_loader(session.split("train", state.epoch), session.sampler,
                                          train_cfg.workers, pin=fabric.device.type == "cuda")
        if fabric.device.type == "cpu":
            _set_cpu_threads(session, frozen, threads)
        session.sampler.set_epoch(state.epoch, skip=state.batch_in_epoch)
        started, steps_before = time.perf_counter(), state.step
        epoch_losses = train_epoch(session, loaders[frozen], len(session.sampler), stop)
        seconds = time.perf_counter() - started
        images = (state.step - steps_before) * train_cfg.batch_size * fabric.world_size
        metrics, predicted = (select(session, state.epoch) if len(session.select_set)
                              else ({"score": -epoch_losses["train_loss"]}, None))
        state.epoch += 1
        state.batch_in_epoch, state.epoch_loss_sums = 0, {}
        row = {"epoch": state.epoch, "step": state.step, **epoch_losses, **metrics,
               "lr": session.scheduler.get_last_lr()[0], "images_per_s": images / seconds, "epoch_seconds": seconds}
        state.history.append(row)
        # A NaN score is never the best epoch, not even the first one.
        improved = not math.isnan(row["score"]) and (state.best_epoch == 0 or row["score"] > state.best_score)
        if improved:
            state.best_score, state.best_epoch, state.bad_epochs = row["score"], state.epoch, 0
        else:
            state.bad_epochs += 1
        calibration = (calibrate(session.select_set, predicted, session.calibration_noted)
                       if improved and predicted is not None else None)
        session.save_epoch(improved, calibration)
        log.info("epoch %d/%d: train loss %.4f, selection score %.4f%s, %.0f img/s", state.epoch,
                 train_cfg.epochs, epoch_losses["train_loss"], row["score"], " (best)" if improved else "",
                 row["images_per_s"])
        if train_cfg.patience and state.bad_epochs >= train_cfg.patience:
            log.info("early stopping: no better selection score for %d epochs (best: epoch %d)",
                     state.bad_epochs, state.best_epoch)
            return _EpochsEnd(stopped_early=True)
        if stop.requested:  # Ctrl-C during the selection pass or the save: the epoch is whole and saved
            log.warning("interrupted after epoch %d (saved); continue with --resume", state.epoch)
            return _EpochsEnd(interrupted=True)
        if should_stop is not None and should_stop(state.epoch):
            return _EpochsEnd(interrupted=True)
    return _EpochsEnd()


def _set_cpu_threads(session: Session, frozen: bool, threads: int) -> None:
    configured = session.config.train.cpu_threads
    chosen = cpu_threads_for(frozen, configured, otherwise=threads)
    if chosen != torch.get_num_threads():
        log.info("epoch %d: %d torch thread(s)%s", session.state.epoch + 1, chosen,
                 " (other processes are busy on this CPU: one thread stalls far less beside them)"
                 if chosen < threads and not configured else "")
    torch.set_num_threads(chosen)


def train_epoch(session: Session, batches: Iterable[tuple[torch.Tensor, torch.Tensor, Any]],
                total: int, stop: StopRequest | None = None) -> dict[str, float]:
    """One pass over `batches` of (uint8 images, labels, rows); returns the mean losses over the whole epoch (the
    batches taken before a resume included). Raises StopAtStep at the step boundary after a Ctrl-C."""
    fabric, state, train_cfg = session.fabric, session.state, session.config.train
    from_features = session.frozen(state.epoch)
    session.model.train()
    meter = _LossMeter(session)
    generator = torch.Generator(device=fabric.device)
    # A log line every 10 s off a terminal; the loss is read back from the device every `log_every` steps.
    with Progress(total, f"epoch {state.epoch + 1}/{train_cfg.epochs}", unit="step", enabled=fabric.is_global_zero,
                  also=(train_cfg.batch_size * fabric.world_size, "img")) as progress:
        for images, labels, _rows in batches:
            # One seed per (run, step): a resumed run draws the same crops and flips as an uninterrupted one.
            generator.manual_seed(train_cfg.seed * 1_000_003 + state.step)
            inputs = _model_inputs(session, images.to(fabric.device, non_blocking=True), from_features, generator)
            loss, per_task = _step(session, inputs, labels.to(fabric.device, non_blocking=True), from_features)
            state.step += 1
            state.batch_in_epoch += 1
            meter.add(loss, per_task)
            if meter.steps % train_cfg.log_every == 0:
                meter.check()
                progress.update(1, info=f"loss {loss.item():.4f}")
            else:
                progress.update(1)
            if stop is not None and stop.requested:  # at a step boundary, so the checkpoint resumes exactly here
                meter.check()
                state.epoch_loss_sums = meter.sums()
                raise StopAtStep
        meter.check()
    return meter.means(state.batch_in_epoch)  # every batch of the epoch, before and after a resume


def _model_inputs(session: Session, images: torch.Tensor, from_features: bool,
                  generator: torch.Generator) -> torch.Tensor:
    """The training view of a batch: a random crop and flip of the images, or the cached maps (maybe mirrored)."""
    train_cfg = session.config.train
    if from_features:  # the frozen backbone's maps of the evaluation view
        return mirror_half(images.float(), generator) if train_cfg.feature_hflip else images.float()
    return session.preprocessing.train_view(images, generator, train_cfg.min_crop_scale, train_cfg.hflip,
                                            session.runtime.channels_last)


def _step(session: Session, inputs: torch.Tensor, labels: torch.Tensor,
          from_features: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Forward, masked multi-task loss, backward, clipping, optimizer and scheduler step; returns the losses."""
    train_cfg = session.config.train
    logits = session.model(inputs, from_features=from_features)["logits"]
    loss, per_task = masked_multitask_loss(logits, labels, session.tasks, session.class_weights,
                                           train_cfg.label_smoothing)
    session.optimizer.zero_grad(set_to_none=True)
    session.fabric.backward(loss)
    if train_cfg.grad_clip > 0:
        session.fabric.clip_gradients(session.model, session.optimizer, max_norm=train_cfg.grad_clip,
                                      error_if_nonfinite=False)
    session.optimizer.step()
    session.scheduler.step()
    return loss, per_task


class _LossMeter:
    """An epoch's losses, kept on the device (reading them back every step would stall a GPU), with the sums of
    the batches taken before a resume; checked for NaN or infinity every `log_every` steps."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.losses: list[torch.Tensor] = []
        self.task_sums = {t: torch.zeros((), device=session.fabric.device) for t in session.tasks}
        self.checked = 0

    @property
    def steps(self) -> int:
        return len(self.losses)

    def add(self, loss: torch.Tensor, per_task: dict[str, torch.Tensor]) -> None:
        self.losses.append(loss.detach())
        for task in self.task_sums:
            self.task_sums[task] += per_task[task]

    def check(self) -> None:
        """Stop on a NaN or infinite loss since the last check, naming its step (every process agrees)."""
        fabric, state = self.session.fabric, self.session.state
        recent = torch.stack(self.losses[self.checked:]) if self.steps > self.checked else torch.zeros(0)
        bad_positions = torch.nonzero(~torch.isfinite(recent)).flatten()
        bad = torch.tensor(float(len(bad_positions) > 0), device=fabric.device)
        if fabric.all_reduce(bad, reduce_op="sum").item() > 0:
            first = self.checked + (int(bad_positions[0]) if len(bad_positions) else 0)
            step = state.step - self.steps + first + 1
            raise training_fault(f"the loss became NaN or infinite at step {step} (epoch {state.epoch + 1}); lower "
                                 "the learning rate (--set train.lr=...)", self.session.run, state)
        self.checked = self.steps

    def sums(self) -> dict[str, float]:
        """The epoch's loss sums so far, the part before a resume included."""
        earlier = self.session.state.epoch_loss_sums
        sums = {"train_loss": float(torch.stack(self.losses).sum()) if self.losses else 0.0}
        sums |= {f"train_loss_{t}": float(value) for t, value in self.task_sums.items()}
        return {key: value + earlier.get(key, 0.0) for key, value in sums.items()}

    def means(self, batches: int) -> dict[str, float]:
        if not batches:
            return {"train_loss": float("nan"), **{f"train_loss_{t}": float("nan") for t in self.task_sums}}
        return {key: value / batches for key, value in self.sums().items()}


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
