"""`artextract prepare`: ArtGAN CSVs + images -> DATA/ with the manifest, classes, cache and report.

DATA/manifest.parquet   one row per image: path, label_<task> (-1 = none), official_<task> ("train", "val" or
                        ""), split ("train", "select" or "eval"), width, height, bytes, content_sha256,
                        duplicate_group (-1 = none), duplicate_of, cache_index, status ("ok", "skipped",
                        "pending" or "duplicate": a copy of the painting kept under duplicate_of)
DATA/classes.json       class names per task, from the class files
DATA/cache/             the pre-resized images (see cache.py)
DATA/prepare_report.*   counts, repairs, duplicates, leakage, skipped rows and images
DATA/duplicates.csv     every copy of every painting found under several names, with its labels
DATA/labels.csv         image_path,label,split for the artist task, like the original notebook's labels.csv
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from artextract.config import PrepareConfig, check_ranges
from artextract.core.atomic import write_json, write_text, write_with
from artextract.core.lock import FolderLock
from artextract.core.progress import log
from artextract.core.safe_text import write_csv
from artextract.data.artgan_files import read_csv_folder
from artextract.data.cache import OK, PENDING, SKIPPED, CacheResult, build_cache
from artextract.data.cache_files import read_layout
from artextract.data.duplicates import find_groups, merge_duplicates
from artextract.data.image_source import open_source
from artextract.data.overrides import apply_overrides, describe_files, override_files, read_overrides
from artextract.data.path_index import PathIndex
from artextract.data.prepare_report import (
    build_report,
    duplicates_report,
    duplicates_table,
    overrides_report,
    render_markdown,
)
from artextract.data.protocol import ImageRecord, apply_protocol, carve_splits, check_fractions, collect_images
from artextract.data.split_record import test_split_digest, warn_if_splits_moved
from artextract.data.synth.generate import SYNTH_RECORD
from artextract.errors import ConfigError, DataError
from artextract.layout import DataFolder

STATUS_NAMES = {PENDING: "pending", OK: "ok", SKIPPED: "skipped"}
DUPLICATE = "duplicate"  # the status of a copy of a painting kept under another name


@dataclass
class PrepareResult:
    out: Path
    manifest: pd.DataFrame
    report: dict[str, Any]


def parse_shard(text: str) -> tuple[int, int]:
    """`i/n` with 0 <= i < n."""
    try:
        index_text, count_text = text.split("/")
        index, count = int(index_text), int(count_text)
    except ValueError:
        raise ConfigError(f"--shard expects i/n (e.g. 0/4), got {text!r}") from None
    if not 0 <= index < count:
        raise ConfigError(f"--shard {text}: i must be between 0 and n-1")
    return index, count


def _refuse_another_cache_size(folder: DataFolder, cache_size: int, rebuild: bool) -> None:
    """A DATA folder's squares are what its runs were trained on: rebuilding them at another size in place would
    leave those runs unable to be evaluated, so it takes --force (or another --out)."""
    built = read_layout(folder.cache)
    if built is not None and built.image_size != cache_size and not rebuild:
        raise DataError(f"{folder.root} caches {built.image_size} px squares, and runs trained on it need them: pass "
                        f"--force to rebuild it at --cache-size {cache_size}, or --out a new DATA folder")


def prepare_dataset(csv_dir: Path, images: Path, out: Path, config: PrepareConfig,
                    shard: tuple[int, int] = (0, 1), rebuild: bool = False,
                    overrides: Sequence[Path] = ()) -> PrepareResult:
    """Manifest, image cache and report in `out`; a rerun resumes and decodes again only the images whose files
    changed, `rebuild` decodes them all again. `overrides`: reviewed label audits (files, or AUDIT folders) whose
    corrections replace the CSVs' labels (data/overrides.py)."""
    check_ranges(config, "prepare")
    csvs = read_csv_folder(csv_dir)
    override_list = override_files(list(overrides))
    reviewed = read_overrides(override_list, csvs.classes)  # a bad review is refused before any image is read
    for problem in csvs.problems[:20]:
        log.warning("skipped %s:%d: %s", problem.file, problem.line, problem.reason)
    for task, names in csvs.classes.items():
        for name in names:
            if _path_like(name):
                log.warning("%s class %r looks like a file path or holds control characters; it is kept as a label, "
                            "and no output file is ever named after it (heat maps use a slug and an index)", task,
                            name)
    source = open_source(images, config.max_file_mb << 20)
    files = source.list_files()
    for name, why in source.refused[:20]:
        log.warning("skipped %s in %s: %s", name, source.location, why)
    if not files:
        raise DataError(f"--images {images} contains no files")
    log.info("prepare: %d files under %s; %d CSV rows for tasks %s", len(files), source.location,
             sum(len(r) for r in csvs.rows.values()), ", ".join(csvs.classes))
    top_folders = {row.path.split("/", 1)[0] for rows in csvs.rows.values() for row in rows}
    index = PathIndex(files, top_folders)
    collected = collect_images(csvs, index)
    if not collected.images:
        example = collected.unmatched[0] if collected.unmatched else None
        hint = f" (e.g. {example['path']!r} from {example['file']})" if example else ""
        raise DataError(f"none of the CSV rows matches a file under {images}{hint}; is --images the folder "
                        "that holds the style folders (or wikiart.zip)?")
    changes = apply_overrides(collected, reviewed)
    result = apply_protocol(collected, config.protocol)
    check_fractions(result.images, config.select_fraction, config.test_fraction)
    paths = [record.path for record in result.images]
    folder = DataFolder(out)
    _refuse_another_cache_size(folder, config.cache_size, rebuild)
    out.mkdir(parents=True, exist_ok=True)
    with FolderLock(out) as lock:  # build_cache takes it; held until DATA is whole
        cache = build_cache(source, [index.member(p) for p in paths], paths, folder.cache, config.cache_size,
                            config.max_pixels, config.workers, shard, lock, rebuild)
        status = cache.status
        started = time.perf_counter()
        groups = find_groups(status["sha256"], status["phash"], status["dhash"], status["state"] == OK)
        log.info("duplicates: %d groups of the same painting among %d images (%.1f s)", groups.count,
                 int((status["state"] == OK).sum()), time.perf_counter() - started)
        if groups.near_skipped:
            log.warning("duplicates: the perceptual hashes of these images pair far too many of them (blank or "
                        "placeholder images?); only byte-identical and identically hashed copies were grouped")
        duplicates = merge_duplicates(result.images, groups)
        carve_splits(result.images, config.select_fraction, config.seed, config.test_fraction)
        _refuse_overridden_tests(result.images, changes)
        overridden: dict[str, list[str]] = {}
        for change in changes:
            if change["before"] != change["after"]:
                overridden.setdefault(change["path"], []).append(change["task"])
        manifest = _manifest(paths, result.images, list(csvs.classes), cache, overridden)
        report = build_report(csvs, source.location, config, shard, collected, result, manifest, cache, index.prefix)
        report["content_duplicates"] = duplicates_report(duplicates, csvs.classes, groups.near_skipped)
        report["overrides"] = overrides_report(describe_files(override_list), changes, csvs.classes)
        report["refused_files"] = [{"path": name, "reason": why} for name, why in source.refused]
        # Generated by `artextract synth` (its record lies beside the CSV folder): models trained here say so.
        report["inputs"]["synthetic"] = (Path(csv_dir).resolve().parent / SYNTH_RECORD).is_file()
        report["protocol"]["test_split_digest"] = test_split_digest(manifest) if config.test_fraction else None
        report["splits_moved_since_last_prepare"] = warn_if_splits_moved(folder, manifest)
        _write_data_files(folder, manifest, csvs.classes, report)
        write_with(folder.duplicates_csv, lambda tmp: write_csv(duplicates_table(duplicates, csvs.classes), tmp))
    return PrepareResult(out, manifest, report)


