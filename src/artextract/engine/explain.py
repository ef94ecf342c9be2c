"""Explanations: Grad-CAM on the backbone's last feature map (or, for the pyramid of stage statistics, on the
stage that weighs most), and the reader's attention over positions.

Both maps are returned at the size of the evaluation view (`Preprocessing.visible`): the pixels the model saw,
so a map drawn over `visible(square)` is registered to the image it explains.

Grad-CAM needs a backward pass through the recurrent reader while the model stays in eval mode (no dropout,
frozen batch statistics). cuDNN refuses an RNN backward in eval mode, so cuDNN is switched off for that pass
only, rather than switching the model to train mode.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F

from artextract.engine.preprocessing import Preprocessing
from artextract.models import ConvRecurrentClassifier
from artextract.models.backbone import moments


@contextmanager
def _evaluation_mode(model: ConvRecurrentClassifier) -> Iterator[None]:
    """The model in eval mode for the explanation (no dropout, frozen batch statistics), and in the mode it was in
    afterwards: explaining a model mid-training must not leave it in eval mode."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _inputs(model: ConvRecurrentClassifier, squares: torch.Tensor, preprocessing: Preprocessing) -> torch.Tensor:
    return preprocessing.eval_view(squares.to(next(model.parameters()).device))


def _to_view(maps: torch.Tensor, preprocessing: Preprocessing, mode: str) -> np.ndarray:
    """N x 1 x h x w maps -> N x side x side in [0, 1], side = the evaluation view's side in square pixels."""
    side = preprocessing.view_box[1]
    maps = F.interpolate(maps, size=(side, side), mode=mode, align_corners=None if mode == "nearest" else False)
    maps = maps.squeeze(1)
    peak = maps.flatten(1).max(dim=1).values.clamp(min=1e-12).view(-1, 1, 1)
    return (maps / peak).detach().float().cpu().numpy()


def grad_cam(model: ConvRecurrentClassifier, squares: torch.Tensor, task: str, classes: torch.Tensor,
             preprocessing: Preprocessing) -> np.ndarray:
    """N x side x side maps of where the model found evidence for `classes` (one class per uint8 square)."""
    inputs = _inputs(model, squares, preprocessing)
    if _reads_pyramid(model):  # a 1 x 1 "map" of statistics: nothing spatial to weigh
        return _pyramid_grad_cam(model, inputs, task, classes, preprocessing)
    with _evaluation_mode(model), torch.backends.cudnn.flags(enabled=False), torch.enable_grad():
        feature_map = model.backbone(inputs).detach().requires_grad_(True)
        logits = model.read_map(feature_map)["logits"][task]  # type: ignore[index]
        chosen = logits.gather(1, classes.to(inputs.device).view(-1, 1)).sum()
        (gradient,) = torch.autograd.grad(chosen, feature_map)
    weights = gradient.mean(dim=(2, 3), keepdim=True)
    return _to_view(F.relu((weights * feature_map).sum(dim=1, keepdim=True)), preprocessing, "bilinear")


def _reads_pyramid(model: ConvRecurrentClassifier) -> bool:
    """Whether the model reads the pyramid of stage statistics (stand-in backbones in tests have no levels)."""
    return bool(getattr(model.backbone, "level_channels", None))


def _pyramid_grad_cam(model: ConvRecurrentClassifier, inputs: torch.Tensor, task: str, classes: torch.Tensor,
                      preprocessing: Preprocessing) -> np.ndarray:
    """Grad-CAM for a model reading the pyramid of stage statistics. The class's logit depends on each stage's map
    only through that map's channel means and deviations; the gradient flows through them back to the map, which
    gives each stage a Grad-CAM. Drawn per painting: the stage whose statistics contribute most to the logit
    (gradient x statistic, summed over its channels)."""
    with _evaluation_mode(model), torch.backends.cudnn.flags(enabled=False):
        with torch.no_grad():
            levels = model.backbone.level_maps(inputs)
        with torch.enable_grad():
            maps = [level.detach().float().requires_grad_(True) for level in levels]
            statistics = [moments(level) for level in maps]
            logits = model.read_map(torch.cat(statistics, dim=1)[:, :, None, None])["logits"][task]  # type: ignore[index]
            chosen = logits.gather(1, classes.to(inputs.device).view(-1, 1)).sum()
            gradients = torch.autograd.grad(chosen, [*maps, *statistics])
    map_gradients, statistic_gradients = gradients[:len(maps)], gradients[len(maps):]
    contribution = torch.stack([(g * s).sum(dim=1) for g, s in zip(statistic_gradients, statistics, strict=True)], 1)
    views = np.stack([_to_view(F.relu((g.mean(dim=(2, 3), keepdim=True) * m).sum(dim=1, keepdim=True)), preprocessing,
                               "bilinear") for g, m in zip(map_gradients, maps, strict=True)], axis=1)
    strongest = contribution.argmax(dim=1).cpu().numpy()
    return views[np.arange(len(views)), strongest]


def explanation_method(model: ConvRecurrentClassifier) -> str:
    """How `grad_cam` explains this model, for the page that shows its maps."""
    if _reads_pyramid(model):
        return ("Grad-CAM of the predicted class at the pyramid stage whose statistics weigh most for it (the "
                "gradient through that stage's channel means and deviations, back to its map)")
    return "Grad-CAM of the predicted class on the backbone's last feature map"


@torch.no_grad()
def attention_maps(model: ConvRecurrentClassifier, squares: torch.Tensor,
                   preprocessing: Preprocessing) -> np.ndarray | None:
    """N x side x side attention over the feature-map positions, or None for readers without attention."""
    with _evaluation_mode(model):
        feature_map = model.backbone(_inputs(model, squares, preprocessing))
        attention = model.read_map(feature_map).get("attention")
    if attention is None:
        return None
    h, w = feature_map.shape[2:]
    return _to_view(attention.float().view(-1, 1, h, w), preprocessing, "nearest")
