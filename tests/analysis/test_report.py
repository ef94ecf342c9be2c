"""The report as a researcher reads it: what was evaluated, per-class tables with n/a where a figure is
undefined, the most confused pairs with their paintings, outlier cards with thumbnails, and a page that fits an
800 px window in a real browser."""

import json
import re
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import precision_recall_fscore_support

from artextract.analysis.metrics import confused_pairs, per_class_report
from artextract.report.summary import best_epoch

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def evaluated(evaluated_run):
    return evaluated_run / "eval"


def test_per_class_figures_are_scikit_learns_and_undefined_ones_are_none():
    y_true = np.array([0, 0, 1, 1, 1, 3, 3])  # class 2 has no image; class 3 is never predicted
    y_pred = np.array([0, 1, 1, 1, 0, 1, 0])
    rows = per_class_report(y_true, y_pred, ["a", "b", "c", "d"])
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=range(4), average=None, zero_division=0)
    for i in (0, 1):
        assert (rows[i]["precision"], rows[i]["recall"], rows[i]["f1"]) == pytest.approx((p[i], r[i], f[i]))
    assert rows[2] == {"class": "c", "precision": None, "recall": None, "f1": None, "support": 0, "predicted": 0}
    assert rows[3]["precision"] is None and rows[3]["recall"] == 0.0 and rows[3]["f1"] == 0.0
    assert [row["support"] for row in rows] == s.tolist() and [row["predicted"] for row in rows] == [3, 4, 0, 0]


def test_confused_pairs_are_the_largest_off_diagonal_cells():
    matrix = np.array([[5, 3, 0], [1, 4, 0], [6, 0, 2]])
    pairs = confused_pairs(matrix, ["a", "b", "c"], count=5)
    assert [(p["true_name"], p["predicted_name"], p["count"]) for p in pairs] == [("c", "a", 6), ("a", "b", 3),
                                                                                   ("b", "a", 1)]
    assert pairs[0]["share_of_true"] == pytest.approx(6 / 8)
    assert confused_pairs(np.eye(3, dtype=int), ["a", "b", "c"]) == []


def test_best_epoch_is_the_first_highest_score_and_never_nan():
    history = pd.DataFrame({"epoch": [1, 2, 3, 4], "score": [float("nan"), 0.5, 0.7, 0.7]})
    assert best_epoch(history) == 3
    assert best_epoch(pd.DataFrame({"epoch": [1], "score": [float("nan")]})) is None


def _cells(html: str, what: str) -> str:
    found = re.search(rf"<th class=\"name\">{what}</th><td>(.*?)</td>", html)
    assert found, what
    return found.group(1)


def test_report_header_says_what_was_evaluated(evaluated_run, evaluated):
    from artextract.config_files import load_config
    from artextract.engine.checkpoint import load_model_file

    html = (evaluated / "report.html").read_text()
    model, _ = load_model_file(evaluated_run / "model.safetensors")
    outside = sum(p.numel() for name, p in model.named_parameters() if not name.startswith("backbone."))
    total = sum(p.numel() for p in model.parameters())
    assert _cells(html, "parameters") == f"{total:,} ({outside:,} outside the backbone)"
    config = load_config(evaluated_run / "config.yaml")
    assert _cells(html, "backbone").startswith(f"{config.model.backbone}, random initialisation, no pretrained")
    assert "attention pooling" in _cells(html, "reader")
    history = pd.read_csv(evaluated_run / "metrics.csv")
    kept = int(history["epoch"][history["score"].idxmax()])
    assert _cells(html, "training") == f"{len(history)} of 10 epochs; model kept from epoch {kept}"
    assert _cells(html, "image size") == f"{config.train.image_size} px"
    trained_on = json.loads((evaluated_run / "run.json").read_text())["data"]
    assert _cells(html, "DATA folder") == trained_on
    assert _cells(html, "protocol").startswith("Leak-free: an image listed")  # the name said once
    assert re.search(r"artextract \S+, commit", _cells(html, "evaluated by"))
    for anchor in ("evaluated", "data", "metrics", "noise", "training", "per-class-1", "confused-1", "figures-1",
                   "outliers-1"):
        assert f'id="{anchor}"' in html and f'href="#{anchor}"' in html, anchor


