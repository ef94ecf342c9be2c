"""Explanations: Grad-CAM on the backbone's last feature map, and the reader's attention over positions.

Grad-CAM needs a backward pass through the recurrent reader while the model stays in eval mode (no dropout,
frozen batch statistics). cuDNN refuses an RNN backward in eval mode, so cuDNN is switched off for that pass
only, rather than switching the model to train mode.
"""

from __future__ import annotations

import io

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from artextract.engine.data import center_view
from artextract.models import ConvRecurrentClassifier


def grad_cam(model: ConvRecurrentClassifier, images: torch.Tensor, task: str, classes: torch.Tensor,
             image_size: int, cache_size: int, mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """N x H x W maps in [0, 1] of where the model found evidence for `classes` (one class per image)."""
    model.eval()
    device = next(model.parameters()).device
    inputs = center_view(images.to(device), image_size, cache_size, torch.tensor(mean), torch.tensor(std))
    with torch.backends.cudnn.flags(enabled=False), torch.enable_grad():
        feature_map = model.backbone(inputs).detach().requires_grad_(True)
        embedding, _ = model.reader(feature_map)
        logits = model.heads[task](embedding)
        chosen = logits.gather(1, classes.to(device).view(-1, 1)).sum()
        (gradient,) = torch.autograd.grad(chosen, feature_map)
    weights = gradient.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * feature_map).sum(dim=1, keepdim=True))
    cam = F.interpolate(cam, size=(images.shape[1], images.shape[2]), mode="bilinear", align_corners=False)
    cam = cam.squeeze(1)
    peak = cam.flatten(1).max(dim=1).values.clamp(min=1e-12).view(-1, 1, 1)
    return (cam / peak).detach().cpu().numpy()


def attention_maps(model: ConvRecurrentClassifier, images: torch.Tensor, image_size: int, cache_size: int,
                   mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray | None:
    """N x H x W attention over the feature-map positions (upsampled), or None for readers without attention."""
    model.eval()
    device = next(model.parameters()).device
    inputs = center_view(images.to(device), image_size, cache_size, torch.tensor(mean), torch.tensor(std))
    with torch.no_grad():
        feature_map = model.backbone(inputs)
        _, attention = model.reader(feature_map)
    if attention is None:
        return None
    h, w = feature_map.shape[2:]
    grid = attention.float().view(-1, 1, h, w)
    grid = grid / grid.flatten(1).max(dim=1).values.clamp(min=1e-12).view(-1, 1, 1, 1)
    upsampled = F.interpolate(grid, size=(images.shape[1], images.shape[2]), mode="nearest")
    return upsampled.squeeze(1).cpu().numpy()


def overlay_png(image: np.ndarray, heat: np.ndarray, alpha: float = 0.45) -> bytes:
    """The image with a heat map (blue = none, red = most) blended over it, as PNG bytes."""
    from matplotlib import colormaps

    colours = colormaps["jet"](np.clip(heat, 0, 1))[..., :3]
    blended = (1 - alpha) * image.astype(np.float32) / 255.0 + alpha * colours
    buffer = io.BytesIO()
    Image.fromarray((np.clip(blended, 0, 1) * 255).astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def image_png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()
