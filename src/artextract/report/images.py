"""Pictures for reports and `predict --cam`: a painting, or a heat map blended over it, encoded as PNG or JPEG.

The report embeds JPEG (a 224 px painting is ~15 KB against ~120 KB as PNG, which is what keeps report.html
small enough to send by e-mail); `predict --cam` writes lossless PNG for the user to process further.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

REPORT_FORMAT, REPORT_QUALITY = "JPEG", 85


def blend(image: np.ndarray, heat: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """The image with a heat map of the same height and width (blue = none, red = most) blended over it."""
    from matplotlib import colormaps

    assert heat.shape == image.shape[:2], "a heat map is drawn over the pixels it was computed on"
    colours = colormaps["jet"](np.clip(heat, 0, 1))[..., :3]
    blended = (1 - alpha) * image.astype(np.float32) / 255.0 + alpha * colours
    return (np.clip(blended, 0, 1) * 255).astype(np.uint8)


def encode(image: np.ndarray, image_format: str = "PNG") -> bytes:
    """`image` (H x W x 3 uint8) as PNG or JPEG bytes."""
    buffer = io.BytesIO()
    options = {"quality": REPORT_QUALITY} if image_format == "JPEG" else {}
    Image.fromarray(np.ascontiguousarray(image)).save(buffer, format=image_format, **options)
    return buffer.getvalue()


def overlay_png(image: np.ndarray, heat: np.ndarray) -> bytes:
    return encode(blend(image, heat), "PNG")
