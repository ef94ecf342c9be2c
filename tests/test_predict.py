import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import artextract
from artextract.errors import ArtExtractError


def _images_root(data: Path) -> Path:
    return Path(json.loads((data / "prepare_report.json").read_text())["inputs"]["images"])


def test_cli_predictions_equal_evaluate(run_cli, evaluated_run, prepared_small, tmp_path):
    predictions = pd.read_parquet(evaluated_run / "eval" / "predictions.parquet")
    sample = predictions[predictions["split"] == "eval"].head(12)
    files = [str(_images_root(prepared_small) / p) for p in sample["path"]]
    out = tmp_path / "p.json"
    result = run_cli("predict", "--model", evaluated_run / "model.safetensors", *files, "--format", "json",
                     "--output", out, "--batch-size", "5", "--uncalibrated")
    assert result.code == 0, result.stderr
    got = json.loads(out.read_text())
    assert [g["source"] for g in got] == files and not got[0]["calibrated"]
    for (_, row), answer in zip(sample.iterrows(), got, strict=True):
        for task in ("artist", "style", "genre"):
            names = [e["class"] for e in answer["predictions"][task]]
            probabilities = [e["probability"] for e in answer["predictions"][task]]
            assert names == list(row[f"top5_{task}"])
            np.testing.assert_allclose(probabilities, row[f"top5_prob_{task}"], rtol=1e-4, atol=1e-6)


def test_predictions_are_calibrated_by_the_temperatures_in_the_model_file(evaluated_run, prepared_small):
    from artextract.analysis.probabilities import softmax
    from artextract.engine.checkpoint import read_model_metadata

    temperature = read_model_metadata(evaluated_run / "model.safetensors").temperature
    fitted = json.loads((evaluated_run / "eval" / "metrics.json").read_text())["tasks"]
    for task, value in temperature.items():  # the selection set's fit, as evaluate finds it
        assert value == pytest.approx(fitted[task]["calibration"]["temperature"], rel=1e-2)
    predictions = pd.read_parquet(evaluated_run / "eval" / "predictions.parquet")
    row = predictions[predictions["split"] == "eval"].iloc[0]
    model = artextract.load_model(evaluated_run, device="cpu")
    answer = model.predict(str(_images_root(prepared_small) / row["path"]), top_k=3)[0]
    assert answer["calibrated"]
    for task in temperature:
        expected = np.sort(softmax(row[f"logits_{task}"][None], temperature[task])[0])[::-1][:3]
        got = [e["probability"] for e in answer["predictions"][task]]
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)


def _save(image: Image.Image, path: Path, fmt: str, **kwargs) -> Path:
    image.save(path, format=fmt, **kwargs)
    return path


@pytest.fixture
def odd_images(tmp_path):
    rng = np.random.default_rng(0)
    base = Image.fromarray(rng.integers(0, 255, (50, 70, 3), dtype=np.uint8))
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    exif = Image.Exif()
    exif[0x0112] = 6
    good = [
        _save(base.convert("CMYK"), folder / "cmyk.jpg", "JPEG"),
        _save(base.convert("L"), folder / "grey.png", "PNG"),
        _save(Image.fromarray(np.asarray(base.convert("L"), np.uint16) * 257), folder / "deep16.png", "PNG"),
        _save(base.convert("RGBA"), folder / "alpha.png", "PNG"),
        _save(base.convert("P"), folder / "sub" / "palette.gif", "GIF", transparency=0),
        _save(base, folder / "sub" / "photo.webp", "WEBP"),
        _save(base, folder / "sub" / "scan.tiff", "TIFF"),
        _save(base, folder / "sub" / "rotated.jpg", "JPEG", exif=exif),
    ]
    data = io.BytesIO()
    base.save(data, format="JPEG")
    (folder / "truncated.jpg").write_bytes(data.getvalue()[:200])
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "notes.jpg").write_text("not a picture")
    _save(Image.new("1", (12_000, 11_000)), folder / "bomb.png", "PNG")
    return folder, good


