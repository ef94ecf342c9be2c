"""Decode one image file into the square uint8 array the cache stores, or say why it cannot be used.

Geometry: the short side is resized to `size` and the long side centre-cropped to `size`, so every cached
image is `size x size x 3` (aspect ratio kept, edges of elongated paintings cropped). Training crops and flips
from there on the GPU.
"""

from __future__ import annotations

import io
import struct
import warnings
import zlib

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# Keep decoding and resizing cheap: after `draft` a JPEG is at most twice the target size.
_RESAMPLE = Image.Resampling.BICUBIC


# What Pillow's decoders raise on damaged or unsupported files besides OSError: fuzzed JPEG/PNG/WebP/TIFF bytes
# reach all of these, and a DDS saved as .jpg opens but raises NotImplementedError on load.
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, NotImplementedError, EOFError, IndexError, KeyError, TypeError,
                  ZeroDivisionError, struct.error, zlib.error, Image.DecompressionBombError)


class SkipImage(Exception):
    """The file cannot be used; the message is the reason shown in the report."""


def _open(data: bytes, max_pixels: int) -> Image.Image:
    if not data:
        raise SkipImage("empty file")
    with warnings.catch_warnings():
        # Our own limit below replaces Pillow's, which would only warn between 1x and 2x its default.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data))
        except Image.DecompressionBombError:
            # Pillow's own hard limit, which stays in force even when `max_pixels` is set above it.
            raise SkipImage(f"over the pixel limit (Pillow refuses over {2 * Image.MAX_IMAGE_PIXELS:,} "
                            "pixels)") from None
        except UnidentifiedImageError:
            raise SkipImage("not an image Pillow can read") from None
        except _DECODE_ERRORS as err:
            raise SkipImage(f"unreadable header ({type(err).__name__}: {err})") from None
    width, height = image.size
    if width * height > max_pixels:
        raise SkipImage(f"over the pixel limit: {width}x{height} = {width * height:,} > {max_pixels:,} pixels")
    if width < 1 or height < 1:
        raise SkipImage(f"empty image ({width}x{height})")
    return image


def declared_pixels(data: bytes, max_pixels: int) -> int:
    """Width x height as the file's header declares them, nothing decoded; SkipImage as `decode_square` would."""
    image = _open(data, max_pixels)
    try:
        return image.width * image.height
    finally:
        image.close()


def _to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode to RGB: 16-bit scaled down, transparency composited on white, CMYK converted."""
    mode = image.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        array = np.asarray(image, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") or array.max(initial=0) > 255 else 255.0
        image = Image.fromarray((np.clip(array / top, 0, 1) * 255 + 0.5).astype(np.uint8), "L")
    elif mode == "F":
        array = np.asarray(image, dtype=np.float64)
        top = 1.0 if array.max(initial=0) <= 1.0 else 255.0
        image = Image.fromarray((np.clip(array / top, 0, 1) * 255 + 0.5).astype(np.uint8), "L")
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert("RGB") if image.mode != "RGB" else image


_ORIENTATION_TAG = 0x0112
_SWAPS_AXES = {5, 6, 7, 8}  # EXIF orientations that rotate by 90 degrees


def decode_square(data: bytes, size: int, max_pixels: int) -> tuple[np.ndarray, int, int]:
    """(`size x size x 3` uint8 array, width, height) of an encoded image; width and height are the full-scale
    size as displayed (after EXIF orientation).

    Raises SkipImage for anything that is not a usable image: empty, truncated, not an image, over the limit.
    """
    with warnings.catch_warnings():
        # Damaged files warn (TIFF: "Tag data larger than file") before they decode or fail; either way the
        # outcome is reported per file, so the warning would only be noise in the terminal.
        warnings.simplefilter("ignore")
        return _decode(data, size, max_pixels)


def _decode(data: bytes, size: int, max_pixels: int) -> tuple[np.ndarray, int, int]:
    image = _open(data, max_pixels)
    try:
        width, height = image.size
        if image.getexif().get(_ORIENTATION_TAG) in _SWAPS_AXES:
            width, height = height, width
        # JPEG only: decode at a reduced scale (1/2, 1/4, 1/8) that still covers `size` on the short side.
        # `draft` works on the stored orientation, so ask for `size` in both dimensions.
        image.draft("RGB", (size, size))
        return square_array(ImageOps.exif_transpose(image), size), width, height
    except _DECODE_ERRORS as err:
        raise SkipImage(f"unreadable ({type(err).__name__}: {err})") from None


# Modes whose conversion to RGB copies the image at full size, several times for alpha (see _to_rgb).
_REDUCED_FIRST = {"L", "LA", "RGBA", "CMYK", "I", "F"}


def _reduced(image: Image.Image, size: int) -> Image.Image:
    """A large image of a mode in _REDUCED_FIRST, reduced by the integer factor that keeps twice `size` on its
    short side before it is converted: a 100-megapixel RGBA then goes through the conversions at 6 MB, not 1.5 GB.
    RGB is left to `resize`, which reduces the same way itself (so JPEG squares stay exactly as they were)."""
    factor = min(image.size) // (2 * size)
    return image.reduce(factor) if factor >= 2 and image.mode in _REDUCED_FIRST else image


def square_array(image: Image.Image, size: int) -> np.ndarray:
    """An already opened (and oriented) image of any mode as the `size x size x 3` uint8 square."""
    image = _to_rgb(_reduced(image, size))
    short = min(image.size)
    left, top = (image.width - short) // 2, (image.height - short) // 2
    square = image.resize((size, size), _RESAMPLE, box=(left, top, left + short, top + short), reducing_gap=2.0)
    return np.array(square, dtype=np.uint8)  # a writable copy: torch refuses read-only arrays
