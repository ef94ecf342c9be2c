import json
import shutil
import unicodedata
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from artextract.config import PrepareConfig
from artextract.data.cache_files import open_images, read_layout
from artextract.data.decode import decode_square
from artextract.stages.prepare import prepare_dataset

SIZE = 16


def _config(**overrides) -> PrepareConfig:
    return PrepareConfig(**{"cache_size": SIZE, "workers": 1, **overrides})


@pytest.fixture(scope="module")
def prepared(synth_quirky, tmp_path_factory):
    out = tmp_path_factory.mktemp("prepared")
    return prepare_dataset(synth_quirky / "csv", synth_quirky / "wikiart", out, _config())


def _quirks(root: Path) -> dict[str, list[dict]]:
    by_kind: dict[str, list[dict]] = {}
    for quirk in json.loads((root / "synth.json").read_text())["quirks"]:
        by_kind.setdefault(quirk["kind"], []).append(quirk)
    return by_kind


def test_report_lists_every_quirk(synth_quirky, prepared):
    quirks, report, manifest = _quirks(synth_quirky), prepared.report, prepared.manifest
    assert {e["path"] for e in report["leakage"]["list"]} == {q["path"] for q in quirks["leakage"]}
    assert [(c["path"], c["task"], c["labels"]) for c in report["duplicates"]["conflicting"]] == [
        (quirks["conflicting_duplicate"][0]["path"], "genre", sorted(quirks["conflicting_duplicate"][0]["labels"]))]
    repaired = {(r["csv_path"], unicodedata.normalize("NFC", r["path"])) for r in report["repairs"]["rows"]}
    for quirk in quirks["mojibake"]:
        assert (quirk["csv_path"], quirk["path"]) in repaired
    skipped = {s["path"]: s["reason"] for s in report["skipped_images"]}
    assert "truncated" in skipped.pop(quirks["corrupt"][0]["path"])
    assert "over the pixel limit" in skipped.pop(quirks["oversized"][0]["path"])
    assert skipped == {}
    assert report["unmatched_rows"] == [] and report["malformed_rows"] == []
    apostrophe = manifest[manifest["path"] == quirks["apostrophe"][0]["path"]]
    assert apostrophe["status"].tolist() == ["ok"]
    md = (prepared.out / "prepare_report.md").read_text()
    for quirk_path in [quirks["corrupt"][0]["path"], quirks["conflicting_duplicate"][0]["path"]]:
        assert quirk_path in md


def test_leak_free_protocol(synth_quirky, prepared):
    manifest = prepared.manifest
    official = manifest[[c for c in manifest if c.startswith("official_")]]
    in_any_val = (official == "val").any(axis=1)
    assert (manifest.loc[in_any_val, "split"] == "eval").all()
    assert (manifest.loc[~in_any_val, "split"] != "eval").all()
    # Labels of eval images come only from the val splits that list them.
    for task in ("artist", "style", "genre"):
        eval_labelled = manifest[(manifest["split"] == "eval") & (manifest[f"label_{task}"] >= 0)]
        assert (eval_labelled[f"official_{task}"] == "val").all()
    train_pool = manifest["split"].isin(["train", "select"]).sum()
    assert abs((manifest["split"] == "select").sum() - 0.1 * train_pool) <= 0.05 * train_pool
    artist_val_rows = len((synth_quirky / "csv" / "artist_val").read_text().splitlines()) - 2  # header, blank
    assert ((manifest["split"] == "eval") & (manifest["label_artist"] >= 0)).sum() == artist_val_rows
    assert json.loads((prepared.out / "classes.json").read_text())["artist"][0] == "Albrecht_Durer"
    labels = pd.read_csv(prepared.out / "labels.csv")
    assert list(labels.columns) == ["image_path", "label", "split"]
    assert len(labels) == ((manifest["label_artist"] >= 0) & (manifest["status"] == "ok")).sum()


