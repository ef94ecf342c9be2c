"""Backbone weights from a local file (.safetensors or .pth, torchvision or timm key names) or ImageNet.

Loading never unpickles arbitrary objects: `.pth` files go through `torch.load(weights_only=True)`, which only
rebuilds tensors and plain containers.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from artextract.errors import ArtExtractError

_WRAPPER_KEYS = ("state_dict", "model", "model_state", "module", "weights")
_KEY_PREFIXES = ("module.", "model.", "backbone.", "_orig_mod.")
_HUB_HOST = ("huggingface.co", 443)
_PROBE_TIMEOUT_S = 3.0


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a weight file, unwrapped from common checkpoint containers; never runs pickled code."""
    if not path.is_file():
        raise ArtExtractError(f"weights file {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            state = load_file(str(path))
        except (SafetensorError, OSError, ValueError) as err:
            raise ArtExtractError(f"{path} is not a readable safetensors file ({err})") from None
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # the unpickler raises many types; each means "not plain tensors"
            reason = str(err).splitlines()[0][:200]
            raise ArtExtractError(f"{path} is not a plain weight file (refused to unpickle anything else: "
                                  f"{reason}); save a state dict or use .safetensors") from None
    while isinstance(state, Mapping) and not any(isinstance(v, torch.Tensor) for v in state.values()):
        inner = next((state[k] for k in _WRAPPER_KEYS if k in state and isinstance(state[k], Mapping)), None)
        if inner is None:
            break
        state = inner
    if not isinstance(state, Mapping) or not state:
        raise ArtExtractError(f"{path} holds no tensors; expected a state dict of a {path.suffix} checkpoint")
    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    for prefix in _KEY_PREFIXES:  # wrappers such as DataParallel or torch.compile add these
        if tensors and all(k.startswith(prefix) for k in tensors):
            tensors = {k[len(prefix):]: v for k, v in tensors.items()}
    return tensors


def load_backbone_weights(backbone: nn.Module, path: Path, head_names: tuple[str, ...]) -> None:
    """Load `path` into a head-less timm backbone; classifier weights in the file are dropped.

    Any other missing, unexpected or wrongly shaped key is an error naming the keys.
    """
    state = read_state_dict(path)
    module = sys.modules.get(type(backbone).__module__)
    filter_fn = getattr(module, "checkpoint_filter_fn", None)
    if filter_fn is not None:  # timm's converter from other key layouts (original repos, torchvision, ...)
        # A converter that does not apply raises; the plain keys are then compared below.
        with contextlib.suppress(Exception):
            state = filter_fn(state, backbone)
    own = backbone.state_dict()
    head = {k for k in state if k.split(".")[0] in head_names and k not in own}
    unexpected = sorted(set(state) - set(own) - head)
    missing = sorted(k for k in own if k not in state and not k.endswith("num_batches_tracked"))
    shapes = sorted(f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in set(state) & set(own)
                    if state[k].shape != own[k].shape)
    problems = []
    if missing:
        problems.append(f"missing {len(missing)} keys ({', '.join(missing[:8])})")
    if unexpected:
        problems.append(f"unexpected {len(unexpected)} keys ({', '.join(unexpected[:8])})")
    if shapes:
        problems.append(f"wrong shapes: {'; '.join(shapes[:8])}")
    if problems:
        raise ArtExtractError(f"weights {path} do not fit backbone {type(backbone).__name__}: "
                              + "; ".join(problems))
    backbone.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)


def hub_reachable(timeout: float = _PROBE_TIMEOUT_S) -> bool:
    """Whether the model hub answers at all (a quick TCP probe, so an offline machine fails in seconds)."""
    try:
        with socket.create_connection(_HUB_HOST, timeout=timeout):
            return True
    except OSError:
        return False


def check_imagenet_available(backbone_name: str) -> None:
    """Fail fast, with what to do instead, when ImageNet weights cannot be downloaded."""
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes"}
    if not offline and not hub_reachable():
        raise ArtExtractError(
            f"cannot download ImageNet weights for {backbone_name}: the model hub is unreachable. Pass "
            "--weights PATH with a local .safetensors or .pth file (e.g. a torchvision resnet18 state dict), "
            "or set HF_HUB_OFFLINE=1 to use a copy already in the cache")
