import hashlib
import json
import unicodedata
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from artextract.config import DEFAULT_MAX_PIXELS
from artextract.data import wikiart
from artextract.data.artgan_files import ARTIST_HEADER, read_class_file, read_split_file
from artextract.data.names import repair_mojibake

SPLIT_FILES = ["artist_train", "artist_val", "genre_train.csv", "genre_val.csv", "style_train.csv", "style_val.csv"]


def _rows(root: Path) -> dict[str, list]:
    classes = {task: read_class_file(root / "csv" / name)
               for task, name in [("artist", "artist_class"), ("genre", "genre_class"), ("style", "style_class.txt")]}
    rows = {}
    for name in SPLIT_FILES:
        task = name.split("_")[0]
        parsed, problems = read_split_file(root / "csv" / name, len(classes[task]))
        assert problems == []
        rows[name] = parsed
    return rows


def test_cli_makes_100_decodable_images_whose_rows_resolve(run_cli, tmp_path):
    out = tmp_path / "s"
    result = run_cli("synth", out, "--artists", "5", "--per-artist", "20", "--size", "64")
    assert result.code == 0, result.stderr
    files = sorted(p for p in (out / "wikiart").rglob("*") if p.is_file())
    assert len(files) == 100
    for path in files:
        with Image.open(path) as image:
            image.load()
            assert image.mode == "RGB" and min(image.size) == 64
    on_disk = {p.relative_to(out / "wikiart").as_posix() for p in files}
    rows = _rows(out)
    for name in SPLIT_FILES:
        assert {row.path for row in rows[name]} <= on_disk, name
    assert {row.path for row in rows["artist_train"] + rows["artist_val"]} == on_disk
    assert (out / "config.yaml").exists() and (out / "env.json").exists()


def test_files_are_in_the_published_formats(tmp_path, make_synth):
    root = make_synth(tmp_path / "s", artists=3, per_artist=6)
    artist = (root / "csv" / "artist_train").read_bytes().decode()
    assert artist.startswith(ARTIST_HEADER + "\n\n")
    assert "\r" not in artist
    assert all(",," in line for line in artist.splitlines()[2:])
    style = (root / "csv" / "style_val.csv").read_bytes()
    assert style.count(b"\r\n") == style.count(b"\n") > 0
    assert read_class_file(root / "csv" / "style_class.txt") == list(wikiart.STYLES)
    assert read_class_file(root / "csv" / "artist_class") == list(wikiart.ARTISTS[:3])
    # Every image has a style, and the style's folder is the path's top folder (Art_Nouveau -> _Modern).
    rows = _rows(root)
    styles = {row.path: row.label for row in rows["style_train.csv"] + rows["style_val.csv"]}
    assert len(styles) == 18
    assert all(path.split("/")[0] == wikiart.style_folder(wikiart.STYLES[label]) for path, label in styles.items())


def _digest(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != "synth.json"}


def test_same_seed_gives_identical_bytes_whatever_the_worker_count(tmp_path, make_synth):
    one = _digest(make_synth(tmp_path / "a", quirks=True, workers=1))
    two = _digest(make_synth(tmp_path / "b", quirks=True, workers=2))
    assert one == two
    other = _digest(make_synth(tmp_path / "c", quirks=True, seed=1))
    assert one != other