def _refuse_overridden_tests(records: list[ImageRecord], changes: list[dict[str, Any]]) -> None:
    """A painting of the test split carved by --test-fraction is scored with the labels the CSVs give it."""
    split_of = {r.path: r.split for r in records}
    for change in changes:
        if split_of.get(change["path"]) == "eval":
            raise DataError(f"{change['row']}: {change['path']} falls in the test split carved by --test-fraction; "
                            "its labels are what it is scored with, and only training labels can be corrected "
                            "(was the audit made on a DATA prepared with other --test-fraction or --seed?)")


def _path_like(name: str) -> bool:
    return ("/" in name or "\\" in name or name.startswith(".") or ".." in name
            or any(ord(c) < 32 for c in name))


def _manifest(paths: list[str], images: list[ImageRecord], tasks: list[str], cache: CacheResult,
              overridden: dict[str, list[str]]) -> pd.DataFrame:
    status = cache.status
    manifest = pd.DataFrame({"path": paths})
    for task in tasks:
        manifest[f"label_{task}"] = pd.array([r.labels[task] for r in images], dtype="int16")
        manifest[f"official_{task}"] = [r.official[task] for r in images]
    manifest["split"] = pd.Categorical([r.split for r in images], categories=["train", "select", "eval"])
    manifest["width"] = status["width"]
    manifest["height"] = status["height"]
    manifest["bytes"] = status["bytes"]
    manifest["pixels_digest"] = status["pixels"]  # what the cache holds for the row: keys the feature maps
    manifest["content_sha256"] = [bytes(d).hex() if s == OK else "" for d, s in zip(status["sha256"], status["state"],
                                                                                   strict=True)]
    manifest["duplicate_group"] = pd.array([r.group for r in images], dtype="int32")
    manifest["duplicate_of"] = [r.duplicate_of for r in images]
    # The tasks whose label a reviewed override changed (prepare --overrides), space-separated.
    manifest["overridden"] = [" ".join(overridden.get(r.path, [])) for r in images]
    manifest["cache_index"] = [i if s == OK else -1 for i, s in enumerate(status["state"])]
    # A duplicate copy stays cached (its page and its labels can be shown) but is never trained on nor scored.
    manifest["status"] = [DUPLICATE if r.duplicate_of else STATUS_NAMES[int(s)]
                          for r, s in zip(images, status["state"], strict=True)]
    manifest["skip_reason"] = [f"duplicate of {r.duplicate_of}" if r.duplicate_of else cache.errors.get(i, "")
                               for i, r in enumerate(images)]
    return manifest


def _write_data_files(folder: DataFolder, manifest: pd.DataFrame, classes: dict[str, list[str]],
                      report: dict[str, Any]) -> None:
    write_with(folder.manifest, lambda tmp: manifest.to_parquet(tmp, index=False))
    write_json(folder.classes, classes)
    write_json(folder.report_json, report)
    write_text(folder.report_md, render_markdown(report))
    if "artist" in classes:
        artist = manifest[(manifest["label_artist"] >= 0) & (manifest["status"] == "ok")]
        labels = pd.DataFrame({"image_path": artist["path"], "label": artist["label_artist"],
                               "split": artist["split"].astype(str)})
        write_with(folder.labels_csv, lambda tmp: write_csv(labels, tmp))
