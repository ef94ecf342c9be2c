import io
import time

import numpy as np
import pytest
from PIL import Image

from artextract.data.decode import SkipImage, decode_square

LIMIT = 10_000_000


def _encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def _red_left_blue_right(width=60, height=40) -> np.ndarray:
    array = np.zeros((height, width, 3), np.uint8)
    array[:, : width // 2] = (255, 0, 0)
    array[:, width // 2:] = (0, 0, 255)
    return array


def test_rgb_jpeg_keeps_aspect_and_centre_crops():
    array = np.zeros((40, 120, 3), np.uint8)
    array[:, 40:80] = (0, 200, 0)  # the central square is green, the cropped edges black
    out, width, height = decode_square(_encode(Image.fromarray(array), "PNG"), 16, LIMIT)
    assert out.shape == (16, 16, 3) and out.dtype == np.uint8
    assert (width, height) == (120, 40)
    assert out[:, 2:-2, 1].min() > 150 and out[:, 2:-2, 0].max() < 30


def test_large_jpeg_is_decoded_in_draft_mode_to_the_right_size():
    big = Image.fromarray(np.random.default_rng(0).integers(0, 255, (1200, 1600, 3), dtype=np.uint8))
    out, width, height = decode_square(_encode(big, "JPEG", quality=90), 64, LIMIT)
    assert out.shape == (64, 64, 3)
    assert (width, height) == (1600, 1200)  # full-scale size, not the draft size


@pytest.mark.parametrize(
    ("mode", "fmt"),
    [("CMYK", "JPEG"), ("L", "JPEG"), ("L", "PNG"), ("P", "PNG"), ("RGBA", "PNG"), ("LA", "PNG"), ("1", "PNG"),
     ("I;16", "PNG"), ("RGB", "WEBP"), ("RGB", "TIFF"), ("RGB", "BMP"), ("RGB", "GIF")],
)
def test_every_mode_becomes_rgb(mode, fmt):
    base = Image.fromarray(_red_left_blue_right())
    if mode == "I;16":
        image = Image.fromarray((np.asarray(base.convert("L"), np.uint16) * 257).astype(np.uint16))
        assert image.mode.startswith("I;16")
    else:
        image = base.convert(mode)
    out, width, height = decode_square(_encode(image, fmt), 16, LIMIT)
    assert out.shape == (16, 16, 3) and (width, height) == (60, 40)
    if mode in ("RGBA", "P", "CMYK") or (mode == "RGB" and fmt != "GIF"):
        assert out[8, 2, 0] > 180 and out[8, 2, 2] < 80  # still red on the left
        assert out[8, 13, 2] > 180 and out[8, 13, 0] < 80  # and blue on the right
    if mode == "I;16":
        grey = np.asarray(base.convert("L"))
        assert abs(int(out[8, 2, 0]) - int(grey[20, 5])) <= 3  # 16-bit scaled down, not clipped


def test_transparency_is_composited_on_white():
    rgba = np.zeros((20, 20, 4), np.uint8)  # fully transparent black
    out, _, _ = decode_square(_encode(Image.fromarray(rgba, "RGBA"), "PNG"), 8, LIMIT)
    assert out.min() == 255


def test_exif_orientation_is_applied():
    image = Image.fromarray(_red_left_blue_right(60, 40))
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: displayed rotated 90 degrees clockwise
    out, width, height = decode_square(_encode(image, "JPEG", exif=exif), 16, LIMIT)
    assert (width, height) == (40, 60)
    assert out[2, 8, 0] > 150 and out[13, 8, 2] > 150  # red now on top, blue below


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty file"),
        (b"this is not an image at all", "not an image"),
        (b"\xff\xd8\xff\xe0" + b"\x00" * 10, "not an image"),
    ],
)
def test_unusable_files_are_skipped_with_a_reason(data, reason):
    with pytest.raises(SkipImage, match=reason):
        decode_square(data, 16, LIMIT)


def test_truncated_jpeg_is_skipped():
    data = _encode(Image.fromarray(np.random.default_rng(1).integers(0, 255, (200, 200, 3), np.uint8)), "JPEG")
    with pytest.raises(SkipImage, match="truncated"):
        decode_square(data[: len(data) // 2], 16, LIMIT)


def test_decompression_bomb_is_refused_before_decoding():
    bomb = _encode(Image.new("1", (12_000, 12_000)), "PNG")  # 144 megapixels in a few kilobytes
    start = time.perf_counter()
    with pytest.raises(SkipImage, match="over the pixel limit"):
        decode_square(bomb, 16, LIMIT)
    huge = _encode(Image.new("1", (20_000, 20_000)), "PNG")  # above Pillow's own hard limit too
    start = time.perf_counter()
    with pytest.raises(SkipImage, match="over the pixel limit"):
        decode_square(huge, 16, max_pixels=1_000_000_000_000)
    assert time.perf_counter() - start < 1.0