def test_the_headline_comes_first_and_the_outlier_count_says_it_is_a_quota(evaluated):
    """Issue 26: the metrics table sat 1,230 px down at 800 px; "12 flagged" read like a finding."""
    html = (evaluated / "report.html").read_text()
    assert html.index('<h2 id="metrics">') < html.index('<h2 id="evaluated">') < html.index('<h2 id="data">')
    assert "most suspicious of" in html and "A quota, not a test" in html


def test_report_tables_figures_and_cards(evaluated):
    html = (evaluated / "report.html").read_text()
    metrics = json.loads((evaluated / "metrics.json").read_text())
    for task, m in metrics["tasks"].items():
        for row in m["per_class"]:
            f1 = "n/a" if row["f1"] is None else f"{row['f1']:.3f}"
            assert re.search(rf">{re.escape(row['class'])}</td><td>{row['support']}</td>\s*<td>{row['predicted']}"
                             rf"</td><td>[^<]*</td><td>[^<]*</td><td>{f1}</td>", html), (task, row)
        for pair in m["most_confused"]:
            assert f"<b>{pair['true_name']}</b> predicted as <b>{pair['predicted_name']}</b>: {pair['count']}" in html
            assert pair["examples"] and all((evaluated / "explain" / f"{e['cache_index']}.jpg").is_file()
                                            for e in pair["examples"])
    # Outlier cards: painting, heat maps and the nearest paintings of the resembled class, each captioned.
    assert html.count("<figcaption>painting</figcaption>") >= 12
    assert html.count('alt="nearest: ') >= 12
    assert html.count("<figcaption>Grad-CAM for ") >= 12
    assert "data:image/jpeg;base64," in html and 'id="zoom"' in html


def test_classes_without_evaluation_images_are_not_drawn_as_zero(evaluated_run, evaluated, tmp_path):
    """Drop every eval image of one artist: its row reads n/a, the report says so, the matrix omits its row."""
    out = tmp_path / "eval"
    shutil.copytree(evaluated, out)
    predictions = pd.read_parquet(out / "predictions.parquet")
    gone = int(predictions.loc[predictions["split"] == "eval", "label_artist"].max())
    keep = ~((predictions["split"] == "eval") & (predictions["label_artist"] == gone))
    predictions[keep].to_parquet(out / "predictions.parquet", index=False)
    from typer.testing import CliRunner

    from artextract.cli import app

    result = CliRunner().invoke(app, ["evaluate", "--run", str(evaluated_run), "--out", str(out),
                                      "--from-predictions"])
    assert result.exit_code == 0, result.output
    row = json.loads((out / "metrics.json").read_text())["tasks"]["artist"]["per_class"][gone]
    assert row["support"] == 0 and row["f1"] is None and row["recall"] is None
    html = (out / "report.html").read_text()
    assert f'<tr class="absent"><td class="name">{row["class"]}</td><td>0</td>' in html
    assert "classes have no evaluation image" in html


def _chromium(page, width, profile, *extra):
    return [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={profile}", "--virtual-time-budget=5000", f"--window-size={width},2000", *extra,
            page.as_uri()]


@pytest.mark.skipif(CHROMIUM is None, reason="Debian package chromium not installed (.ci/run installs it)")
@pytest.mark.parametrize("width", [800, 1400])
def test_report_fits_narrow_and_wide_windows_in_headless_chromium(evaluated, tmp_path, width):
    page = evaluated / "report.html"
    dom = subprocess.run(_chromium(page, width, tmp_path / "profile", "--dump-dom"), capture_output=True,
                         text=True, timeout=120, check=False).stdout
    found = re.search(r'data-images="(\d+)" data-images-ok="(\d+)" data-window-width="(\d+)" '
                      r'data-page-width="(\d+)" data-wide-tables="(\d+)"', dom)
    assert found, dom[:500]
    images, ok, window, page_width, wide = map(int, found.groups())
    assert images >= 30 and ok == images
    assert page_width <= window and wide == 0, (window, page_width, wide)
    shot = tmp_path / "report.png"
    subprocess.run(_chromium(page, width, tmp_path / "profile2", f"--screenshot={shot}"), capture_output=True,
                   timeout=120, check=False)
    assert shot.is_file() and shot.stat().st_size > 20_000


