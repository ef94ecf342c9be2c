"""Checkpoints (`last.pt`, `best.pt`) for resuming, and `model.safetensors`, the file `predict` needs alone.

`model.safetensors` metadata (strings): `artextract_format`, `artextract_version`, `classes` (JSON: task -> names),
`model_config` (JSON: the model section), `image_size`, `mean`, `std` (JSON lists).
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from artextract import __version__
from artextract.config import ModelConfig
from artextract.core.atomic import atomic_path
from artextract.errors import ArtExtractError

MODEL_FORMAT = "1"


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ArtExtractError(f"no checkpoint at {path}: nothing to resume (start without --resume)")
    # Our own checkpoints hold RNG states (numpy arrays, tuples) besides tensors; they were written by this
    # program into the run folder, so plain loading is allowed here, unlike for user-supplied weight files.
    return torch.load(path, map_location="cpu", weights_only=False)


@dataclass(frozen=True)
class Preprocessing:
    """How an image becomes model input: decoded to a `cache_size` square (short side resized, centre-cropped),
    then its central `image_size` square, normalised with `mean` and `std`."""

    cache_size: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]


def save_model_file(path: Path, model: nn.Module, classes: dict[str, list[str]], model_config: ModelConfig,
                    preprocessing: Preprocessing) -> None:
    from safetensors.torch import save_file

    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    metadata = {
        "artextract_format": MODEL_FORMAT,
        "artextract_version": __version__,
        "classes": json.dumps(classes, ensure_ascii=False),
        "model_config": json.dumps(asdict(model_config)),
        "cache_size": str(preprocessing.cache_size),
        "image_size": str(preprocessing.image_size),
        "mean": json.dumps(list(preprocessing.mean)),
        "std": json.dumps(list(preprocessing.std)),
    }
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


def read_model_metadata(path: Path) -> dict[str, Any]:
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
        image_size = int(raw["image_size"])
        # Files written before the cache size was recorded used the 224-of-256 convention.
        cache_size = int(raw.get("cache_size", round(image_size * 8 / 7)))
        preprocessing = Preprocessing(cache_size, image_size, tuple(json.loads(raw["mean"])),
                                      tuple(json.loads(raw["std"])))
        return {"classes": json.loads(raw["classes"]), "model_config": config, "image_size": image_size,
                "mean": preprocessing.mean, "std": preprocessing.std, "preprocessing": preprocessing,
                "version": raw.get("artextract_version")}
    except (KeyError, ValueError, TypeError) as err:
        raise ArtExtractError(f"{path}: damaged model metadata ({err!r})") from None


def load_model_file(path: Path) -> tuple[nn.Module, dict[str, Any]]:
    """The model (eval mode, CPU) and its metadata from a `model.safetensors` written by `train`."""
    from safetensors.torch import load_file

    from artextract.models import build_model

    metadata = read_model_metadata(path)
    # Weights come from the file: never fetch or read the backbone's original weights again.
    config = ModelConfig(**{**metadata["model_config"], "weights": "none"})
    model = build_model(config, metadata["classes"])
    try:
        model.load_state_dict(load_file(str(path)))
    except RuntimeError as err:
        raise ArtExtractError(f"{path}: weights do not match the model its metadata describes "
                              f"({str(err).splitlines()[0]})") from None
    return model.eval(), metadata
