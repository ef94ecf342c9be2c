"""The one path from an image to model input, for training, selection, evaluate, Grad-CAM and predict alike.

An image is first decoded to a `cache_size` square (short side resized, long side centre-cropped: what
`prepare` stores in the cache, and what `predict` does to a new file or in-memory image). From that uint8 square:
- the **evaluation view** is its central `image_size` square (224 of 256, as resize-256 + centre-crop-224 does),
  resized up when the cache is smaller than the model input;
- the **training view** is a random resized crop and flip of the whole square, drawn on the device.
Both return normalised float N x 3 x image_size x image_size tensors. `Preprocessing` travels in the metadata of
`model.safetensors`, so every consumer of a model uses the geometry it was trained with.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

from artextract.config import DEFAULT_MAX_PIXELS
from artextract.data.decode import SkipImage, decode_square, square_array
from artextract.data.image_source import UnreadableFile, read_regular_file
from artextract.errors import ArtExtractError

_MAX_SIDE = 4096  # pixels: far beyond any model input here; a typo (30,000) would allocate gigabytes

ImageInput = str | Path | Image.Image | np.ndarray


@dataclass(frozen=True)
class Preprocessing:
    cache_size: int  # side of the decoded square
    image_size: int  # side of the model input
    mean: tuple[float, ...]
    std: tuple[float, ...]

    # ------------------------------------------------------------ metadata (strings, as safetensors stores them)

    def to_metadata(self) -> dict[str, str]:
        return {"cache_size": str(self.cache_size), "image_size": str(self.image_size),
                "mean": json.dumps(list(self.mean)), "std": json.dumps(list(self.std))}

    @classmethod
    def from_metadata(cls, raw: dict[str, str]) -> Preprocessing:
        image_size = int(raw["image_size"])
        # Files written before the cache size was recorded used the 224-of-256 convention.
        cache_size = int(raw.get("cache_size", round(image_size * 8 / 7)))
        mean, std = json.loads(raw["mean"]), json.loads(raw["std"])
        # Checked here: a size of 0 or 30,000 (MemoryError), a short mean or a zero std (NaN probabilities shown
        # as valid) would otherwise surface far from the file that caused them.
        if not (8 <= image_size <= _MAX_SIDE and 8 <= cache_size <= _MAX_SIDE):
            raise ValueError(f"image_size {image_size} and cache_size {cache_size} must be in [8, {_MAX_SIDE}]")
        for name, values in (("mean", mean), ("std", std)):
            if not (isinstance(values, list) and len(values) == 3
                    and all(isinstance(v, int | float) and math.isfinite(v) for v in values)):
                raise ValueError(f"{name} must be 3 finite numbers (R, G, B), got {values!r}")
        if min(std) <= 0:
            raise ValueError(f"std must be positive, got {std!r}")
        return cls(cache_size, image_size, tuple(mean), tuple(std))

    def check_cache(self, cache_size: int, folder: Path) -> None:
        """Refuse a DATA folder whose cached squares differ from the ones the model was trained on."""
        if cache_size != self.cache_size:
            raise ArtExtractError(
                f"{folder} caches {cache_size} px squares but the model was trained on {self.cache_size} px ones: "
                f"its predictions there would not be the model's. Prepare a DATA folder with --cache-size "
                f"{self.cache_size}, or evaluate on the one the run was trained on")

    # ------------------------------------------------------------ decoding (predict's inputs)

    def decode(self, item: ImageInput) -> tuple[np.ndarray, int, int]:
        """(uint8 `cache_size` square, width, height) of a file, PIL image or H x W (x 3) array; SkipImage says
        why it cannot be used."""
        if isinstance(item, np.ndarray):
            item = _array_image(item)
        if isinstance(item, Image.Image):
            width, height = item.size
            if item.format == "JPEG" and getattr(item, "fp", None) is not None:
                item.draft("RGB", (self.cache_size, self.cache_size))  # as the cache decoded it
            return square_array(ImageOps.exif_transpose(item), self.cache_size), width, height
        try:
            data = read_regular_file(Path(item))
        except UnreadableFile as err:
            raise SkipImage(str(err)) from None
        return decode_square(data, self.cache_size, DEFAULT_MAX_PIXELS)

    def doubts(self, width: int, height: int) -> str:
        """Why the model may not be able to judge an image of this size ("" when it can)."""
        short, long = sorted((width, height))
        if short * 4 <= self.image_size:
            return (f"only {width}x{height} pixels: enlarged {self.image_size / short:.0f}x to the model's "
                    f"{self.image_size} px input, too small to judge")
        if long > 3 * short:
            return (f"{width}x{height} is a strip: the square centre crop the model sees keeps {short / long:.0%} "
                    "of it")
        return ""

    # ------------------------------------------------------------ geometry

    @property
    def view_box(self) -> tuple[int, int]:
        """(offset, side) of the evaluation view inside the decoded square, in its pixels."""
        if self.image_size < self.cache_size:
            return (self.cache_size - self.image_size) // 2, self.image_size
        return 0, self.cache_size

    def visible(self, square: np.ndarray) -> np.ndarray:
        """The part of a decoded square (H x W x 3) that the evaluation view shows the model."""
        offset, side = self.view_box
        return square[offset: offset + side, offset: offset + side]

    # ------------------------------------------------------------ the two views

    def eval_view(self, batch: torch.Tensor, channels_last: bool = False) -> torch.Tensor:
        """uint8 N x S x S x 3 (on any device) -> normalised float N x 3 x image_size x image_size there."""
        images = _to_float_nchw(batch, channels_last)
        offset, side = self.view_box
        images = images[:, :, offset: offset + side, offset: offset + side]
        if side != self.image_size:
            images = F.interpolate(images, size=(self.image_size, self.image_size), mode="bilinear",
                                   align_corners=False, antialias=False)
        return self._normalise(images)

    def train_view(self, batch: torch.Tensor, generator: torch.Generator, min_scale: float = 0.35,
                   hflip: bool = True, channels_last: bool = False) -> torch.Tensor:
        """Random resized crop (area share in [min_scale, 1], aspect ratio in [3/4, 4/3]) and horizontal flip of
        a uint8 N x S x S x 3 batch, by one `grid_sample` call on the batch's device.

        No colour jitter: colour is evidence of the artist.
        """
        n, device = batch.shape[0], batch.device
        images = _to_float_nchw(batch, channels_last)
        uniform = torch.rand(n, 5, generator=generator, device=generator.device).to(device)
        area = min_scale + (1.0 - min_scale) * uniform[:, 0]
        ratio = torch.exp(math.log(3 / 4) + (math.log(4 / 3) - math.log(3 / 4)) * uniform[:, 1])
        # Crop width and height as fractions of the square, clipped to fit.
        width = torch.sqrt(area * ratio).clamp(max=1.0)
        height = torch.sqrt(area / ratio).clamp(max=1.0)
        flip = torch.where((uniform[:, 4] < 0.5) & hflip, -1.0, 1.0)
        theta = torch.zeros(n, 2, 3, device=device)
        theta[:, 0, 0] = width * flip
        theta[:, 0, 2] = (1 - width) * (2 * uniform[:, 2] - 1)
        theta[:, 1, 1] = height
        theta[:, 1, 2] = (1 - height) * (2 * uniform[:, 3] - 1)
        grid = F.affine_grid(theta, [n, 3, self.image_size, self.image_size], align_corners=False)
        crops = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
        return self._normalise(crops)

    def _normalise(self, images: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(self.mean, dtype=torch.float32, device=images.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32, device=images.device).view(1, 3, 1, 1)
        return (images - mean) / std


def _to_float_nchw(batch: torch.Tensor, channels_last: bool) -> torch.Tensor:
    images = batch.permute(0, 3, 1, 2).float().div_(255.0)
    return images.contiguous(memory_format=torch.channels_last) if channels_last else images.contiguous()


def _array_image(array: np.ndarray) -> Image.Image:
    """An H x W, H x W x 1, 3 or 4 array as a PIL image: uint8 as is, floats read as [0, 1]."""
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise SkipImage(f"an array of shape {array.shape} is not an image (expected H x W or H x W x 3)")
    if array.dtype != np.uint8:
        if not np.issubdtype(array.dtype, np.number):
            raise SkipImage(f"an array of dtype {array.dtype} is not an image")
        values = array.astype(np.float64)
        if not np.isfinite(values).all():
            raise SkipImage("the array holds NaN or infinite values")
        top = 1.0 if np.issubdtype(array.dtype, np.floating) else 255.0
        array = (np.clip(values / top, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)
    return Image.fromarray(np.ascontiguousarray(array))
