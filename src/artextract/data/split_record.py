"""What a DATA folder remembers about its splits: whether preparing it again moved images between them (runs
trained before then saw some of the new held-out paintings), the digest of a carved test split, and how many
models have been scored on that test split (each look that informs a choice spends some of its independence)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pandas as pd

from artextract.core.atomic import write_json
from artextract.core.progress import log
from artextract.core.records import file_digest, read_record
from artextract.errors import ArtExtractError
from artextract.layout import DataFolder

SCORED = "scored"  # DATA/scored/<test split digest>/<model digest>.json, one file per model scored on it


def test_split_digest(manifest: pd.DataFrame) -> str | None:
    """SHA-256 (16 hex) of the sorted content digests of the usable eval images; None without any."""
    usable = manifest[(manifest["split"] == "eval") & (manifest["status"] == "ok")]
    if usable.empty or "content_sha256" not in manifest.columns:
        return None
    return hashlib.sha256("\n".join(sorted(usable["content_sha256"].astype(str))).encode()).hexdigest()[:16]


def warn_if_splits_moved(folder: DataFolder, manifest: pd.DataFrame) -> int:
    """The images whose split differs from the one DATA's previous manifest gave them (by path), with a warning:
    runs trained on the earlier DATA saw some of the images now held out."""
    if not folder.manifest.is_file():
        return 0
    try:
        before = pd.read_parquet(folder.manifest, columns=["path", "split"])
    except (OSError, ValueError, KeyError):
        return 0  # an unreadable earlier manifest is rebuilt; nothing to compare with
    joined = before.merge(manifest[["path", "split"]], on="path", suffixes=("_before", ""))
    moved = int((joined["split_before"].astype(str) != joined["split"].astype(str)).sum())
    if moved:
        log.warning("prepare: %d images changed split since %s was last prepared (other --test-fraction, "
                    "--select-fraction or --seed?): runs trained on it before trained on some of the images now "
                    "held out; `evaluate` leaves out of their scores what they saw (it checks by content)",
                    moved, folder.root)
    return moved


def record_scoring(folder: DataFolder, digest: str, model_digest: str, model: Path) -> int | None:
    """Notes that the model (by its file's digest) was scored on the test split `digest` of DATA; returns how many
    models have been, or None when DATA cannot be written (a read-only copy: then nothing is counted)."""
    where = folder.root / SCORED / digest
    try:
        where.mkdir(parents=True, exist_ok=True)
        target = where / f"{model_digest[:16]}.json"
        if not target.is_file():
            write_json(target, {"model": str(model), "model_sha256": model_digest})
        return sum(1 for _ in where.glob("*.json"))
    except OSError as error:
        log.warning("evaluate: cannot note the scoring in %s (%s); the count of models scored on this test split "
                    "is not kept", where, error)
        return None



def note_test_scoring(data: Path, split: str, model: Path) -> dict[str, Any] | None:
    """For a test split carved by `prepare --test-fraction` being scored by `model`: its digest and how many models
    of this DATA folder have now been scored on it (a split looked at to choose among many models is no longer
    held out from that choice); None for any other split."""
    folder = DataFolder(data)
    try:
        protocol = read_record(folder.report_json, "").get("protocol")
    except ArtExtractError:
        protocol = None
    digest = protocol.get("test_split_digest") if isinstance(protocol, dict) else None
    if split != "eval" or not digest:
        return None
    count = record_scoring(folder, digest, file_digest(model), model.resolve())
    if count and count > 1:
        log.warning("evaluate: the test split of %s has now been scored by %d different models; a model chosen "
                    "among them by these scores has an optimistic figure (choose on the selection split)", data,
                    count)
    return {"digest": digest, "models_scored": count}
