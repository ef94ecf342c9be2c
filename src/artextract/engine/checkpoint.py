"""`checkpoints/last.pt` for resuming a run, and `model.safetensors`, the file `predict` needs alone.

`last.pt` holds only tensors and plain containers (RNG states included), so it loads with
`torch.load(weights_only=True)`: a planted pickle cannot run code on `--resume`.

`model.safetensors` metadata (strings): `artextract_format`, `artextract_version`, `classes` (JSON: task -> names),
`model_config` (JSON: the model section), the preprocessing (`cache_size`, `image_size`, `mean`, `std`) and
`temperature` (JSON: task -> the temperature fitted on the selection set; 1 in files written before it was).
"""

from __future__ import annotations

import json
import math
import os
import pickle
import random
import re
import warnings
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from artextract.config import ModelConfig
from artextract.core.atomic import atomic_path
from artextract.core.version import VERSION
from artextract.engine.preprocessing import Preprocessing
from artextract.errors import ArtExtractError

if TYPE_CHECKING:
    from artextract.engine.runtime import Runtime

MODEL_FORMAT = "1"


def rng_state() -> dict[str, Any]:
    """Every random generator's state as tensors and plain values (loadable with weights_only=True)."""
    kind, keys, position, has_gauss, cached = np.random.get_state()
    state = {"python": random.getstate(),
             "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, cached],
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def previous_checkpoint(path: Path) -> Path:
    """Where the state before the latest one is kept: offered when the latest is damaged."""
    return path.with_name(path.name + ".prev")


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
        if path.is_file():
            os.replace(path, previous_checkpoint(path))


def resume_hint(path: Path) -> str:
    """What to do when the checkpoint at `path` is missing or damaged: the previous state, if one is kept."""
    previous = previous_checkpoint(path)
    if previous.is_file():
        return (f"; the state saved before it is in {previous.name}: `mv {previous} {path}` and resume again, "
                "or start the run anew with --force instead of --resume")
    # --force: the folder is not empty (config.yaml and the rest were written at the start), and a plain start
    # would be refused as such; --force removes what the run wrote and keeps the user's own files.
    return "; start the run anew with --force instead of --resume (it replaces what this run had written)"


def load_checkpoint(path: Path) -> dict[str, Any]:
    fallback = resume_hint(path)
    if not path.is_file():
        raise ArtExtractError(f"no checkpoint at {path}: nothing to resume{fallback}")
    try:
        with warnings.catch_warnings():
            # A file not written by torch.save (pickle protocol > 2) makes torch warn before it refuses the file.
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as err:
        reason = (str(err).splitlines() or [type(err).__name__ + ", an empty or cut-off file"])[0][:160]
        raise ArtExtractError(f"{path} is damaged or holds more than tensors (refused to unpickle it: "
                              f"{reason}){fallback}") from None


@dataclass(frozen=True)
class ModelInfo:
    """What a model file says about itself."""

    classes: dict[str, list[str]]
    model_config: dict[str, Any]
    preprocessing: Preprocessing
    version: str | None
    temperature: dict[str, float]  # per task: divide the logits by it for calibrated probabilities


def save_model_file(path: Path, model: nn.Module, classes: dict[str, list[str]], model_config: ModelConfig,
                    preprocessing: Preprocessing, temperature: dict[str, float] | None = None) -> None:
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    metadata = {"artextract_format": MODEL_FORMAT, "artextract_version": VERSION,
                "classes": json.dumps(classes, ensure_ascii=False), "model_config": json.dumps(asdict(model_config)),
                "temperature": json.dumps(temperature or dict.fromkeys(classes, 1.0)), **preprocessing.to_metadata()}
    with atomic_path(path) as tmp:
        try:
            save_file(tensors, str(tmp), metadata=metadata)
        except SafetensorError as err:  # the Rust writer reports a full disk as text: the same OSError as elsewhere
            code = re.search(r"code: (\d+)", str(err))
            if code is None:
                raise
            raise OSError(int(code.group(1)), os.strerror(int(code.group(1))), str(path)) from None


def read_model_metadata(path: Path) -> ModelInfo:
    """Classes, model config and preprocessing from a model file; older files of the same format load too."""
    from safetensors import SafetensorError, safe_open

    if not path.is_file():
        raise ArtExtractError(f"model file {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as handle:
            raw = handle.metadata() or {}
    except (SafetensorError, OSError) as err:
        raise ArtExtractError(f"{path} is not a readable model file ({err})") from None
    if raw.get("artextract_format") != MODEL_FORMAT:
        found = raw.get("artextract_format", "none")
        raise ArtExtractError(f"{path} is not an ArtExtract model of format {MODEL_FORMAT} (found {found}); "
                              "use a model.safetensors written by `artextract train`")
    try:
        config = json.loads(raw["model_config"])
        known = {f.name for f in fields(ModelConfig)}
        newer = sorted(set(config) - known)
        if newer:
            raise ArtExtractError(f"{path} was written by a newer ArtExtract ({raw.get('artextract_version')}) with "
                                  f"model options this version lacks ({', '.join(newer)}); upgrade artextract")
        classes = json.loads(raw["classes"])
        if not isinstance(classes, dict) or not all(isinstance(names, list) and names and
                                                    all(isinstance(n, str) for n in names)
                                                    for names in classes.values()):
            raise ValueError(f"'classes' must map each task to its list of class names, got a "
                             f"{type(classes).__name__}")
        temperature = {task: 1.0 for task in classes} | json.loads(raw.get("temperature", "{}"))
        if not all(isinstance(t, int | float) and math.isfinite(t) and t > 0 for t in temperature.values()):
            raise ValueError(f"temperatures must be positive numbers, got {temperature}")
        return ModelInfo(classes, config, Preprocessing.from_metadata(raw), raw.get("artextract_version"),
                         {task: float(t) for task, t in temperature.items()})
    except (KeyError, ValueError, TypeError) as err:
        raise ArtExtractError(f"{path}: damaged model metadata ({err!r})") from None


def load_model_file(path: Path, runtime: Runtime | None = None) -> tuple[nn.Module, ModelInfo]:
    """The model (eval mode; on the CPU, or placed by `runtime`: device, channels_last) and its metadata from a
    `model.safetensors` written by `train`."""
    from safetensors.torch import load_file

    from artextract.config import Config
    from artextract.config_files import apply_mapping
    from artextract.errors import ConfigError
    from artextract.models import build_model
    from artextract.models.readers import reader_kind

    info = read_model_metadata(path)
    try:
        # The same types, choices and ranges as a config file: a hand-edited reader "tcn" or hidden size of 60,000
        # would fail deep inside, or allocate tens of GB. Weights come from the file: never fetch them again.
        config = apply_mapping(Config(), {"model": {**info.model_config, "weights": "none"}}).validate().model
        reader_kind(config.reader)
    except (ConfigError, TypeError) as err:
        raise ArtExtractError(f"{path}: its model metadata is out of range ({err}); use a model file written by "
                              "`artextract train`") from None
    state = load_file(str(path))
    broken = [name for name, tensor in state.items() if tensor.is_floating_point() and not tensor.isfinite().all()]
    if broken:
        raise ArtExtractError(f"{path}: {len(broken)} weight tensors hold NaN or infinite values (first: "
                              f"{broken[0]}); the training that wrote it diverged. Use another model file")
    model = build_model(config, info.classes)
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise ArtExtractError(f"{path}: weights do not match the model its metadata describes "
                              f"({str(err).splitlines()[0]})") from None
    return (runtime.place(model) if runtime is not None else model).eval(), info
