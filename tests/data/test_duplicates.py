"""Duplicate paintings: found by content (exact bytes, or perceptual hashes for re-encoded, resized and cropped
copies), counted once, never on both sides of a split or fold, and their conflicting labels reported."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from artextract.config import PrepareConfig
from artextract.data.duplicates import find_groups, near_pairs
from artextract.engine.data import load_data_folder
from artextract.engine.folds import fold_of_rows
from artextract.stages.prepare import prepare_dataset


def _rows(csv: Path) -> list[tuple[str, int]]:
    return [(p, int(label)) for p, label in (line.rsplit(",", 1) for line in csv.read_text().splitlines() if line)]


def _save(image: Image.Image, path: Path, quality: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, "JPEG", quality=quality)


@pytest.fixture(scope="module")
def planted(make_synth, tmp_path_factory):
    """A generated collection with four copies planted among its training paintings and one val painting copied
    into train: byte-identical under another style (conflicting style), re-encoded, resized by 5 %, cropped by
    3 % a side; returns (root, {kind: (original path, copy path)})."""
    root = make_synth(tmp_path_factory.mktemp("planted"), artists=5, per_artist=16, size=96)
    csv, images = root / "csv", root / "wikiart"
    styles = _rows(csv / "style_train.csv")
    val = _rows(csv / "style_val.csv")
    style_names = [line.split(" ", 1)[1] for line in (csv / "style_class.txt").read_text().splitlines()]
    (a, a_style), (b, b_style), (c, c_style), (d, d_style) = styles[0], styles[5], styles[10], styles[15]
    other_style = (a_style + 1) % len(style_names)
    copies = {"exact": (a, f"{style_names[other_style]}/copy-exact.jpg"), "reencoded": (b, "Realism/copy-q55.jpg"),
              "resized": (c, "Realism/copy-resized.jpg"), "cropped": (d, "Realism/copy-cropped.jpg"),
              "val_in_train": (val[0][0], "Realism/copy-of-val.jpg")}
    target = images / copies["exact"][1]
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes((images / a).read_bytes())
    original = Image.open(images / b)
    _save(original, images / copies["reencoded"][1], quality=55)
    original = Image.open(images / c)
    _save(original.resize((round(original.width * 0.95), round(original.height * 0.95))),
          images / copies["resized"][1], quality=90)
    original = Image.open(images / d)
    dx, dy = round(original.width * 0.03), round(original.height * 0.03)
    _save(original.crop((dx, dy, original.width - dx, original.height - dy)), images / copies["cropped"][1], 90)
    target = images / copies["val_in_train"][1]
    target.write_bytes((images / val[0][0]).read_bytes())
    extra = [(copies["exact"][1], other_style), (copies["reencoded"][1], b_style), (copies["resized"][1], c_style),
             (copies["cropped"][1], d_style), (copies["val_in_train"][1], val[0][1])]
    with open(csv / "style_train.csv", "a") as handle:
        handle.writelines(f"{p},{label}\n" for p, label in extra)
    return root, copies


@pytest.fixture(scope="module")
def prepared(planted, tmp_path_factory):
    root, _ = planted
    out = tmp_path_factory.mktemp("planted-data")
    # A large selection share makes a straddling group likely if groups were not merged before carving.
    prepare_dataset(root / "csv", root / "wikiart", out, PrepareConfig(cache_size=32, workers=1,
                                                                         select_fraction=0.45))
    return out


def test_every_planted_copy_and_nothing_else_is_grouped(planted, prepared):
    _, copies = planted
    manifest = pd.read_parquet(prepared / "manifest.parquet")
    group = dict(zip(manifest["path"], manifest["duplicate_group"], strict=True))
    found = {frozenset(manifest.loc[manifest["duplicate_group"] == g, "path"]) for g in set(group.values()) if g >= 0}
    assert found == {frozenset(pair) for pair in copies.values()}  # no generated painting paired by chance
    listing = pd.read_csv(prepared / "duplicates.csv")
    assert set(listing["path"]) == {p for pair in copies.values() for p in pair}
    assert dict(zip(listing["path"], listing["kind"], strict=True))[copies["exact"][1]] == "exact"
    assert dict(zip(listing["path"], listing["kind"], strict=True))[copies["resized"][1]] == "near"


def test_a_painting_is_counted_once_and_never_straddles_a_split_or_fold(planted, prepared):
    manifest = pd.read_parquet(prepared / "manifest.parquet")
    grouped = manifest[manifest["duplicate_group"] >= 0]
    for _, members in grouped.groupby("duplicate_group"):
        assert members["split"].nunique() == 1
        assert (members["status"] == "ok").sum() == 1 and (members["status"] == "duplicate").sum() == 1
        copy = members[members["status"] == "duplicate"].iloc[0]
        assert copy["duplicate_of"] == members.loc[members["status"] == "ok", "path"].iloc[0]
    info = load_data_folder(prepared)
    folds = fold_of_rows(info.manifest, 4)
    assert (folds[(info.manifest["status"] == "duplicate").to_numpy()] == -1).all()  # copies never enter a fold


def test_a_val_painting_keeps_its_val_copy_and_drops_the_train_copy(planted, prepared):
    _, copies = planted
    manifest = pd.read_parquet(prepared / "manifest.parquet").set_index("path")
    original, copy = copies["val_in_train"]
    assert manifest.at[original, "split"] == "eval" and manifest.at[original, "status"] == "ok"
    assert manifest.at[copy, "status"] == "duplicate" and manifest.at[copy, "duplicate_of"] == original
    report = (prepared / "prepare_report.md").read_text()
    assert "Val paintings with copies in train" in report and copy in report


def test_conflicting_labels_leave_the_task_unlabelled_and_are_reported(planted, prepared):
    _, copies = planted
    manifest = pd.read_parquet(prepared / "manifest.parquet").set_index("path")
    original, copy = copies["exact"]
    kept = original if manifest.at[original, "status"] == "ok" else copy
    assert manifest.at[kept, "label_style"] == -1  # two styles for one painting: not trained on nor scored
    assert manifest.at[kept, "label_artist"] >= 0 or manifest.at[kept, "label_genre"] >= 0  # its other tasks stay
    resized = copies["resized"][0]  # same label on both copies: kept as it is
    assert manifest.at[resized, "label_style"] >= 0
    report = (prepared / "prepare_report.md").read_text()
    assert "copies disagree" in report and copy in report


def test_near_pairs_match_the_brute_force_search():
    rng = np.random.default_rng(3)
    base = rng.integers(0, 2**63, 40, dtype=np.int64).astype(np.uint64)
    # 1,300 hashes: some within a few bits of a base one, in both hashes or in one only
    flips = rng.integers(0, 64, (1300, 6))
    phash = base[rng.integers(0, 40, 1300)].copy()
    dhash = rng.integers(0, 2**63, 1300, dtype=np.int64).astype(np.uint64)
    for i in range(1300):
        for bit in flips[i, : rng.integers(0, 6)]:
            phash[i] ^= np.uint64(1) << np.uint64(bit)
    dhash[::3] = dhash[0]
    found = set(near_pairs(phash, dhash, bits=8))
    distance = np.bitwise_count(phash[:, None] ^ phash[None, :])
    d_distance = np.bitwise_count(dhash[:, None] ^ dhash[None, :])
    expected = {(a, b) for a, b in zip(*np.nonzero((distance <= 8) & (d_distance <= 8)), strict=True) if a < b}
    assert found == expected and len(expected) > 100


def test_groups_are_closed_under_chains_of_copies():
    sha = np.zeros((4, 32), np.uint8)
    sha[:, 0] = [1, 2, 3, 4]  # all files differ
    # A~B (6 bits), B~C (6 bits), but A-C differ in 12: one painting all the same; D far from all
    phash = np.array([0, 0b111111, 0b111111111111, 0xFFFF00000000FFFF], dtype=np.uint64)
    dhash = np.zeros(4, np.uint64)
    groups = find_groups(sha, phash, dhash, np.ones(4, bool))
    assert groups.group.tolist()[:3] == [0, 0, 0] and groups.group[3] == -1 and groups.kind == ["near"]


def test_the_cache_fingerprints_a_file_from_its_bytes(tmp_path):
    import hashlib

    from artextract.data.duplicates import image_fingerprint

    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), (200, 10, 10)).save(buffer, "PNG")
    data = buffer.getvalue()
    square = np.zeros((16, 16, 3), np.uint8)
    digest, phash, dhash = image_fingerprint(data, square)
    assert digest == hashlib.sha256(data).digest() and phash == 0 and dhash == 0


def test_a_review_settles_a_duplicate_painting_s_conflicting_labels(planted, prepared, tmp_path):
    root, copies = planted
    original, copy = copies["exact"]
    manifest = pd.read_parquet(prepared / "manifest.parquet").set_index("path")
    kept = original if manifest.at[original, "status"] == "ok" else copy
    review = tmp_path / "label_issues_style.csv"
    review.write_text(f"task,path,action,new_label\nstyle,{copy},drop,\n")  # the copy's style was the wrong one
    result = prepare_dataset(root / "csv", root / "wikiart", tmp_path / "data", PrepareConfig(
        cache_size=32, workers=1, select_fraction=0.45), overrides=[review])
    settled = result.manifest.set_index("path")
    original_style = next(label for p, label in _rows(root / "csv" / "style_train.csv") if p == original)
    assert settled.at[kept, "label_style"] == original_style
    assert result.report["content_duplicates"]["conflicting"] == []


def test_thousands_of_identical_placeholders_cost_no_more_than_one():
    # 20,000 identical images (one exact group, no pair compared), and 3,000 near-identical blank ones whose
    # hashes pair every one with every other: the near search is given up, memory and time stay bounded.
    count = 23_000
    sha = np.zeros((count, 32), np.uint8)
    sha[20_000:, :4] = np.arange(3_000, dtype=np.uint32)[:, None].view(np.uint8).reshape(3_000, 4)
    sha[20_000:, 31] = 1
    phash = np.zeros(count, np.uint64)
    phash[20_000:] = np.uint64(1) << (np.arange(3_000, dtype=np.uint64) % np.uint64(64))  # all within 2 bits
    groups = find_groups(sha, phash, np.zeros(count, np.uint64), np.ones(count, bool))
    assert groups.near_skipped
    assert (groups.group[:20_000] == 0).all() and groups.kind[0] == "exact"
    assert len(set(groups.group[20_000:].tolist())) <= 64 + 1  # only identically hashed ones were joined
