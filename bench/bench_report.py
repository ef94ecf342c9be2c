"""report.html for the full WikiArt val set: its size and the time `evaluate --from-predictions` spends on it.

Builds an EVAL folder of `--images` evaluation images (default 24,000, about the refined val set) with the real
class lists (23 artists, 27 styles, 10 genres), predictions of ~70 % accuracy, and the pictures the report embeds
drawn from real paintings (`--paintings`, a zip of JPEGs such as the real sample) or, without one, from generated
ones. Then runs the analysis and the report, and prints the report's size against the size it would have with
PNG pictures (the reference: what the report embedded before it used JPEG).

Usage: python bench/bench_report.py [--images 24000] [--paintings ../shared/data/wikiart-real/....zip]
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from artextract.core.atomic import write_bytes, write_json
from artextract.layout import EvalFolder
from artextract.report.gallery import explained_rows, thumbnail_rows
from artextract.report.html import write_report
from artextract.report.images import REPORT_FORMAT, blend, encode
from artextract.stages.evaluate import analyse

CLASSES = {"artist": 23, "style": 27, "genre": 10}
SIDE = 224


def _paintings(zip_path: Path | None, count: int, rng: np.random.Generator) -> list[np.ndarray]:
    if zip_path is None:  # smooth random colour fields: compress about like paintings
        small = rng.integers(0, 256, (count, 8, 8, 3), dtype=np.uint8)
        return [np.asarray(Image.fromarray(s).resize((SIDE, SIDE), Image.BICUBIC)) for s in small]
    with zipfile.ZipFile(zip_path) as archive:
        names = [n for n in archive.namelist() if n.lower().endswith(".jpg")][:count]
        return [np.asarray(Image.open(io.BytesIO(archive.read(n))).convert("RGB").resize((SIDE, SIDE)))
                for n in names]


def _predictions(images: int, select: int, rng: np.random.Generator) -> pd.DataFrame:
    total = images + select
    frame = pd.DataFrame({"path": [f"Style/painter_painting-{i}.jpg" for i in range(total)],
                          "split": ["eval"] * images + ["select"] * select, "cache_index": np.arange(total)})
    embedding = rng.normal(size=(total, 256)).astype(np.float32)
    for task, classes in CLASSES.items():
        labels = rng.integers(0, classes, total)
        logits = rng.normal(size=(total, classes)).astype(np.float32)
        logits[np.arange(total), labels] += 2.5  # about 70 % top-1
        embedding[:, :classes] += 1.5 * np.eye(classes, dtype=np.float32)[labels]
        frame[f"label_{task}"] = labels
        frame[f"logits_{task}"] = list(logits)
    frame["embedding"] = list(embedding)
    return frame


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=24_000)
    parser.add_argument("--paintings", type=Path, default=None)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        out = EvalFolder(Path(tmp) / "eval")
        out.root.mkdir()
        predictions = _predictions(args.images, max(1, args.images // 10), rng)
        predictions.to_parquet(out.predictions, index=False)
        write_json(out.classes, {task: [f"{task}_class_{i}" for i in range(n)] for task, n in CLASSES.items()})
        started = time.perf_counter()
        result = analyse(out, "eval", inject=0.05, seed=0)
        analysed = time.perf_counter() - started
        rows = sorted(thumbnail_rows(result.outliers, result.metrics, seed=0))
        paintings = _paintings(args.paintings, len(rows), rng)
        png_bytes = jpeg_bytes = 0
        for i, row in enumerate(rows):
            picture = paintings[i % len(paintings)]
            write_bytes(out.thumbnail(row), encode(picture, REPORT_FORMAT))
            jpeg_bytes += out.thumbnail(row).stat().st_size
            png_bytes += len(encode(picture, "PNG"))
        for task, chosen in explained_rows(result.outliers, seed=0).items():
            for row in chosen["cache_index"].astype(int):
                picture = paintings[row % len(paintings)]
                heat = np.outer(np.hanning(SIDE), np.hanning(SIDE)).astype(np.float32)
                for kind in ("cam", "attention"):
                    overlay = blend(picture, heat)
                    write_bytes(out.heatmap(row, task, kind), encode(overlay, REPORT_FORMAT))
                    jpeg_bytes += out.heatmap(row, task, kind).stat().st_size
                    png_bytes += len(encode(overlay, "PNG"))
        started = time.perf_counter()
        report = write_report(out, None, None, result.metrics, result.outliers)
        written = time.perf_counter() - started
        size = report.stat().st_size
        with_png = size + (png_bytes - jpeg_bytes) * 4 / 3  # base64 inflates by 4/3
        print(f"{args.images:,} eval images, {len(rows)} thumbnails + heat maps, pictures from "
              f"{args.paintings or 'generated colour fields'}")
        print(f"analysis {analysed:.1f} s, report {written:.1f} s")
        print(f"report.html {size / 1e6:.2f} MB; with PNG pictures {with_png / 1e6:.2f} MB "
              f"(ratio {with_png / size:.1f}x)")


if __name__ == "__main__":
    main()
