"""CNN backbones through timm: every family returns an N x C x H x W feature map here.

Partial fine-tuning: `tuned_stages` = n splits a staged CNN (EfficientNet / MobileNet-style `blocks`, ResNet's
`layer1..4`) into a frozen part (stem and every stage but the last n) and a tuned part (the last n stages and
what follows them). A frozen backbone's cache then holds the maps entering the tuned stages, and training runs
only the tuned part from them: the late stages adapt to paintings at a fraction of full fine-tuning's cost.

Pyramid representation (`representation="pyramid"`): instead of the last map, every stage's channel means and
standard deviations (first and second moments: the texture statistics style recognition relies on), concatenated
as an N x D x 1 x 1 "map" that a `PyramidReader` reads as a sequence of stages.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from artextract.errors import ArtExtractError, ConfigError
from artextract.models.weights import (
    check_imagenet_available,
    imagenet_hint,
    load_backbone_weights,
    packaged_weights_file,
)


def stage_plan(model: nn.Module) -> tuple[list[nn.Module], list[nn.Module], list[nn.Module]] | None:
    """(stem, stages, after): modules that, run in this order, compute `model.forward_features`; None for a
    family not laid out in stages here (transformers, ...)."""
    if all(hasattr(model, name) for name in ("conv_stem", "bn1", "blocks", "conv_head", "bn2")):  # EfficientNet
        return [model.conv_stem, model.bn1], list(model.blocks), [model.conv_head, model.bn2]
    if all(hasattr(model, name) for name in ("conv1", "bn1", "act1", "maxpool", "layer4")):  # ResNet
        return ([model.conv1, model.bn1, model.act1, model.maxpool],
                [getattr(model, f"layer{i}") for i in range(1, 5)], [])
    return None


class _Chain(nn.Module):
    """Modules run one after the other (the frozen part of a split backbone); shares them, owns nothing new."""

    def __init__(self, parts: list[nn.Module]) -> None:
        super().__init__()
        self.parts = nn.ModuleList(parts)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        for part in self.parts:
            inputs = part(inputs)
        return inputs


class Backbone(nn.Module):
    """A head-less timm model whose `forward` returns the last feature map as N x C x H x W; with `tuned_stages`,
    `frozen_part()` computes the maps entering the last stages and `tail` finishes the map from them."""

    def __init__(self, model: nn.Module, tuned_stages: int = 0, representation: str = "map",
                 output_stride: int = 32) -> None:
        super().__init__()
        self.model = model
        self.tuned_stages, self.representation, self.output_stride = tuned_stages, representation, output_stride
        plan = stage_plan(model)
        if tuned_stages and (plan is None or tuned_stages > len(plan[1])):
            available = f"it has {len(plan[1])} stages" if plan else "it is not a staged CNN this version can split"
            raise ConfigError(f"model.tuned_stages={tuned_stages} for {type(model).__name__}: {available}; use 0 "
                              "(freeze it all) or a smaller count")
        if representation == "pyramid" and (plan is None or tuned_stages):
            raise ConfigError(f"model.representation=pyramid needs a staged CNN ({type(model).__name__} is not one "
                              "this version reads stage by stage) and model.tuned_stages=0")
        # Plain lists, not submodules: the modules are registered once, under `model`.
        self._plan = plan
        self._frozen_modules = [*plan[0], *plan[1][:-tuned_stages]] if plan and tuned_stages else []
        self._tuned_modules = [*plan[1][-tuned_stages:], *plan[2]] if plan and tuned_stages else []
        self.num_features = int(model.num_features)
        # Channels of each pyramid level's statistics (means then standard deviations), in order fine -> coarse.
        self.level_channels = self._probe_levels() if representation == "pyramid" else []
        if self.level_channels:
            self.num_features = sum(self.level_channels)
        self.num_prefix_tokens = int(getattr(model, "num_prefix_tokens", 0))
        cfg = getattr(model, "pretrained_cfg", None) or {}
        self.mean = tuple(cfg.get("mean", (0.485, 0.456, 0.406)))
        self.std = tuple(cfg.get("std", (0.229, 0.224, 0.225)))

    @property
    def cache_tag(self) -> str:
        """What, besides the weights and preprocessing, makes a cache row: "" for the last map at the network's own
        stride (dilation changes the maps, not the weights)."""
        kind = f"tune{self.tuned_stages}" if self.tuned_stages else "pyramid" if self.level_channels else ""
        return "-".join(part for part in (f"os{self.output_stride}" if self.output_stride != 32 else "", kind) if part)

    def _probe_levels(self) -> list[int]:
        was_training = self.model.training
        self.model.eval()  # one image: batch statistics would be undefined
        with torch.no_grad():
            levels = self._levels(torch.zeros(1, 3, 64, 64))
        self.model.train(was_training)
        return [int(level.shape[1]) for level in levels]

    def _levels(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Every stage's (and the head convolution's) channel means and standard deviations."""
        return [moments(level) for level in self.level_maps(images)]

    def level_maps(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The maps whose statistics make the pyramid: every stage's output and the head convolution's, fine to
        coarse (what an explanation of a pyramid model looks at)."""
        assert self._plan is not None
        stem, stages, after = self._plan
        outputs, maps = images, []
        for module in stem:
            outputs = module(outputs)
        for stage in stages:
            outputs = stage(outputs)
            maps.append(outputs)
        for module in after:
            outputs = module(outputs)
        if after:
            maps.append(outputs)
        return maps

    def frozen_part(self) -> nn.Module:
        """The module whose output a frozen backbone's cache holds: the whole backbone, or the part before the
        tuned stages."""
        if not self.tuned_stages:
            return self
        chain = _Chain(self._frozen_modules)
        chain.training = self.training  # forward_batches restores this mode on the shared modules afterwards
        return chain

    def tuned_parameters(self) -> list[nn.Parameter]:
        """The parameters that train while the backbone is frozen (those of the tuned stages)."""
        return [p for module in self._tuned_modules for p in module.parameters()]

    def set_frozen(self, frozen: bool) -> None:
        """Freeze all but the tuned stages, or make everything trainable again."""
        self.requires_grad_(not frozen)
        for parameter in self.tuned_parameters():
            parameter.requires_grad_(True)

    def tail(self, cached: torch.Tensor) -> torch.Tensor:
        """The last feature map from the frozen part's output (a cache row); the identity without tuned stages."""
        if not self.tuned_stages:
            return cached
        # The cache is read as contiguous N x C x H x W; the convolutions run faster channels-last on both devices.
        outputs = cached.contiguous(memory_format=torch.channels_last)
        for module in self._tuned_modules:
            outputs = module(outputs)
        return outputs

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.level_channels:
            return torch.cat(self._levels(images), dim=1)[:, :, None, None]
        features = self.model.forward_features(images)
        if features.ndim == 3:  # transformer tokens: drop class tokens, lay the rest out as a grid
            tokens = features[:, self.num_prefix_tokens:]
            side = round(tokens.shape[1] ** 0.5)
            grid = (side, side) if side * side == tokens.shape[1] else (1, tokens.shape[1])
            return tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], *grid)
        if features.shape[1] != self.num_features and features.shape[-1] == self.num_features:
            features = features.permute(0, 3, 1, 2)  # channels-last families (e.g. Swin)
        return features


