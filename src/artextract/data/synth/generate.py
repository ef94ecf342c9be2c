"""`artextract synth`: write an ArtGAN-shaped dataset of generated paintings.

Layout: `OUT/wikiart/<Style folder>/<artist-slug>_<title>.jpg`, `OUT/csv/` with the class and split files in
the published formats, and `OUT/synth.json` describing what was made (counts and every injected quirk).
"""

from __future__ import annotations

import io
import os
import shutil
import unicodedata
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from artextract.config import DEFAULT_MAX_PIXELS, SynthConfig, check_ranges
from artextract.core.atomic import write_bytes, write_json, write_text
from artextract.core.progress import Progress, log
from artextract.data import wikiart
from artextract.data.artgan_files import class_file_name, format_class_file, format_split_file, split_file_name
from artextract.data.names import to_mojibake
from artextract.data.synth.painter import (
    ArtistSignature,
    StyleTraits,
    encode_jpeg,
    make_artist_signature,
    make_style_traits,
    paint,
)
from artextract.errors import ConfigError

# What `synth` writes beside the images and CSVs; `prepare` takes its presence as "these paintings are generated".
SYNTH_RECORD = "synth.json"

_WORDS = (
    "garden", "river", "woman", "church", "flowers", "sea", "night", "morning", "village", "street", "bridge",
    "boat", "harvest", "dancer", "portrait", "study", "winter", "road", "mill", "forest", "bathers", "square",
    "saint", "madonna", "still-life", "fruit", "mother", "child", "storm", "shore",
)
# Names with accents and an apostrophe, used by --quirks (the real data has both).
_QUIRK_TITLES = ("rêverie-d-été", "señora-en-el-jardín", "bröllop-på-landet", "l'atelier-du-peintre")
GENRE_MISSING_FRACTION = 0.1  # share of images without a genre label, as in the real data


@dataclass
class PlannedImage:
    path: str  # relative path of the file on disk (NFC unless `nfd_on_disk`)
    csv_path: str  # the path as the CSV files spell it
    artist: int  # index into the chosen artists
    style: int  # index into wikiart.STYLES
    genre: int  # index into wikiart.GENRES, -1 = no genre label
    splits: dict[str, str]  # task -> "train" | "val"
    width: int
    height: int
    kind: str = "painting"  # "painting" | "corrupt" | "oversized"
    nfd_on_disk: bool = False


@dataclass
class SynthSummary:
    out: Path
    images: int
    artists: list[str]
    rows: dict[str, int] = field(default_factory=dict)  # split file name -> rows
    quirks: list[dict[str, object]] = field(default_factory=list)


