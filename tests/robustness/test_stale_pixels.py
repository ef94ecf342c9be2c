"""A painting replaced on disk is decoded again, and nothing computed from its old pixels is reused (issue 21,
item 2): the cache checks each source file's identity, a skipped row is retried once its file changes, the feature
maps and a run's data key follow the cache's contents, and `prepare --force` rebuilds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from artextract.config import PrepareConfig
from artextract.data.cache_files import open_cache
from artextract.engine.data import data_key, load_data_folder
from artextract.layout import DataFolder
from artextract.stages.prepare import prepare_dataset
from artextract.stages.train import train

from conftest import tiny_train_config

CONFIG = PrepareConfig(cache_size=32, workers=1)


def _replace_every_image(images: Path) -> None:
    """Each painting replaced by a different one under the same name (here: its colours inverted)."""
    for path in sorted(images.rglob("*.jpg")):
        try:
            with Image.open(path) as image:
                inverted = Image.fromarray(255 - np.asarray(image.convert("RGB")))
        except OSError:
            continue  # the damaged file of the other test
        inverted.save(path, quality=90)


def _pixels(data: Path) -> np.ndarray:
    info = load_data_folder(data)
    ok = info.manifest["cache_index"].to_numpy()[info.manifest["status"].to_numpy() == "ok"]
    return np.asarray(open_cache(info.folder.cache))[ok]


def _report(data: Path) -> dict:
    return json.loads(DataFolder(data).report_json.read_text())


def test_replaced_paintings_are_decoded_again_and_their_old_maps_never_reused(make_synth, tmp_path, run_cli):
    synth = make_synth(tmp_path / "synth", artists=3, per_artist=6, size=40)
    images, data = synth / "wikiart", tmp_path / "data"
    prepare_dataset(synth / "csv", images, data, CONFIG)
    before, key_before = _pixels(data), data_key(load_data_folder(data))
    train(data, tmp_path / "run1", tiny_train_config(epochs=1, freeze_backbone=True, batch_size=4))

    _replace_every_image(images)
    again = prepare_dataset(synth / "csv", images, data, CONFIG)
    after = _pixels(data)
    assert again.report["cache"]["decoded_this_run"] == len(after)  # not "already cached"
    assert np.abs(after.astype(int) - before.astype(int)).mean() > 50  # the new paintings' pixels, not the old
    assert data_key(load_data_folder(data)) != key_before  # ablate and --resume see other DATA
    train(data, tmp_path / "run2", tiny_train_config(epochs=1, freeze_backbone=True, batch_size=4))
    assert len([p for p in (data / "features").iterdir() if p.is_dir()]) == 2  # maps of the new pixels

    unchanged = prepare_dataset(synth / "csv", images, data, CONFIG)
    assert unchanged.report["cache"]["decoded_this_run"] == 0  # nothing changed: nothing decoded
    forced = run_cli("prepare", "--csv-dir", synth / "csv", "--images", images, "--out", data, "--cache-size", "32",
                     "--workers", "1", "--force")
    assert forced.code == 0, forced.stderr
    assert _report(data)["cache"]["decoded_this_run"] == len(load_data_folder(data).manifest)  # --force: rebuild
    np.testing.assert_array_equal(_pixels(data), after)


def test_a_skipped_image_is_retried_once_its_file_is_replaced(make_synth, tmp_path):
    synth = make_synth(tmp_path / "synth", artists=3, per_artist=6, size=40)
    images, data = synth / "wikiart", tmp_path / "data"
    victim = sorted(images.rglob("*.jpg"))[0]
    good = victim.read_bytes()
    victim.write_bytes(good[: len(good) // 3])  # cut short, as by an interrupted download
    first = prepare_dataset(synth / "csv", images, data, CONFIG)
    path = victim.relative_to(images).as_posix()
    row = first.manifest[first.manifest["path"] == path].iloc[0]
    assert row["status"] == "skipped" and row["skip_reason"]

    victim.write_bytes(good)  # downloaded again
    second = prepare_dataset(synth / "csv", images, data, CONFIG)
    row = second.manifest[second.manifest["path"] == path].iloc[0]
    assert row["status"] == "ok" and row["skip_reason"] == ""  # "download it again" works
    assert second.report["cache"]["decoded_this_run"] == 1