def test_every_mode_is_predicted_and_bad_files_are_reported(run_cli, evaluated_run, odd_images, tmp_path):
    folder, good = odd_images
    out = tmp_path / "p.csv"
    result = run_cli("predict", "--model", evaluated_run / "model.safetensors", folder, "--format", "csv",
                     "--output", out, "--top-k", "2", "--cam", tmp_path / "cams")
    assert result.code == 0, result.stderr
    table = pd.read_csv(out)
    statuses = table.groupby("source")["status"].first()
    assert {Path(s).name for s in statuses[statuses == "ok"].index} == {p.name for p in good}
    bad = {Path(s).name: status for s, status in statuses[statuses != "ok"].items()}
    assert set(bad) == {"truncated.jpg", "empty.jpg", "notes.jpg", "bomb.png"}
    assert "over the pixel limit" in bad["bomb.png"] and bad["empty.jpg"] == "empty file"
    for name in bad:
        assert f"skipped {folder / name}" in result.stderr
    assert len(table[table["status"] == "ok"]) == len(good) * 3 * 2  # 3 tasks, top 2
    assert len(list((tmp_path / "cams").glob("*.png"))) == len(good) * 3


def test_table_output_and_globs(run_cli, evaluated_run, odd_images):
    folder, _ = odd_images
    result = run_cli("predict", "--model", evaluated_run / "model.safetensors", str(folder / "sub" / "*.webp"))
    assert result.code == 0, result.stderr
    assert "photo.webp" in result.stdout and "artist" in result.stdout


def test_exit_2_when_nothing_could_be_predicted(run_cli, evaluated_run, tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"")
    result = run_cli("predict", "--model", evaluated_run / "model.safetensors", tmp_path / "a.jpg",
                     tmp_path / "missing.jpg")
    assert result.code == 2
    assert "file not found" in result.stderr and "none of the 2 images" in result.stderr
    missing_model = run_cli("predict", "--model", tmp_path / "nope.safetensors", tmp_path / "a.jpg")
    assert missing_model.code == 2 and "does not exist" in missing_model.stderr
    not_a_model = tmp_path / "weights.safetensors"
    import torch
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(1)}, str(not_a_model))
    result = run_cli("predict", "--model", not_a_model, tmp_path / "a.jpg")
    assert result.code == 2 and "not an ArtExtract model" in result.stderr


def test_python_api_takes_paths_pil_images_and_arrays(evaluated_run, odd_images):
    _, good = odd_images
    model = artextract.load_model(evaluated_run / "model.safetensors", device="cpu")
    assert model.tasks == ["artist", "style", "genre"]
    inputs = [good[0], Image.open(good[1]), np.asarray(Image.open(good[5]).convert("RGB")), "missing.png"]
    results = model.predict(inputs, top_k=3)
    assert [r["status"] for r in results] == ["ok", "ok", "ok", "file not found"]
    assert len(results[0]["predictions"]["style"]) == 3
    assert results[1]["source"] == "<PngImageFile>"
    probabilities = [e["probability"] for e in results[0]["predictions"]["artist"]]
    assert probabilities == sorted(probabilities, reverse=True) and 0 < sum(probabilities) <= 1.0 + 1e-6
    frame = model.predict(good[0], top_k=2, as_frame=True)
    assert list(frame.columns) == ["source", "status", "task", "rank", "class", "probability", "unknown",
                                    "warning"]
    assert len(frame) == 6


def _rewrite_metadata(source: Path, target: Path, change) -> Path:
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(source), framework="pt") as handle:
        metadata = dict(handle.metadata())
    change(metadata)
    save_file(load_file(str(source)), str(target), metadata=metadata)
    return target


def test_older_model_files_load_and_incompatible_ones_are_named(evaluated_run, tmp_path):
    source = evaluated_run / "model.safetensors"

    def older(metadata):  # written before the cache size was recorded, with an option since removed from defaults
        metadata.pop("cache_size")
        config = json.loads(metadata["model_config"])
        config.pop("dropout")
        metadata["model_config"] = json.dumps(config)

    model = artextract.load_model(_rewrite_metadata(source, tmp_path / "old.safetensors", older))
    assert model.preprocessing.cache_size == round(model.preprocessing.image_size * 8 / 7)

    def newer(metadata):
        config = json.loads(metadata["model_config"])
        config["quantum_reader"] = True
        metadata["model_config"] = json.dumps(config)

    with pytest.raises(ArtExtractError, match=r"newer ArtExtract.*quantum_reader"):
        artextract.load_model(_rewrite_metadata(source, tmp_path / "new.safetensors", newer))
    with pytest.raises(ArtExtractError, match="not an ArtExtract model of format 1 \\(found 2\\)"):
        artextract.load_model(_rewrite_metadata(source, tmp_path / "v2.safetensors",
                                                lambda m: m.update(artextract_format="2")))


