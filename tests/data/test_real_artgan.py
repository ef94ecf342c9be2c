"""The real ArtGAN CSVs against a generated tree of tiny images at their paths: the exact published figures."""

import io
import re
import unicodedata
import zipfile

import numpy as np
import pytest
from PIL import Image

from artextract.config import PrepareConfig
from artextract.data.artgan_files import read_csv_folder
from artextract.stages.prepare import prepare_dataset

from conftest import DATA_HINT, REAL_MOJIBAKE, SHARED_DATA

# The real tier: the slowest set-up of the suite (a tree of 81,446 tiny images), and it needs ../shared.
pytestmark = [pytest.mark.real,
              pytest.mark.skipif(not SHARED_DATA.is_dir(),
                                 reason=f"real ArtGAN CSVs not found at {SHARED_DATA}; {DATA_HINT}")]

ROWS = {"artist_train": 13_346, "artist_val": 5_706, "genre_train.csv": 45_503, "genre_val.csv": 19_492,
        "style_train.csv": 57_025, "style_val.csv": 24_421}
_MOJIBAKE_RE = re.compile("|".join(map(re.escape, REAL_MOJIBAKE)))


def _disk_name(csv_path: str) -> str:
    """How a correct archive spells a CSV path: proper UTF-8 (mojibake undone with a hand-made table)."""
    return _MOJIBAKE_RE.sub(lambda m: REAL_MOJIBAKE[m.group(0)], csv_path)


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    root = tmp_path_factory.mktemp("real")
    csvs = read_csv_folder(SHARED_DATA)
    paths = sorted({row.path for rows in csvs.rows.values() for row in rows})
    archive = root / "wikiart.zip"
    noise = np.random.default_rng(0)
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zf:
        for n, path in enumerate(paths):
            name = _disk_name(path)
            # A distinct stand-in per path (identical ones would be one painting under 81,446 names)
            buffer = io.BytesIO()
            Image.fromarray(noise.integers(0, 256, (10, 12, 3), dtype=np.uint8)).save(buffer, format="JPEG")
            # Some archives store decomposed (NFD) names; use both forms.
            zf.writestr("wikiart/" + (unicodedata.normalize("NFD", name) if n % 2 else name), buffer.getvalue())
    result = prepare_dataset(SHARED_DATA, archive, root / "data", PrepareConfig(cache_size=8, workers=2))
    return csvs, paths, result


def test_exact_row_counts_and_union(real):
    csvs, paths, result = real
    assert len(paths) == 81_446
    assert {name: r["rows"] for name, r in result.report["rows"].items()} == ROWS
    assert result.report["images"]["union"] == 81_446
    assert len(result.manifest) == 81_446
    assert result.report["images"]["usable"] == 81_446
    assert result.report["content_duplicates"]["groups"] == 0  # distinct stand-ins: nothing merged
    assert result.report["classes"] == {"artist": 23, "style": 27, "genre": 10}
    assert csvs.classes["style"][3] == "Art_Nouveau"


def test_every_mojibake_row_resolves(real):
    csvs, _, result = real
    mojibake_rows = sum(bool(_MOJIBAKE_RE.search(row.path)) for rows in csvs.rows.values() for row in rows)
    assert mojibake_rows > 1_200  # about 709 style and 582 genre rows
    assert result.report["unmatched_rows"] == []
    assert result.report["malformed_rows"] == []
    assert result.report["repairs"]["counts"]["mojibake"] == mojibake_rows


def test_leakage_images_are_never_trained_on(real):
    _, _, result = real
    leakage = result.report["leakage"]
    assert leakage["images"] == 566
    manifest = result.manifest.set_index("path")
    leaked = [unicodedata.normalize("NFC", e["path"]) for e in leakage["list"]]
    splits = manifest["split"].rename(index=lambda p: unicodedata.normalize("NFC", p))
    assert (splits.loc[leaked] == "eval").all()
    assert sum(1 for e in leakage["list"] if "artist" in e["train"] and "style" in e["val"]) >= 120


def test_conflicting_duplicate_is_reported_and_excluded(real):
    _, _, result = real
    conflicts = result.report["duplicates"]["conflicting"]
    assert [(c["path"], c["task"]) for c in conflicts] == [("Post_Impressionism/maurice-de-vlaminck_the-village.jpg",
                                                            "genre")]
    row = result.manifest[result.manifest["path"] == conflicts[0]["path"]].iloc[0]
    assert row["label_genre"] == -1 and row["split"] == "eval" and row["label_style"] >= 0


def test_evaluation_sets_are_the_official_val_sets(real):
    _, _, result = real
    counts = result.report["counts"]
    assert counts["artist"]["eval_labelled"] == 5_706
    assert counts["style"]["eval_labelled"] == 24_421
    # 19,492 rows, one path listed twice with two different labels: that image keeps no genre label.
    assert counts["genre"]["eval_labelled"] == 19_490
    # Official train rows minus the train labels of images that another task evaluates on (705 in all).
    assert {t: c["train_labelled"] + c["select_labelled"] for t, c in counts.items()} == {
        "artist": 13_201, "style": 56_774, "genre": 45_194}
    assert real[2].report["dropped"]["counts"] == {"train label of an image in another task's val split": 705}
    for task, c in counts.items():
        train_pool = c["train_labelled"] + c["select_labelled"]
        assert abs(c["select_labelled"] - 0.1 * train_pool) < 0.01 * train_pool + 30, task