def test_cache_rows_equal_a_direct_decode(synth_quirky, prepared):
    manifest = prepared.manifest
    layout = read_layout(prepared.out / "cache")
    images = open_images(prepared.out / "cache", layout)
    ok = manifest[manifest["status"] == "ok"]
    for _, row in ok.iloc[:: max(1, len(ok) // 10)].iterrows():
        expected, width, height = decode_square((synth_quirky / "wikiart" / row["path"]).read_bytes(), SIZE,
                                                10**8)
        np.testing.assert_array_equal(images[row["cache_index"]], expected)
        assert (row["width"], row["height"]) == (width, height)
    assert (manifest.loc[manifest["status"] != "ok", "cache_index"] == -1).all()


def test_zip_input_gives_the_same_manifest_and_cache(synth_quirky, prepared, tmp_path):
    archive = tmp_path / "wikiart.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted((synth_quirky / "wikiart").rglob("*")):
            if path.is_file():  # wrapped in a top folder, like the real wikiart.zip
                zf.write(path, "wikiart/" + path.relative_to(synth_quirky / "wikiart").as_posix())
    from_zip = prepare_dataset(synth_quirky / "csv", archive, tmp_path / "data", _config(workers=2))
    pd.testing.assert_frame_equal(from_zip.manifest, prepared.manifest)
    assert from_zip.report["inputs"]["wrapper_folder"] == "wikiart"
    ok = prepared.manifest["status"].eq("ok").to_numpy()
    zip_images = np.asarray(open_images(tmp_path / "data" / "cache", read_layout(tmp_path / "data" / "cache")))
    folder_images = np.asarray(open_images(prepared.out / "cache", read_layout(prepared.out / "cache")))
    np.testing.assert_array_equal(zip_images[ok], folder_images[ok])


def test_shards_and_reruns_are_incremental(synth_quirky, prepared, tmp_path, run_cli):
    common = ["prepare", "--csv-dir", synth_quirky / "csv", "--images", synth_quirky / "wikiart", "--out",
              tmp_path / "d", "--cache-size", str(SIZE), "--workers", "1"]
    first = run_cli(*common, "--shard", "0/2")
    assert first.code == 0, first.stderr
    assert "INCOMPLETE" in first.stdout
    partial = pd.read_parquet(tmp_path / "d" / "manifest.parquet")
    assert 0 < (partial["status"] == "pending").sum() < len(partial)
    second = run_cli(*common, "--shard", "1/2")
    assert second.code == 0, second.stderr
    again = run_cli(*common)
    assert again.code == 0, again.stderr
    report = json.loads((tmp_path / "d" / "prepare_report.json").read_text())
    assert report["cache"]["decoded_this_run"] == 0
    assert report["cache"]["already_cached"] == len(partial)
    assert report["cache"]["complete"]
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "d" / "manifest.parquet"),
                                  pd.read_parquet(prepared.out / "manifest.parquet"))
    assert (tmp_path / "d" / "cache" / "images.u8").read_bytes() == (prepared.out / "cache" / "images.u8").read_bytes()


def test_another_cache_size_is_refused_without_force_and_rebuilds_with_it(synth_quirky, prepared, tmp_path, run_cli):
    shutil.copytree(prepared.out, tmp_path / "d")
    before = read_layout(tmp_path / "d" / "cache")
    refused = run_cli("prepare", "--csv-dir", synth_quirky / "csv", "--images", synth_quirky / "wikiart", "--out",
                      tmp_path / "d", "--cache-size", "8", "--set", "prepare.workers=1")
    assert refused.code == 2 and f"caches {before.image_size} px squares" in refused.stderr
    assert "--force" in refused.stderr and "--cache-size 8" in refused.stderr and "--image-size" not in refused.stderr
    assert read_layout(tmp_path / "d" / "cache") == before  # untouched: the runs trained on it still evaluate
    result = prepare_dataset(synth_quirky / "csv", synth_quirky / "wikiart", tmp_path / "d", _config(cache_size=8),
                             rebuild=True)
    assert result.report["cache"]["already_cached"] == 0
    assert read_layout(tmp_path / "d" / "cache").image_size == 8


