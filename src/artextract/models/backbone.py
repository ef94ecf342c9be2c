"""CNN backbones through timm: every family returns an N x C x H x W feature map here."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from artextract.errors import ArtExtractError
from artextract.models.weights import (
    check_imagenet_available,
    imagenet_hint,
    load_backbone_weights,
    packaged_weights_file,
)


class Backbone(nn.Module):
    """A head-less timm model whose `forward` returns the last feature map as N x C x H x W."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.num_features = int(model.num_features)
        self.num_prefix_tokens = int(getattr(model, "num_prefix_tokens", 0))
        cfg = getattr(model, "pretrained_cfg", None) or {}
        self.mean = tuple(cfg.get("mean", (0.485, 0.456, 0.406)))
        self.std = tuple(cfg.get("std", (0.229, 0.224, 0.225)))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.model.forward_features(images)
        if features.ndim == 3:  # transformer tokens: drop class tokens, lay the rest out as a grid
            tokens = features[:, self.num_prefix_tokens:]
            side = round(tokens.shape[1] ** 0.5)
            grid = (side, side) if side * side == tokens.shape[1] else (1, tokens.shape[1])
            return tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], *grid)
        if features.shape[1] != self.num_features and features.shape[-1] == self.num_features:
            features = features.permute(0, 3, 1, 2)  # channels-last families (e.g. Swin)
        return features


def create_backbone(name: str, weights: str = "none") -> Backbone:
    """`weights`: "none", "imagenet" (an installed package's file first, else the hub), or the path of a
    .safetensors / .pth file."""
    import timm

    if not timm.list_models(name) and name not in timm.list_models(pretrained=False):
        close = timm.list_models(f"*{name.split('_')[0]}*")[:5]
        hint = f"; similar: {', '.join(close)}" if close else ""
        raise ArtExtractError(f"unknown backbone {name!r} (any timm model name works){hint}")
    if weights == "imagenet":
        packaged = packaged_weights_file(name)
        weights = str(packaged) if packaged is not None else weights
    from_hub = weights == "imagenet"
    if from_hub:
        check_imagenet_available(name)
    try:
        model = timm.create_model(name, pretrained=from_hub, num_classes=0)
    except Exception as err:  # download and cache errors come in many types from several libraries
        if not from_hub:
            raise
        raise ArtExtractError(f"could not load ImageNet weights for {name} ({str(err).splitlines()[0][:160]}); "
                              f"{imagenet_hint(name)}") from None
    backbone = Backbone(model)
    if weights not in ("none", "imagenet"):
        head = (getattr(model, "pretrained_cfg", None) or {}).get("classifier", "fc")
        heads = (head,) if isinstance(head, str) else tuple(head)
        # Classifier weights in the file (timm's name for this family, or the usual ones) are dropped.
        load_backbone_weights(model, Path(weights), (*(h.split(".")[0] for h in heads), "fc", "head", "classifier"))
    return backbone
