"""`artextract train`: DATA -> RUN (config.yaml, env.json, run.json, metrics.csv, checkpoints/last.pt,
model.safetensors). Owns the RUN folder: rank 0 creates it, and a run that fails before its first epoch
completed leaves nothing behind."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from artextract.config import Config
from artextract.config_files import changed_keys, load_config, write_config
from artextract.core.atomic import write_json
from artextract.core.environment import write_environment
from artextract.core.lock import folder_lock
from artextract.core.outdir import (
    claimed_output_dir,
    clean_temporaries,
    require_free_space,
    require_writable_file,
    undo_on_failure,
)
from artextract.core.progress import log
from artextract.core.records import file_digest
from artextract.engine.checkpoint import previous_checkpoint, resume_hint
from artextract.engine.data import DataInfo, data_key, load_data_folder
from artextract.engine.folds import fold_view
from artextract.engine.loop import fit
from artextract.engine.runtime import Runtime, make_fabric
from artextract.engine.seen_images import record_seen
from artextract.engine.session import RunState, Session, build_session, resume_from_last
from artextract.engine.startup import describe, warnings_for
from artextract.errors import ArtExtractError, DataError
from artextract.layout import ENVIRONMENT, RunFolder
from artextract.models.backbone import check_backbone_name
from artextract.models.readers import reader_kind


@dataclass
class TrainResult:
    run: RunFolder
    state: RunState
    stopped_early: bool
    interrupted: bool
    primary: bool  # whether this is the process that wrote the files (rank 0)


def check_tasks(data: DataInfo, tasks: list[str]) -> None:
    data.folder.require_tasks(tasks)
    for task in tasks:
        manifest = data.manifest
        usable = (manifest[f"label_{task}"] >= 0) & (manifest["status"] == "ok") & (manifest["split"] == "train")
        if not usable.any():
            raise DataError(f"task {task!r} has no labelled training images in {data.folder.root}")


def saved_config(out: Path) -> Config:
    """The config the run in `out` was trained with: what a resume starts from, before any file or `--set`
    given now (e.g. more epochs)."""
    saved = RunFolder(Path(out)).config
    if not saved.is_file():
        raise ArtExtractError(f"{out} holds no run to resume ({saved.name} missing)")
    return load_config(saved)


def train(data_dir: Path | None, out: Path, config: Config, resume: bool = False, force: bool = False,
          should_stop: Callable[[int], bool] | None = None,
          relabel: Callable[[DataInfo], DataInfo] | None = None) -> TrainResult:
    """Train (or resume) the run in `out` on DATA folder `data_dir` (on a resume None means the run's own).
    `should_stop(epoch)` is polled after each epoch (for tests and tools). `relabel` changes the labels the run
    sees (the label audit's validation flips some on purpose); run.json's data key records the result, so a resume
    without the same `relabel` is refused."""
    reader_kind(config.model.reader)  # an unknown reader or backbone is refused before anything is read or written
    check_backbone_name(config.model.backbone)
    run = RunFolder(Path(out))
    if data_dir is None and not resume:
        raise ArtExtractError("--data DATA is needed: the folder written by `artextract prepare`")
    data = fold_view(load_data_folder(run.data_folder(data_dir)), config.train.folds, config.train.fold)
    if relabel is not None:
        data = relabel(data)
    if resume and not (run.last.is_file() and run.config.is_file()):
        raise ArtExtractError(f"{run.root} holds no run to resume ({run.last.name} or {run.config.name} missing)"
                              + (resume_hint(run.last) if run.config.is_file() else ""))
    changed = _resume_changes(run, config) if resume else {}
    if resume:
        _check_same_data(run, data)
        for path in (run.last, run.metrics, run.model):  # a read-only RUN fails now, not after the first epoch
            require_writable_file(path)
    check_tasks(data, list(config.model.tasks))
    train_cfg = config.train
    runtime = Runtime.resolve(train_cfg.accelerator, train_cfg.precision, train_cfg.channels_last)
    fabric = make_fabric(runtime, train_cfg.devices, train_cfg.num_nodes)
    fabric.launch()
    try:
        # Only rank 0 creates, records and (after a failure) cleans the folder; the others wait for it.
        primary = fabric.is_global_zero
        with undo_on_failure(run.root, keep=lambda: resume or run.last.exists() or not primary), \
                _claim(run, primary, resume, force), _reading(data):
            if primary and not resume:
                write_config(config, run.config, sections=("model", "train"))
                write_environment(run.root / ENVIRONMENT)
                write_json(run.run_info, {"data": str(data.folder.root.resolve()), "tasks": list(config.model.tasks),
                                          "data_key": data_key(data)}
                           | ({"folds": [config.train.folds, config.train.fold]} if config.train.folds else {}))
                record_seen(run, data)
            fabric.barrier()
            session = build_session(fabric, runtime, data, run, config)
            if primary:
                require_free_space(run.root, _space_needed(session, run), "training (checkpoints and model file)")
                for line in describe(session):
                    log.info("%s", line)
                for line in warnings_for(session):
                    log.warning("%s", line)
            if resume:
                resume_from_last(session)
            if primary and changed:  # only once nothing can refuse the resume any more: a refused one changes no file
                write_config(config, run.config, sections=("model", "train"))  # what the run now is
            result = fit(session, should_stop)
            if primary and not result.interrupted:
                _record_finished(run, result.state.epoch)
        return TrainResult(run, result.state, result.stopped_early, result.interrupted, primary)
    finally:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            # Without this a fraction of multi-process runs abort at interpreter exit.
            torch.distributed.destroy_process_group()


@contextmanager
def _claim(run: RunFolder, primary: bool, resume: bool, force: bool) -> Iterator[None]:
    """The RUN folder, locked for the whole run (by rank 0, which alone writes it): a second `train` on the same
    folder is refused at once, whether it resumes or starts."""
    if not primary:
        yield
    elif resume:
        with folder_lock(run.root):
            clean_temporaries(run.root)  # a checkpoint save that a kill cut short
            yield
    else:
        with claimed_output_dir(run.root, force=force, earlier_outputs=run.outputs):
            yield


def _reading(data: DataInfo) -> AbstractContextManager[object]:
    """DATA, shared for the run: `prepare` cannot rebuild it under a run reading it (prepare with the same inputs
    shares it too, see data/cache.py)."""
    return folder_lock(data.folder.root, exclusive=False)


def _check_same_data(run: RunFolder, data: DataInfo) -> None:
    """A resumed run goes on with the images, labels and splits it started with, wherever DATA now lies."""
    if not run.run_info.is_file():
        return
    recorded = run.read_info("it says which DATA the run started with; restore it, or start a new run")
    here, key = str(data.folder.root.resolve()), data_key(data)
    if recorded.get("data_key", key if recorded.get("data") == here else None) != key:
        raise ArtExtractError(f"cannot resume {run.root} on {data.folder.root}: the run was trained on "
                              f"{recorded.get('data')}, and this DATA holds other images, labels or splits (prepared "
                              "again, or another DATA). Resume with the DATA it started with, or start a new run")
    if recorded.get("data") != here:
        log.info("the run's DATA moved from %s to %s (same images, labels and splits)", recorded.get("data"), here)
        write_json(run.run_info, {**recorded, "data": here, "data_key": key})


def _record_finished(run: RunFolder, epoch: int) -> None:
    """run.json says which epoch the run finished at and the digests of the files holding it, so that a tool
    reusing the run (ablate) can tell a finished run from one whose files were swapped or restored afterwards."""
    recorded = run.read_info("train again")
    finished = {"epoch": epoch, "last_sha256": file_digest(run.last), "model_sha256": file_digest(run.model)}
    write_json(run.run_info, {**recorded, "finished": finished})


def _space_needed(session: Session, run: RunFolder) -> int:
    """Bytes the run will add at most: while a checkpoint is written, the one before it and the one before that
    (last.pt.prev) are still on disk, beside the model file. A checkpoint holds the weights and AdamW's two moments."""
    weights = sum(t.numel() * t.element_size() for t in session.raw_model.state_dict().values())
    trainable = sum(p.numel() * p.element_size() for p in session.raw_model.parameters() if p.requires_grad)
    checkpoint = weights + 2 * trainable
    on_disk = sum(p.stat().st_size for p in (run.last, previous_checkpoint(run.last), run.model) if p.is_file())
    return max(0, 3 * checkpoint + weights - on_disk)


def _resume_changes(run: RunFolder, config: Config) -> dict[str, tuple[object, object]]:
    """What `config` changes in the run being resumed; the model and the cross-validation fold cannot change, the
    other training settings can."""
    changed = changed_keys(load_config(run.config), config, ("model", "train"))
    fixed = {k: v for k, v in changed.items() if k.startswith("model.") or k in ("train.folds", "train.fold")}
    if fixed:
        key, (old, new) = next(iter(fixed.items()))
        raise ArtExtractError(f"cannot resume {run.root} with {key}={new!r}: the run was trained with {old!r}, and "
                              "its checkpoint learnt that. Start a new run (another --out) to change it")
    for key, (old, new) in changed.items():
        log.warning("resuming with %s=%r (was %r); config.yaml now says so", key, new, old)
    if "train.epochs" in changed:
        log.warning("the cosine learning-rate schedule is recomputed over %d epochs and continues from the step "
                    "reached, so the learning rate moves to where the new schedule has it", config.train.epochs)
    return changed