def test_quirks_appear_as_specified(synth_quirky):
    root = synth_quirky
    quirks = json.loads((root / "synth.json").read_text())["quirks"]
    by_kind = defaultdict(list)
    for quirk in quirks:
        by_kind[quirk["kind"]].append(quirk)
    assert {k: len(v) for k, v in by_kind.items()} == {
        "leakage": 5, "conflicting_duplicate": 1, "mojibake": 3, "apostrophe": 1, "corrupt": 1, "oversized": 1}
    rows = _rows(root)
    splits = defaultdict(set)
    for name, parsed in rows.items():
        for row in parsed:
            splits[row.path].add(name.split(".")[0])
    for quirk in by_kind["leakage"]:
        tasks = splits[quirk["path"]]
        assert any(s.endswith("_train") for s in tasks) and any(s.endswith("_val") for s in tasks)
    dup = by_kind["conflicting_duplicate"][0]
    labels = [row.label for row in rows["genre_val.csv"] if row.path == dup["path"]]
    assert sorted(labels) == sorted(dup["labels"]) and len(set(labels)) == 2
    wikiart_root = root / "wikiart"
    names_on_disk = {p.relative_to(wikiart_root).as_posix() for p in wikiart_root.rglob("*.jpg")}
    for quirk in by_kind["mojibake"]:
        csv_paths = {row.path for parsed in rows.values() for row in parsed}
        assert quirk["csv_path"] in csv_paths and quirk["path"] not in csv_paths
        disk_name = unicodedata.normalize(quirk["disk_form"], quirk["path"])
        assert disk_name in names_on_disk
        assert repair_mojibake(quirk["csv_path"].split("/", 1)[1]) == quirk["path"].split("/", 1)[1]
    assert any(q["disk_form"] == "NFD" for q in by_kind["mojibake"])
    assert "'" in by_kind["apostrophe"][0]["path"] and by_kind["apostrophe"][0]["path"] in names_on_disk
    with pytest.raises(OSError), Image.open(wikiart_root / by_kind["corrupt"][0]["path"]) as image:
        image.load()
    with pytest.warns(Image.DecompressionBombWarning), Image.open(
            wikiart_root / by_kind["oversized"][0]["path"]) as image:
        assert image.size[0] * image.size[1] > DEFAULT_MAX_PIXELS


def test_paintings_are_learnable_from_pixels(tmp_path, make_synth):
    """A linear model on 8x8 thumbnails beats chance by far for artist and genre: the signal is in the pixels."""
    from sklearn.linear_model import LogisticRegression

    root = make_synth(tmp_path / "s", artists=6, per_artist=40, size=40, workers=2)
    rows = _rows(root)

    def features(parsed):
        x = [np.asarray(Image.open(root / "wikiart" / r.path).convert("RGB").resize((8, 8)), np.float32).ravel()
             for r in parsed]
        return np.stack(x) / 255.0, np.array([r.label for r in parsed])

    for task, classes in [("artist", 6), ("genre", 10)]:
        train_name, val_name = (f"{task}_train", f"{task}_val") if task == "artist" else (
            f"{task}_train.csv", f"{task}_val.csv")
        x_train, y_train = features(rows[train_name])
        x_val, y_val = features(rows[val_name])
        accuracy = LogisticRegression(max_iter=2000).fit(x_train, y_train).score(x_val, y_val)
        chance = np.bincount(y_val).max() / len(y_val)
        assert accuracy > max(2.0 / classes, chance + 0.15), (task, accuracy, chance)


def test_force_replaces_an_earlier_tree_and_a_failed_run_leaves_no_folder(run_cli, tmp_path, monkeypatch):
    out = tmp_path / "s"
    assert run_cli("synth", out, "--artists", "3", "--per-artist", "4", "--size", "32").code == 0
    (out / "notes.txt").write_text("mine")
    again = run_cli("synth", out, "--artists", "2", "--per-artist", "3", "--size", "32", "--force")
    assert again.code == 0, again.stderr
    assert len([p for p in (out / "wikiart").rglob("*") if p.is_file()]) == 6  # none of the first run's 12
    assert (out / "notes.txt").read_text() == "mine"  # only synth's own tree is replaced
    assert "next: artextract prepare --csv-dir" in again.stdout

    from artextract.data.synth import generate as generate_module

    def broken(job):
        raise OSError("disk full")

    monkeypatch.setattr(generate_module, "_render", broken)
    failed = tmp_path / "failed"
    with pytest.raises(OSError):
        run_cli("synth", failed, "--artists", "2", "--per-artist", "2", "--size", "32", "--workers", "1")
    assert not failed.exists()