def test_outlier_validation_shows_intervals_both_baselines_and_when_too_few_were_flipped(evaluated):
    """Issue 26: 3-4 flipped labels per task were shown without intervals, and the terminal omitted the random
    baseline that beat the headline in one mode."""
    from artextract.report.terminal import metrics_table, noise_headline

    metrics = json.loads((evaluated / "metrics.json").read_text())
    detection = metrics["tasks"]["artist"]["noise_detection"]
    for result in detection["modes"].values():
        for score in result["scores"].values():
            low, high = score["auroc_ci"]
            assert 0 <= low <= high <= 1
    line = noise_headline(detection)
    assert "random" in line and "prior" in line and "[" in line
    few = any(s["k"] < 10 for r in detection["modes"].values() for s in r["scores"].values())
    assert ("too few flipped" in line) == few
    table = metrics_table(metrics)  # the reason is said once, under the table, not per task and mode
    assert table.count("too few to conclude") == (1 if few else 0)
    html = (evaluated / "report.html").read_text()
    assert ("too few to conclude" in html) == few


def _png_width(data: bytes) -> int:
    import io

    from PIL import Image

    return Image.open(io.BytesIO(data)).width


def test_confusion_png_leaves_out_columns_of_classes_never_trained_on_nor_predicted():
    """Issue 26: the sample's 27-column style matrix, with 16 styles that have no training image, was unreadable."""
    from artextract.report.plots import confusion_png

    names = [f"style {i}" for i in range(27)]
    matrix = np.zeros((27, 27), np.int64)
    matrix[:11, :11] = np.eye(11, dtype=np.int64) * 8 + 1
    matrix[0, 20] = 2  # an untrained class that was predicted all the same keeps its column
    trained = [30] * 11 + [0] * 16
    trimmed = confusion_png(matrix, names, "style", True, trained)
    kept = [*range(11), 20]
    alike = confusion_png(matrix[np.ix_(kept, kept)], [names[i] for i in kept], "style", True)
    assert _png_width(trimmed) == _png_width(alike) < _png_width(confusion_png(matrix, names, "style", True))


def test_evaluate_records_the_training_images_of_each_class(evaluated, prepared_small):
    inputs = json.loads((evaluated / "inputs.json").read_text())
    manifest = pd.read_parquet(prepared_small / "manifest.parquet")
    train = manifest[(manifest["split"] == "train") & (manifest["status"] == "ok")]
    for task, counts in inputs["training_images_per_class"].items():
        labels = train[f"label_{task}"]
        assert counts == np.bincount(labels[labels >= 0], minlength=len(counts)).tolist()


def test_another_data_folders_training_images_are_not_taken_for_the_runs(run_cli, evaluated, prepared_small,
                                                                          tmp_path):
    """Evaluated on a copy of its DATA, the run cannot know from it what it was trained on: nothing is recorded,
    and the confusion matrices keep every column."""
    data = tmp_path / "copy"
    shutil.copytree(prepared_small, data)
    result = run_cli("evaluate", "--run", evaluated.parent, "--data", data, "--out", tmp_path / "e")
    assert result.code == 0, result.stderr
    assert json.loads((tmp_path / "e" / "inputs.json").read_text())["training_images_per_class"] is None


@pytest.mark.parametrize(("representation", "reader", "says"), [
    ("map", "gru", "; 1x1 reduction to 128 channels"),
    ("pyramid", "gru", "; each stage's statistics projected to 128 channels"),
    ("pyramid", "none", ""),
    ("map", "none", ""),
])
def test_the_reader_row_names_a_channel_reduction_only_where_the_reader_makes_one(representation, reader, says):
    from artextract.config import ModelConfig
    from artextract.report.summary import reduction_phrase

    model = ModelConfig(representation=representation, reader=reader, reduce_channels=128)
    assert reduction_phrase(model) == says