def test_inner_join_protocol_is_labelled_and_strict(synth_quirky, tmp_path):
    result = prepare_dataset(synth_quirky / "csv", synth_quirky / "wikiart", tmp_path / "d",
                             _config(protocol="inner-join"))
    manifest = result.manifest
    labels = manifest[["label_artist", "label_style", "label_genre"]]
    assert (labels >= 0).all(axis=None)
    assert "INNER-JOIN" in (tmp_path / "d" / "prepare_report.md").read_text()
    assert result.report["dropped"]["counts"]["not labelled in every task"] > 0
    leaked = {e["path"] for e in result.report["leakage"]["list"]}
    assert not leaked & set(manifest["path"])


def test_bad_rows_and_files_are_reported_not_fatal(tmp_path, make_synth):
    root = make_synth(tmp_path / "s", artists=2, per_artist=6)
    (tmp_path / "s" / "secret.jpg").write_bytes(b"must never be opened")
    wikiart = root / "wikiart"
    style_folder = next(p for p in wikiart.iterdir() if p.is_dir())
    (style_folder / "empty.jpg").write_bytes(b"")
    (style_folder / "notes.jpg").write_text("not a picture")
    extra = (f"{style_folder.name}/empty.jpg,0\r\n{style_folder.name}/notes.jpg,0\r\n../secret.jpg,0\r\n"
             f"{style_folder.name}/missing-painting.jpg,0\r\n{style_folder.name}/x.jpg,99\r\n")
    with open(root / "csv" / "style_train.csv", "a", encoding="utf-8", newline="") as handle:
        handle.write(extra)
    result = prepare_dataset(root / "csv", wikiart, tmp_path / "d", _config())
    report = result.report
    reasons = {(m["line"], m["reason"].split(" (")[0]) for m in report["malformed_rows"]}
    assert any("escapes" in r for _, r in reasons) and any("out of range" in r for _, r in reasons)
    assert [u["path"] for u in report["unmatched_rows"]] == [f"{style_folder.name}/missing-painting.jpg"]
    skipped = {s["path"].split("/")[-1]: s["reason"] for s in report["skipped_images"]}
    assert skipped == {"empty.jpg": "empty file", "notes.jpg": "not an image Pillow can read"}
    assert "secret.jpg" not in " ".join(result.manifest["path"])
    assert (result.manifest["status"] == "ok").sum() == 12


def test_cli_errors_are_one_line_with_exit_code_2(run_cli, synth_quirky, tmp_path):
    cases = [
        (["--csv-dir", tmp_path / "nope", "--images", synth_quirky / "wikiart"], "is not a folder"),
        (["--csv-dir", synth_quirky / "csv", "--images", tmp_path / "nope"], "does not exist"),
        (["--csv-dir", synth_quirky / "csv", "--images", synth_quirky / "csv"], "none of the CSV rows matches"),
        (["--csv-dir", synth_quirky / "csv", "--images", synth_quirky / "wikiart", "--shard", "2/2"], "--shard"),
        (["--csv-dir", synth_quirky / "csv", "--images", synth_quirky / "synth.json"], "neither a folder nor a zip"),
    ]
    for n, (args, message) in enumerate(cases):
        result = run_cli("prepare", *args, "--out", tmp_path / f"out{n}")
        assert result.code == 2, (args, result.stderr)
        assert message in result.stderr and "Traceback" not in result.stderr
        errors = [line for line in result.stderr.splitlines() if line.startswith("artextract: error:")]
        assert len(errors) == 1 and message in errors[0], result.stderr
        assert not (tmp_path / f"out{n}").exists()  # refused: no empty DATA folder left behind
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "thesis.tex").write_text("")
    busy = run_cli("prepare", "--csv-dir", synth_quirky / "csv", "--images", synth_quirky / "wikiart", "--out",
                   tmp_path / "busy")
    assert busy.code == 2 and "--force" in busy.stderr


