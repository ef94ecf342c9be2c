"""Mutated JPEG, PNG, WebP and TIFF bytes: each file is decoded or skipped with a reason, never raises anything
else, and never takes long (issue 13, item 4 and the fuzz pass)."""

import io
import time

import numpy as np
import pytest
from PIL import Image

from artextract.data.decode import SkipImage, decode_square

CASES_PER_FORMAT = 150


def _painting(image_format: str) -> bytes:
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    image = Image.fromarray(small).resize((96, 72), Image.BICUBIC)
    buffer = io.BytesIO()
    image.save(buffer, format=image_format)
    return buffer.getvalue()


def _mutations(data: bytes, seed: int):
    rng = np.random.default_rng(seed)
    for _ in range(CASES_PER_FORMAT):
        mutated = bytearray(data)
        kind = rng.integers(0, 3)
        if kind == 0:  # flip random bytes
            for position in rng.integers(0, len(mutated), rng.integers(1, 12)):
                mutated[position] = int(rng.integers(0, 256))
        elif kind == 1:  # truncate
            mutated = mutated[: int(rng.integers(1, len(mutated)))]
        else:  # overwrite a run inside the header
            start = int(rng.integers(0, min(64, len(mutated))))
            mutated[start: start + 8] = rng.integers(0, 256, 8, dtype=np.uint8).tobytes()
        yield bytes(mutated)


@pytest.mark.parametrize("image_format", ["JPEG", "PNG", "WEBP", "TIFF"])
def test_mutated_images_are_decoded_or_skipped_with_a_reason(image_format):
    outcomes = {"decoded": 0, "skipped": 0}
    for seed, data in enumerate(_mutations(_painting(image_format), seed=sum(image_format.encode()))):
        started = time.perf_counter()
        try:
            array, width, height = decode_square(data, 32, max_pixels=10_000_000)
        except SkipImage as err:
            assert str(err), seed
            outcomes["skipped"] += 1
        else:
            assert array.shape == (32, 32, 3) and array.dtype == np.uint8 and width > 0 and height > 0
            outcomes["decoded"] += 1
        assert time.perf_counter() - started < 2.0, (image_format, seed)
    assert outcomes["skipped"] > 0 and sum(outcomes.values()) == CASES_PER_FORMAT


def test_an_image_pillow_opens_but_cannot_decode_is_skipped(monkeypatch):
    """A DDS saved as .jpg opens but raises NotImplementedError on load; any such decoder fault is a skip."""
    def refuse(self, *args, **kwargs):
        raise NotImplementedError("unsupported pixel format")

    data = _painting("PNG")
    monkeypatch.setattr(Image.Image, "resize", refuse)
    with pytest.raises(SkipImage, match="NotImplementedError: unsupported pixel format"):
        decode_square(data, 32, max_pixels=10_000_000)