def moments(maps: torch.Tensor) -> torch.Tensor:
    """N x 2C: each channel's mean and standard deviation over the positions (in float32: bf16 variances are coarse)."""
    maps = maps.float()
    mean = maps.mean(dim=(2, 3))
    spread = (maps.var(dim=(2, 3), unbiased=False) + 1e-5).sqrt()  # eps: finite gradients on a constant channel
    return torch.cat([mean, spread], dim=1)


def check_backbone_name(name: str) -> None:
    """Refuse a name timm does not know, suggesting the closest ones (`resnet-18` -> resnet18)."""
    import difflib

    import timm

    if timm.is_model(name):  # "arch" or "arch.tag"; the tag picks the weights' preprocessing (mean, std)
        return
    names = timm.list_models()
    plain = {n.replace("_", "").replace("-", ""): n for n in names}
    wanted = name.split(".")[0].lower().replace("_", "").replace("-", "")
    close = [plain[n] for n in difflib.get_close_matches(wanted, list(plain), n=5, cutoff=0.75)]
    close = close or [n for n in names if wanted and wanted in n.replace("_", "")][:5]
    hint = f"; did you mean {', '.join(close)}?" if close else "; `timm.list_models()` lists them"
    raise ArtExtractError(f"unknown backbone {name!r} (any timm model name works){hint}")


def create_backbone(name: str, weights: str = "none", tuned_stages: int = 0, representation: str = "map",
                    output_stride: int = 32) -> Backbone:
    """`weights`: "none", "imagenet" (an installed package's file first, else the hub), or the path of a
    .safetensors / .pth file. `tuned_stages`: see the module's docstring. `output_stride` 16 or 8: the last stages
    dilated instead of strided (timm's option; the families that lack it say so)."""
    import timm

    check_backbone_name(name)
    if weights == "imagenet":
        packaged = packaged_weights_file(name)
        weights = str(packaged) if packaged is not None else weights
    from_hub = weights == "imagenet"
    if from_hub:
        check_imagenet_available(name)
    dilation = {"output_stride": output_stride} if output_stride != 32 else {}  # not every family takes the key
    try:
        model = timm.create_model(name, pretrained=from_hub, num_classes=0, **dilation)
    except TypeError as err:
        if not dilation:
            raise
        raise ConfigError(f"model.output_stride={output_stride}: {name} cannot be dilated ({err}); use 32") from None
    except Exception as err:  # download and cache errors come in many types from several libraries
        if not from_hub:
            raise
        raise ArtExtractError(f"could not load ImageNet weights for {name} ({str(err).splitlines()[0][:160]}); "
                              f"{imagenet_hint(name)}") from None
    backbone = Backbone(model, tuned_stages, representation, output_stride)
    if weights not in ("none", "imagenet"):
        head = (getattr(model, "pretrained_cfg", None) or {}).get("classifier", "fc")
        heads = (head,) if isinstance(head, str) else tuple(head)
        # Classifier weights in the file (timm's name for this family, or the usual ones) are dropped.
        load_backbone_weights(model, Path(weights), (*(h.split(".")[0] for h in heads), "fc", "head", "classifier"))
    return backbone