def test_a_deleted_cache_file_is_rebuilt(synth_quirky, prepared, tmp_path):
    shutil.copytree(prepared.out, tmp_path / "d")
    (tmp_path / "d" / "cache" / "images.u8").unlink()
    result = prepare_dataset(synth_quirky / "csv", synth_quirky / "wikiart", tmp_path / "d", _config())
    assert result.report["cache"]["already_cached"] == 0
    assert (tmp_path / "d" / "cache" / "images.u8").read_bytes() == (prepared.out / "cache" / "images.u8").read_bytes()


def test_the_cli_points_at_the_next_command(run_cli, synth_quirky, tmp_path):
    result = run_cli("prepare", "--csv-dir", synth_quirky / "csv", "--images", synth_quirky / "wikiart", "--out",
                     tmp_path / "data", "--cache-size", "32", "--workers", "1")
    assert result.code == 0, result.stderr
    assert f"next: artextract train --data {tmp_path / 'data'} --out RUN" in result.stdout


def test_rows_without_images_are_summarised_once_and_the_next_command_keeps_the_config(make_synth, tmp_path,
                                                                                        run_cli):
    """Issue 26: `closest: None` printed for every row of a sample; the next command dropped --config."""
    synth = make_synth(tmp_path / "synth", artists=3, per_artist=6, size=40)
    styles = sorted(p for p in (synth / "wikiart").iterdir() if p.is_dir())
    shutil.rmtree(styles[0])  # a sample without that style's images: no close names to offer
    config = tmp_path / "c.yaml"
    config.write_text("prepare:\n  image_size: 24\n  workers: 1\n")
    result = run_cli("prepare", "--csv-dir", synth / "csv", "--images", synth / "wikiart", "--out",
                     tmp_path / "data", "--config", config)
    assert result.code == 0, result.stderr
    assert f"artextract train --data {tmp_path / 'data'} --out RUN --config {config}" in result.stdout
    report = (tmp_path / "data" / "prepare_report.md").read_text()
    assert "None" not in report and "No file with a close name exists for any of them" in report


def test_a_test_split_is_carved_from_train_when_there_is_no_val_image(make_synth, tmp_path):
    from artextract.errors import DataError

    root = make_synth(tmp_path / "s", artists=4, per_artist=20, size=32)
    with pytest.raises(DataError, match="these CSVs list official val images"):
        prepare_dataset(root / "csv", root / "wikiart", tmp_path / "refused", _config(test_fraction=0.2))
    for val in (root / "csv").glob("*val*"):  # the val images absent, as in the WikiArt sample
        for line in val.read_text(encoding="utf-8").splitlines():
            image = root / "wikiart" / line.split(",")[0]
            if image.is_file():
                image.unlink()
    plain = prepare_dataset(root / "csv", root / "wikiart", tmp_path / "plain", _config(select_fraction=0.1))
    assert set(plain.manifest["split"]) == {"train", "select"}
    carved = prepare_dataset(root / "csv", root / "wikiart", tmp_path / "d", _config(select_fraction=0.1,
                                                                                     test_fraction=0.2))
    counts = carved.manifest["split"].value_counts()
    total = len(carved.manifest)
    assert abs(counts["eval"] - 0.2 * total) <= 4 and abs(counts["select"] - 0.1 * total) <= 4  # stratified rounding
    for split in ("eval", "select"):  # every artist in both held-out parts
        labels = carved.manifest[carved.manifest["split"] == split]["label_artist"]
        assert set(labels[labels >= 0]) == set(range(4)), split
    again = prepare_dataset(root / "csv", root / "wikiart", tmp_path / "d2", _config(select_fraction=0.1,
                                                                                     test_fraction=0.2))
    assert again.manifest["split"].tolist() == carved.manifest["split"].tolist()  # seeded
    assert "test split of 20%" in carved.report["protocol"]["description"]
    with pytest.raises(DataError, match="their sum must stay below 1"):
        prepare_dataset(root / "csv", root / "wikiart", tmp_path / "d3", _config(select_fraction=0.5,
                                                                                 test_fraction=0.5))
