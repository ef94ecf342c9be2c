"""Explanations: Grad-CAM on the backbone's last feature map, and the reader's attention over positions.

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
    with _evaluation_mode(model), torch.backends.cudnn.flags(enabled=False), torch.enable_grad():
        feature_map = model.backbone(inputs).detach().requires_grad_(True)
        logits = model.read_map(feature_map)["logits"][task]  # type: ignore[index]
        chosen = logits.gather(1, classes.to(inputs.device).view(-1, 1)).sum()
        (gradient,) = torch.autograd.grad(chosen, feature_map)
    weights = gradient.mean(dim=(2, 3), keepdim=True)
    return _to_view(F.relu((weights * feature_map).sum(dim=1, keepdim=True)), preprocessing, "bilinear")


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