def _rng(seed: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng([seed, *keys])


def _title(rng: np.random.Generator) -> str:
    words = rng.choice(len(_WORDS), size=int(rng.integers(1, 4)), replace=False)
    title = "-".join(_WORDS[i] for i in words)
    return f"{title}-{int(rng.integers(1500, 1990))}" if rng.uniform() < 0.6 else title


def _dimensions(genre: int, short: int, rng: np.random.Generator) -> tuple[int, int]:
    long = round(short * rng.uniform(1.0, 1.45))
    vertical = genre in (6, 7) or (genre not in (1, 4) and rng.uniform() < 0.4)
    return (short, long) if vertical else (long, short)


def plan_dataset(config: SynthConfig) -> tuple[list[PlannedImage], list[str], list[dict[str, object]]]:
    """Decide every image's labels, splits, size and name; nothing is rendered here."""
    check_ranges(config, "synth")
    artists = list(wikiart.ARTISTS[: config.artists])
    images: list[PlannedImage] = []
    used: set[str] = set()
    for a, artist in enumerate(artists):
        rng = _rng(config.seed, 1, a)
        styles = rng.choice(len(wikiart.STYLES), size=int(rng.integers(1, 4)), replace=False)
        genre_weights = rng.dirichlet(np.full(len(wikiart.GENRES), 0.4))
        order = rng.permutation(config.per_artist)
        n_val = min(config.per_artist - 1, max(1, round(config.per_artist * config.val_fraction)))
        for k in range(config.per_artist):
            style = int(rng.choice(styles))
            genre = int(rng.choice(len(wikiart.GENRES), p=genre_weights))
            width, height = _dimensions(genre, config.size, rng)
            base = f"{wikiart.style_folder(wikiart.STYLES[style])}/{wikiart.artist_slug(artist)}_{_title(rng)}"
            path, n = f"{base}.jpg", 2
            while path in used:  # WikiArt's own convention for repeated titles
                path, n = f"{base}-{n}.jpg", n + 1
            used.add(path)
            split = "val" if order[k] < n_val else "train"
            if rng.uniform() < GENRE_MISSING_FRACTION:
                genre = -1
            images.append(PlannedImage(path, path, a, style, genre, dict.fromkeys(wikiart.TASKS, split),
                                       width, height))
    quirks = _inject_quirks(images, config) if config.quirks else []
    return images, artists, quirks


def _inject_quirks(images: list[PlannedImage], config: SynthConfig) -> list[dict[str, object]]:
    """The real data's quirks, each on its own images; returns a record of what was done."""
    rng = _rng(config.seed, 4)
    train = [i for i in rng.permutation(len(images)) if images[i].splits["artist"] == "train"]
    val = [i for i in rng.permutation(len(images)) if images[i].splits["artist"] == "val" and images[i].genre >= 0]
    needed_train, needed_val = 3 + len(_QUIRK_TITLES) + 2, 3
    if len(train) < needed_train or len(val) < needed_val:
        raise ConfigError(f"--quirks needs at least {needed_train} training and {needed_val} validation images; "
                          "raise --per-artist or --artists")
    quirks: list[dict[str, object]] = []
    for i in train[:3]:  # in a task's train split and another task's val split
        images[i].splits["style"] = "val"
        quirks.append({"kind": "leakage", "path": images[i].path, "detail": "artist train, style val"})
    for i in val[:2]:
        images[i].splits["genre"] = "train"
        quirks.append({"kind": "leakage", "path": images[i].path, "detail": "artist val, genre train"})
    dup = images[val[2]]
    quirks.append({"kind": "conflicting_duplicate", "path": dup.path, "detail": "genre val lists it twice",
                   "labels": [dup.genre, (dup.genre + 1) % len(wikiart.GENRES)]})
    for n, (i, title) in enumerate(zip(train[3:], _QUIRK_TITLES, strict=False)):
        image = images[i]
        folder, _, file_name = image.path.partition("/")
        slug = file_name.split("_", 1)[0]
        image.path = image.csv_path = f"{folder}/{slug}_{title}.jpg"
        if "'" in title:
            quirks.append({"kind": "apostrophe", "path": image.path})
            continue
        # The CSVs spell the name as the real ones do (mojibake); the disk holds proper UTF-8.
        image.csv_path = f"{folder}/{to_mojibake(slug + '_' + title + '.jpg')}"
        image.nfd_on_disk = n == 2
        quirks.append({"kind": "mojibake", "path": image.path, "csv_path": image.csv_path,
                       "disk_form": "NFD" if image.nfd_on_disk else "NFC"})
    corrupt, oversized = images[train[3 + len(_QUIRK_TITLES)]], images[train[4 + len(_QUIRK_TITLES)]]
    corrupt.kind, oversized.kind = "corrupt", "oversized"
    quirks.append({"kind": "corrupt", "path": corrupt.path, "detail": "truncated JPEG"})
    side = int((DEFAULT_MAX_PIXELS * 1.1) ** 0.5) + 1
    oversized.width = oversized.height = side
    quirks.append({"kind": "oversized", "path": oversized.path,
                   "detail": f"{side}x{side} pixels, over the default limit of {DEFAULT_MAX_PIXELS:,}"})
    return quirks


def _render(job: tuple[str, PlannedImage, ArtistSignature, StyleTraits, int]) -> int:
    """Render and write one image; returns its size in bytes. Runs in worker processes."""
    root, image, signature, traits, seed = job
    rng = _rng(seed, 3, *image.path.encode("utf-8"))
    if image.kind == "oversized":
        # A real over-limit image that costs almost nothing to store: 1-bit PNG content under a .jpg name.
        buffer = io.BytesIO()
        Image.new("1", (image.width, image.height)).save(buffer, format="PNG")
        data = buffer.getvalue()
    else:
        data = encode_jpeg(paint(signature, traits, image.genre, image.width, image.height, rng))
        if image.kind == "corrupt":
            data = data[: len(data) // 3]
    disk_path = unicodedata.normalize("NFD", image.path) if image.nfd_on_disk else image.path
    write_bytes(Path(root) / disk_path, data)
    return len(data)


def _jobs(images: list[PlannedImage], root: Path, config: SynthConfig) -> Iterator[tuple]:
    signatures = [make_artist_signature(_rng(config.seed, 5, a)) for a in range(config.artists)]
    traits = [make_style_traits(_rng(config.seed, 6, s)) for s in range(len(wikiart.STYLES))]
    for image in images:
        yield str(root), image, signatures[image.artist], traits[image.style], config.seed


def _split_rows(images: list[PlannedImage], quirks: list[dict[str, object]],
                seed: int) -> dict[tuple[str, str], list[tuple[str, int]]]:
    """The rows of each (task, split) file, shuffled as the real files are."""
    rows: dict[tuple[str, str], list[tuple[str, int]]] = defaultdict(list)
    for image in images:
        labels = {"artist": image.artist, "style": image.style, "genre": image.genre}
        for task, label in labels.items():
            if label >= 0:
                rows[task, image.splits[task]].append((image.csv_path, label))
    for quirk in quirks:
        if quirk["kind"] == "conflicting_duplicate":
            rows["genre", "val"].append((str(quirk["path"]), int(quirk["labels"][1])))  # type: ignore[index]
    rng = _rng(seed, 7)
    return {key: [value[i] for i in rng.permutation(len(value))] for key, value in sorted(rows.items())}


def generate_dataset(out: Path, config: SynthConfig) -> SynthSummary:
    """Render the planned images in parallel, then write the CSVs (last, so complete CSVs mean a complete tree).

    A tree an earlier synth run left in `out` (it wrote synth.json) is replaced, never mixed with this one; other
    files are never deleted.
    """
    images, artists, quirks = plan_dataset(config)
    root = out / "wikiart"
    if (out / SYNTH_RECORD).is_file():
        for stale in (root, out / "csv"):
            shutil.rmtree(stale, ignore_errors=True)
    workers = config.workers or os.cpu_count() or 1
    with Progress(len(images), "synth") as progress:
        if workers == 1:
            for job in _jobs(images, root, config):
                _render(job)
                progress.update()
        else:
            with ProcessPoolExecutor(workers) as pool:
                for _ in pool.map(_render, _jobs(images, root, config), chunksize=16):
                    progress.update()

    csv_dir = out / "csv"
    class_names = {"artist": artists, "style": list(wikiart.STYLES), "genre": list(wikiart.GENRES)}
    for task, names in class_names.items():
        write_text(csv_dir / class_file_name(task), format_class_file(names))
    summary = SynthSummary(out=out, images=len(images), artists=artists, quirks=quirks)
    for (task, split), rows in _split_rows(images, quirks, config.seed).items():
        name = split_file_name(task, split)
        # newline="" keeps the CRLF of the genre/style form as written.
        write_text(csv_dir / name, format_split_file(rows, artist_form=task == "artist"), newline="")
        summary.rows[name] = len(rows)
    write_json(out / SYNTH_RECORD, {"config": asdict(config), "images": summary.images, "artists": artists,
                                    "rows": summary.rows, "quirks": quirks})
    log.info("synth: wrote %d images of %d artists to %s", len(images), len(artists), out)
    return summary
