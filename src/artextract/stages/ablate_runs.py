"""The runs of `artextract ablate`: each variant trained once per seed (and fold), or a finished run reused when
it is verifiably the run asked for, and its last epoch's predictions on the split it selects on."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from artextract.config import Config
from artextract.core.progress import log
from artextract.errors import ArtExtractError

if TYPE_CHECKING:
    from artextract.layout import RunFolder


def train_or_reuse(data: Path, view: Any, run: Path, config: Config,
                   relabel: Callable[[Any], Any] | None = None) -> tuple[Path, float]:
    """Train one variant, or reuse a run that finished all its epochs with the same settings on the same DATA
    (`view`: DATA as the run sees it, its folds and any `relabel` applied); returns (RUN, seconds)."""
    from artextract.engine.data import data_key
    from artextract.layout import RunFolder
    from artextract.stages.train import train

    seconds = _finished_seconds(RunFolder(run), data_key(view), config)
    if seconds is not None:
        return run, seconds
    started = time.perf_counter()
    if train(data, run, config, force=True, relabel=relabel).interrupted:
        # Ctrl-C: the run saved its epoch; nothing after it may score an unfinished run. A rerun of the command
        # reuses every finished run and trains this one again.
        log.warning("interrupted while training %s; run the same command again to go on (finished runs are reused)",
                    run)
        raise KeyboardInterrupt
    return run, time.perf_counter() - started


def _finished_seconds(folder: RunFolder, key: str, config: Config) -> float | None:
    """The training seconds of a finished run of exactly `config` on the DATA of `key`; None for anything else (an
    interrupted run, one of an earlier ablation with other settings, or on other DATA), which is trained again."""
    import pandas as pd

    from artextract.config_files import config_yaml

    if not (folder.config.is_file() and folder.model.is_file() and folder.metrics.is_file()):
        return None  # not trained yet, or interrupted before its first epoch
    try:
        info = folder.read_info("")
        same = (folder.config.read_text(encoding="utf-8") == config_yaml(config, ("model", "train"))
                and info.get("data_key") == key)
        history = pd.read_csv(folder.metrics)
    except (OSError, ValueError, ArtExtractError):  # damaged: train it again
        same = False
    if not same:
        log.info("ablate: %s was trained with other settings or on other DATA; training it again", folder.root)
        return None
    if not _verifiably_finished(folder, config.train.epochs):
        return None
    return float(history["epoch_seconds"].sum()) if len(history) == config.train.epochs else None


def _verifiably_finished(folder: RunFolder, epochs: int) -> bool:
    """Whether run.json records the run finishing all `epochs` with the checkpoint and model file it holds now (a
    restored last.pt.prev holds an earlier epoch: scoring it would change the table)."""
    finished = folder.finished()
    if finished is None or finished.get("epoch") != epochs:
        log.info("ablate: %s did not record finishing its %d epochs with the %s and %s it holds now (interrupted, or "
                 "the files replaced or restored since); training it again", folder.root, epochs, folder.last.name,
                 folder.model.name)
        return False
    return True


def features_and_model(run: Path, info: Any, config: Config, final: bool = True) -> tuple[Any, Any, Any, Any]:
    """The run's model (its last epoch's weights when `final`) placed by the runtime, its preprocessing, the
    runtime, and the feature cache it trained on."""
    from artextract.engine.checkpoint import load_checkpoint, load_model_file
    from artextract.engine.features import build_features
    from artextract.engine.runtime import Runtime
    from artextract.layout import RunFolder

    folder = RunFolder(run)
    runtime = Runtime.resolve(config.train.accelerator, config.train.precision, config.train.channels_last)
    model, meta = load_model_file(folder.model, runtime)
    if final:
        model.load_state_dict(load_checkpoint(folder.last)["model"])
    features = build_features(info, model.backbone, meta.model_config["backbone"], meta.preprocessing, runtime,
                              runtime.device, config.train.batch_size)  # all rows are there: nothing is computed
    return model, meta.preprocessing, runtime, features


def last_epoch_predictions(run: Path, info: Any, config: Config) -> tuple[dict[str, np.ndarray],
                                                                           dict[str, np.ndarray], int]:
    import torch

    from artextract.engine.data import CachedSplit
    from artextract.engine.inference import forward_batches

    model, preprocessing, runtime, features = features_and_model(run, info, config)
    tasks = list(config.model.tasks)
    split = CachedSplit(info, "select", tasks, features)
    batch = config.train.batch_size
    chunks = [np.arange(len(split))[i: i + batch] for i in range(0, len(split), batch)]
    predicted: dict[str, list[np.ndarray]] = {t: [] for t in tasks}
    maps = (torch.from_numpy(np.ascontiguousarray(features.maps[split.cache_rows[rows]])) for rows in chunks)
    for out in forward_batches(model, maps, preprocessing, runtime, from_features=True):
        for task in tasks:
            predicted[task].append(out["logits"][task].float().argmax(dim=1).cpu().numpy())
    trainable = model.trained_parameter_count(backbone_frozen=True)
    return ({t: split.labels[:, c] for c, t in enumerate(tasks)},
            {t: np.concatenate(v) for t, v in predicted.items()}, trainable)