def test_output_format_from_the_extension_whole_ranks_and_run_folders(run_cli, evaluated_run, odd_images, tmp_path):
    folder, good = odd_images
    out = tmp_path / "p.csv"
    result = run_cli("predict", "--model", evaluated_run, good[0], folder / "empty.jpg", "--output", out)
    assert result.code == 0, result.stderr
    text = out.read_text()
    assert text.startswith("source,status,task,rank,class,probability")
    table = pd.read_csv(out)
    assert table["rank"].dropna().tolist()[:3] == [1, 2, 3] and ",1.000000," not in text
    assert table.loc[table["source"].str.endswith("empty.jpg"), "status"].tolist() == ["empty file"]
    again = run_cli("predict", "--model", evaluated_run, good[0], "--output", out)
    assert again.code == 2 and "--force" in again.stderr
    assert run_cli("predict", "--model", evaluated_run, good[0], "--output", out, "--force").code == 0
    (tmp_path / "cams").mkdir()
    (tmp_path / "cams" / "old.png").write_bytes(b"")
    busy = run_cli("predict", "--model", evaluated_run, good[0], "--cam", tmp_path / "cams")
    assert busy.code == 2 and "not empty" in busy.stderr


def test_the_table_says_why_when_every_image_failed(run_cli, evaluated_run, tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"")
    result = run_cli("predict", "--model", evaluated_run, tmp_path / "a.jpg")
    assert result.code == 2 and "empty file" in result.stdout


def test_python_api_expands_folders_and_reads_float_arrays(evaluated_run, odd_images):
    folder, good = odd_images
    model = artextract.load_model(evaluated_run, device="cpu")
    from_folder = model.predict(str(folder / "sub"), top_k=1)
    assert {Path(r["source"]).name for r in from_folder} == {"palette.gif", "photo.webp", "scan.tiff", "rotated.jpg"}
    pixels = np.asarray(Image.open(good[5]).convert("RGB"))
    as_float = model.predict(pixels.astype(np.float32) / 255, top_k=2)[0]
    as_uint8 = model.predict(pixels, top_k=2)[0]
    assert as_float["status"] == "ok" and as_float["predictions"]["artist"][0]["class"] == \
        as_uint8["predictions"]["artist"][0]["class"]
    assert model.predict(np.zeros((4, 4, 7)), top_k=1)[0]["status"].startswith("an array of shape")
    assert next(r for r, _ in model.iter_predict([good[0]], top_k=1)).predictions["genre"][0]["probability"] > 0


def test_images_the_model_cannot_judge_are_predicted_with_a_warning(run_cli, evaluated_run, tmp_path):
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(tmp_path / "tiny.png")
    Image.fromarray(rng.integers(0, 255, (30, 1000, 3), dtype=np.uint8)).save(tmp_path / "strip.png")
    Image.fromarray(rng.integers(0, 255, (60, 70, 3), dtype=np.uint8)).save(tmp_path / "fine.png")
    out = tmp_path / "p.json"
    result = run_cli("predict", "--model", evaluated_run, tmp_path, "--output", out)
    assert result.code == 0, result.stderr
    warnings = {Path(r["source"]).name: r["warning"] for r in json.loads(out.read_text())}
    assert "only 8x8 pixels" in warnings["tiny.png"] and "keeps 3% of it" in warnings["strip.png"]
    assert warnings["fine.png"] == "" and "warning: " in result.stderr


def test_the_table_keeps_whole_names_and_the_warnings_and_outputs_say_where(run_cli, evaluated_run, tmp_path):
    """Issue 26 item 5: names cut at 41 characters, `ok` beside a warning, p.xlsx holding a text table, silent
    --output and --cam."""
    rng = np.random.default_rng(2)
    names = [f"a-painting-whose-file-name-is-long-{'x' * 30}-{i}.png" for i in range(2)]
    for name in names:
        Image.fromarray(rng.integers(0, 255, (60, 70, 3), dtype=np.uint8)).save(tmp_path / name)
    Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(tmp_path / "tiny.png")
    result = run_cli("predict", "--model", evaluated_run, tmp_path)
    assert result.code == 0, result.stderr
    first_column = "".join(line.split("│")[1].strip() for line in result.stdout.splitlines() if line.count("│") > 2)
    assert all(str(tmp_path / name) in first_column for name in names)  # folded lines join into the whole path
    assert "ok, but" in result.stdout
    refused = run_cli("predict", "--model", evaluated_run, tmp_path / "tiny.png", "--output", tmp_path / "p.xlsx")
    assert refused.code == 2 and "not .xlsx" in refused.stderr and not (tmp_path / "p.xlsx").exists()
    written = run_cli("predict", "--model", evaluated_run, tmp_path / "tiny.png", "--output", tmp_path / "p.txt",
                      "--cam", tmp_path / "cams")
    assert written.code == 0, written.stderr
    assert f"to {tmp_path / 'p.txt'}" in written.stderr and f"heat maps in {tmp_path / 'cams'}" in written.stderr


