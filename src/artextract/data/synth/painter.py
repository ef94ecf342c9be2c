"""Procedural "paintings" whose artist, style and genre can be learned from pixels, but not trivially.

- The artist is a signature: a palette, a stroke direction and length, a stroke width and count, and a
  texture scale; each work perturbs it, and palettes of different artists overlap.
- The style sets the kind of mark (lines, dots, blocks, curves), saturation and contrast.
- The genre sets the composition (horizon, central figure, buildings, table with objects, ...).
Every function is deterministic given its random generator, so the same seed gives the same bytes.
"""

from __future__ import annotations

import colorsys
import io
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

MARKS = ("line", "dot", "block", "curve")


@dataclass(frozen=True)
class ArtistSignature:
    palette: tuple[tuple[float, float, float], ...]  # HSV, each in [0, 1]
    stroke_angle: float  # radians
    angle_jitter: float
    stroke_length: float  # fraction of the short side
    stroke_width: float  # fraction of the short side
    stroke_count: int
    texture_cells: int  # noise grid cells along the short side
    texture_strength: float


@dataclass(frozen=True)
class StyleTraits:
    mark: str
    saturation: float
    contrast: float
    density: float


def make_artist_signature(rng: np.random.Generator) -> ArtistSignature:
    base_hue = rng.uniform()
    offsets = rng.choice([0.0, 0.05, 0.1, 0.33, 0.5, 0.6], size=5, replace=True)
    palette = tuple(
        ((base_hue + off + rng.normal(0, 0.02)) % 1.0, float(rng.uniform(0.25, 0.9)), float(rng.uniform(0.3, 0.95)))
        for off in offsets
    )
    return ArtistSignature(
        palette=palette,
        stroke_angle=float(rng.uniform(0, math.pi)),
        angle_jitter=float(rng.uniform(0.1, 0.6)),
        stroke_length=float(rng.uniform(0.03, 0.2)),
        stroke_width=float(rng.uniform(0.004, 0.025)),
        stroke_count=int(rng.integers(120, 500)),
        texture_cells=int(rng.integers(4, 40)),
        texture_strength=float(rng.uniform(0.03, 0.15)),
    )


def make_style_traits(rng: np.random.Generator) -> StyleTraits:
    return StyleTraits(
        mark=MARKS[int(rng.integers(len(MARKS)))],
        saturation=float(rng.uniform(0.5, 1.3)),
        contrast=float(rng.uniform(0.75, 1.3)),
        density=float(rng.uniform(0.6, 1.4)),
    )


def _rgb(hsv: tuple[float, float, float], rng: np.random.Generator, jitter: float = 0.04) -> tuple[int, int, int]:
    h, s, v = hsv
    h = (h + rng.normal(0, jitter / 2)) % 1.0
    s = float(np.clip(s + rng.normal(0, jitter), 0, 1))
    v = float(np.clip(v + rng.normal(0, jitter), 0, 1))
    r, g, b = colorsys.hsv_to_rgb(h, s, v)
    return int(r * 255), int(g * 255), int(b * 255)


