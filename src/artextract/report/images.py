"""PNG pictures for reports and `predict --cam`: a painting, or a heat map blended over it."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def overlay_png(image: np.ndarray, heat: np.ndarray, alpha: float = 0.45) -> bytes:
    """The image with a heat map of the same height and width (blue = none, red = most) blended over it."""
    from matplotlib import colormaps

    assert heat.shape == image.shape[:2], "a heat map is drawn over the pixels it was computed on"
    colours = colormaps["jet"](np.clip(heat, 0, 1))[..., :3]
    blended = (1 - alpha) * image.astype(np.float32) / 255.0 + alpha * colours
    return image_png((np.clip(blended, 0, 1) * 255).astype(np.uint8))


def image_png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buffer, format="PNG")
    return buffer.getvalue()