def test_a_model_trained_on_generated_paintings_says_so_for_other_images(run_cli, evaluated_run, tmp_path):
    from artextract.engine.checkpoint import read_model_metadata
    from artextract.layout import RunFolder

    assert read_model_metadata(RunFolder(evaluated_run).model).synthetic  # trained on `artextract synth` output
    elsewhere = tmp_path / "photo.jpg"
    Image.new("RGB", (64, 48), (90, 140, 200)).save(elsewhere)
    result = run_cli("predict", "--model", evaluated_run, elsewhere)
    assert result.code == 0
    assert "trained on generated stand-in paintings (`artextract synth`)" in result.stderr
    assert "the 1 image(s) from elsewhere" in result.stderr

    data = json.loads((evaluated_run / "run.json").read_text())["data"]
    synth_root = Path(json.loads((Path(data) / "prepare_report.json").read_text())["inputs"]["images"]).parent
    generated = next((synth_root / "wikiart").rglob("*.jpg"))
    quiet = run_cli("predict", "--model", evaluated_run, generated)
    assert quiet.code == 0 and "stand-in" not in quiet.stderr, quiet.stderr


def test_open_set_thresholds_are_fitted_on_the_selection_set_and_flag_unknown_paintings(evaluated_run, tmp_path):
    from artextract.analysis.probabilities import softmax
    from artextract.engine.checkpoint import read_model_metadata
    from artextract.report.terminal import predictions_table

    info = read_model_metadata(evaluated_run / "model.safetensors")
    assert set(info.unknown_below) == set(info.classes) and all(0 < t <= 1 for t in info.unknown_below.values())
    # The threshold accepts 95 % of the selection set's paintings (all of known classes).
    frame = pd.read_parquet(evaluated_run / "eval" / "predictions.parquet")
    select = frame[(frame["split"] == "select") & (frame["label_genre"] >= 0)]
    top = softmax(np.stack(select["logits_genre"].to_numpy()), info.temperature["genre"]).max(axis=1)
    assert (top >= info.unknown_below["genre"]).mean() >= 0.95

    model = artextract.load_model(evaluated_run, "cpu")
    picture = tmp_path / "p.png"
    Image.new("RGB", (64, 64), (10, 200, 90)).save(picture)
    import dataclasses

    model.info = dataclasses.replace(model.info, unknown_below=dict.fromkeys(model.tasks, 1.0))  # all unknown
    (flagged,) = model.predict(picture)
    assert flagged["unknown"] == model.tasks
    table = predictions_table([{**flagged, "source": "p.png"}])
    assert "ok, but unknown artist, style, genre? (under the" in table
    assert model.predict(picture, as_frame=True)["unknown"].all()
    model.info = dataclasses.replace(model.info, unknown_below=dict.fromkeys(model.tasks, 0.0))
    assert model.predict(picture)[0]["unknown"] == []


def test_heat_maps_explain_the_class_asked_for(evaluated_run, prepared_small):
    from artextract.data.cache_files import open_cache

    predictor = artextract.load_model(evaluated_run / "model.safetensors", device="cpu")
    squares = np.array(open_cache(prepared_small / "cache")[:2])
    tops = predictor.top_classes(squares)
    assert set(tops) == set(predictor.tasks) and all(len(t) == 2 for t in tops.values())
    top, default = predictor.heatmaps(squares, "artist")
    assert (top == tops["artist"]).all()
    other = (tops["artist"] + 1) % len(predictor.classes["artist"])
    chosen, heat = predictor.heatmaps(squares, "artist", other)
    assert (chosen == other).all() and heat.shape == default.shape and not np.allclose(heat, default)