def _compose(draw: ImageDraw.ImageDraw, genre: int, w: int, h: int, colors: list[tuple[int, int, int]],
             rng: np.random.Generator) -> None:
    """Paint the genre's composition in the work's colours (genre indices follow the ArtGAN class file)."""
    c = colors
    u = lambda lo, hi: float(rng.uniform(lo, hi))  # noqa: E731 - a local shorthand keeps the shapes readable
    if genre == 0:  # abstract: overlapping colour fields
        for _ in range(int(rng.integers(3, 7))):
            x0, y0 = u(-0.2, 0.8) * w, u(-0.2, 0.8) * h
            draw.rectangle([x0, y0, x0 + u(0.2, 0.7) * w, y0 + u(0.2, 0.7) * h], fill=c[int(rng.integers(5))])
    elif genre == 1:  # cityscape: sky, then a row of buildings
        draw.rectangle([0, 0, w, h], fill=c[0])
        x = 0.0
        while x < w:
            bw, bh = u(0.06, 0.16) * w, u(0.3, 0.75) * h
            draw.rectangle([x, h - bh, x + bw, h], fill=c[1 + int(rng.integers(3))])
            x += bw + u(0, 0.02) * w
    elif genre == 2:  # genre painting: small figures on the ground
        draw.rectangle([0, 0, w, h], fill=c[0])
        draw.rectangle([0, h * 0.6, w, h], fill=c[1])
        for _ in range(int(rng.integers(3, 7))):
            x, y = u(0.05, 0.9) * w, u(0.45, 0.8) * h
            draw.ellipse([x, y, x + 0.06 * w, y + 0.2 * h], fill=c[2 + int(rng.integers(3))])
    elif genre == 3:  # illustration: outlined shapes on a flat ground
        draw.rectangle([0, 0, w, h], fill=c[0])
        for _ in range(int(rng.integers(2, 5))):
            x0, y0 = u(0, 0.6) * w, u(0, 0.6) * h
            draw.ellipse([x0, y0, x0 + u(0.2, 0.4) * w, y0 + u(0.2, 0.4) * h], fill=c[2], outline=(20, 20, 20),
                         width=max(2, w // 80))
    elif genre == 4:  # landscape: sky, a horizon, hills
        horizon = u(0.35, 0.6) * h
        draw.rectangle([0, 0, w, horizon], fill=c[0])
        draw.rectangle([0, horizon, w, h], fill=c[1])
        points = [(0, horizon)] + [(x * w / 6, horizon - u(0, 0.15) * h) for x in range(7)] + [(w, horizon)]
        draw.polygon(points, fill=c[2])
    elif genre == 5:  # nude: a reclining diagonal form
        draw.rectangle([0, 0, w, h], fill=c[0])
        draw.polygon([(0.1 * w, 0.7 * h), (0.5 * w, u(0.3, 0.45) * h), (0.9 * w, 0.55 * h), (0.6 * w, 0.8 * h)],
                     fill=c[3])
    elif genre == 6:  # portrait: head and shoulders in the centre
        draw.rectangle([0, 0, w, h], fill=c[0])
        draw.polygon([(0.15 * w, h), (0.3 * w, 0.65 * h), (0.7 * w, 0.65 * h), (0.85 * w, h)], fill=c[1])
        draw.ellipse([0.33 * w, u(0.15, 0.25) * h, 0.67 * w, 0.62 * h], fill=c[3])
    elif genre == 7:  # religious: a symmetric arch with a halo
        draw.rectangle([0, 0, w, h], fill=c[0])
        draw.polygon([(0.5 * w, 0.1 * h), (0.85 * w, 0.9 * h), (0.15 * w, 0.9 * h)], fill=c[1])
        draw.ellipse([0.4 * w, 0.08 * h, 0.6 * w, 0.08 * h + 0.2 * w], fill=(235, 200, 80))
    elif genre == 8:  # sketch and study: light paper, a few dark lines
        draw.rectangle([0, 0, w, h], fill=(236, 228, 210))
        for _ in range(int(rng.integers(5, 15))):
            draw.line([(u(0, 1) * w, u(0, 1) * h), (u(0, 1) * w, u(0, 1) * h)], fill=(60, 50, 40),
                      width=max(1, w // 150))
    else:  # still life: a table and a few round objects
        draw.rectangle([0, 0, w, h], fill=c[0])
        draw.rectangle([0, 0.65 * h, w, h], fill=c[1])
        for _ in range(int(rng.integers(3, 6))):
            x, r = u(0.15, 0.8) * w, u(0.05, 0.1) * w
            draw.ellipse([x - r, 0.65 * h - 1.6 * r, x + r, 0.65 * h + 0.4 * r], fill=c[2 + int(rng.integers(3))])


def _strokes(draw: ImageDraw.ImageDraw, sig: ArtistSignature, style: StyleTraits, w: int, h: int,
             colors: list[tuple[int, int, int]], rng: np.random.Generator, sparse: bool) -> None:
    short = min(w, h)
    count = int(sig.stroke_count * style.density * (0.3 if sparse else 1.0) * rng.uniform(0.8, 1.2))
    xs, ys = rng.uniform(0, w, count), rng.uniform(0, h, count)
    angles = sig.stroke_angle + rng.normal(0, sig.angle_jitter, count)
    lengths = sig.stroke_length * short * rng.lognormal(0, 0.3, count)
    width = max(1, round(sig.stroke_width * short))
    picks = rng.integers(0, len(colors), count)
    for x, y, a, length, k in zip(xs, ys, angles, lengths, picks, strict=True):
        color = colors[k]
        dx, dy = math.cos(a) * length / 2, math.sin(a) * length / 2
        if style.mark == "line":
            draw.line([(x - dx, y - dy), (x + dx, y + dy)], fill=color, width=width)
        elif style.mark == "dot":
            r = width * 0.9 + 1
            draw.ellipse([x - r, y - r, x + r, y + r], fill=color)
        elif style.mark == "block":
            draw.polygon([(x - dx, y - dy), (x + dx, y + dy), (x + dx - dy * 0.4, y + dy + dx * 0.4),
                          (x - dx - dy * 0.4, y - dy + dx * 0.4)], fill=color)
        else:  # curve: a bent stroke in three segments
            bend = rng.normal(0, 0.6)
            pts = [(x - dx, y - dy), (x - dy * bend * 0.5, y + dx * bend * 0.5), (x + dx, y + dy)]
            draw.line(pts, fill=color, width=width, joint="curve")


def paint(sig: ArtistSignature, style: StyleTraits, genre: int, width: int, height: int,
          rng: np.random.Generator) -> Image.Image:
    """One painting as an RGB image."""
    # Each work shifts the artist's palette and may reassign its colours to other roles, so colour alone
    # does not give the artist away.
    shift = rng.normal(0, 0.04)
    colors = [_rgb(((h + shift) % 1.0, s, v), rng, jitter=0.06) for h, s, v in sig.palette]
    if rng.uniform() < 0.5:
        colors = [colors[i] for i in rng.permutation(len(colors))]
    image = Image.new("RGB", (width, height))
    draw = ImageDraw.Draw(image)
    _compose(draw, genre, width, height, colors, rng)
    _strokes(draw, sig, style, width, height, colors, rng, sparse=genre == 8)

    pixels = np.asarray(image, dtype=np.float32) / 255.0
    # Texture: low-frequency noise at the artist's scale, upsampled to the canvas.
    cells = max(2, sig.texture_cells)
    noise = rng.normal(0, 1, (cells * height // min(width, height) + 2, cells * width // min(width, height) + 2))
    noise_img = Image.fromarray(((np.clip(noise, -3, 3) + 3) / 6 * 255).astype(np.uint8)).resize(
        (width, height), Image.BILINEAR)
    pixels += (np.asarray(noise_img, dtype=np.float32)[..., None] / 255.0 - 0.5) * 2 * sig.texture_strength
    # Style: contrast around the mean, then saturation against grey.
    mean = pixels.mean(axis=(0, 1), keepdims=True)
    pixels = (pixels - mean) * style.contrast + mean
    grey = pixels.mean(axis=2, keepdims=True)
    pixels = grey + (pixels - grey) * style.saturation
    return Image.fromarray((np.clip(pixels, 0, 1) * 255 + 0.5).astype(np.uint8))


def encode_jpeg(image: Image.Image, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()
