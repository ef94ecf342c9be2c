import json
import shutil

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    precision_recall_fscore_support,
    top_k_accuracy_score,
)

from artextract.analysis.calibration import fit_temperature, reliability
from artextract.analysis.outliers import inject_noise
from artextract.analysis.probabilities import softmax


@pytest.fixture(scope="module")
def evaluated(evaluated_run):
    return evaluated_run / "eval"


def _stack(series):
    return np.stack(series.to_numpy())


def test_metrics_equal_scikit_learn(evaluated):
    predictions = pd.read_parquet(evaluated / "predictions.parquet")
    predictions = predictions[predictions["split"] == "eval"]
    metrics = json.loads((evaluated / "metrics.json").read_text())
    classes = json.loads((evaluated / "classes.json").read_text())
    for task, names in classes.items():
        m = metrics["tasks"][task]
        labelled = predictions[f"label_{task}"] >= 0
        y = predictions.loc[labelled, f"label_{task}"].to_numpy()
        logits = _stack(predictions.loc[labelled, f"logits_{task}"])
        pred = logits.argmax(axis=1)
        assert m["images"] == len(y)
        assert m["accuracy"] == pytest.approx(accuracy_score(y, pred))
        expected_top5 = top_k_accuracy_score(y, logits, k=5, labels=range(len(names))) if len(names) > 5 else 1.0
        assert m["top5_accuracy"] == pytest.approx(expected_top5)
        with pytest.warns(UserWarning) if len(set(pred) - set(y)) else _nothing():
            assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, pred))
        for average in ("macro", "weighted"):
            p, r, f, _ = precision_recall_fscore_support(y, pred, average=average, zero_division=0)
            assert (m[f"{average}_precision"], m[f"{average}_recall"], m[f"{average}_f1"]) == pytest.approx((p, r, f))
        assert m["confusion"] == confusion_matrix(y, pred, labels=range(len(names))).tolist()
        for name, (low, high) in m["intervals_95"].items():
            assert low <= m[name] + 1e-9 and m[name] - 1e-9 <= high, name
        saved = pd.read_csv(evaluated / f"confusion_{task}.csv", index_col=0)
        assert saved.to_numpy().tolist() == m["confusion"] and list(saved.columns) == names


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_from_predictions_reproduces_metrics_exactly(evaluated, run_cli):
    before = (evaluated / "metrics.json").read_bytes()
    result = run_cli("evaluate", "--run", evaluated.parent, "--from-predictions", "--inject-noise", "0.1")
    assert result.code == 0, result.stderr
    assert (evaluated / "metrics.json").read_bytes() == before


def test_outliers_find_injected_noise_and_name_what_they_resemble(evaluated):
    metrics = json.loads((evaluated / "metrics.json").read_text())
    outliers = pd.read_csv(evaluated / "outliers.csv")
    for task in ("artist", "style"):
        detection = metrics["tasks"][task]["noise_detection"]
        assert detection["headline"] == "combined" and set(detection["modes"]) == {"uniform", "confusion"}
        scores = detection["modes"]["uniform"]["scores"]
        assert scores["combined"]["auroc"] > 0.75, (task, scores)  # the named headline, not the best of several
        assert {"baseline label_prior", "baseline random"} <= set(scores)
        assert "recall_at_k" not in scores["combined"]
        flagged = outliers[(outliers["task"] == task) & outliers["flagged"]]
        assert len(flagged) >= 1
        assert flagged["resembles_name"].notna().all()
        assert (flagged["resembles"] != flagged["label"]).all()
        # the nearest paintings of the resembled class, whenever the scored set holds one of that class
        present = set(outliers.loc[outliers["task"] == task, "label"])
        has_nearest = flagged["nearest_of_resembled"].fillna("").str.len().gt(0)
        assert has_nearest.any() and (has_nearest == flagged["resembles"].isin(present)).all()
    assert {"score_low_confidence", "score_disagreement", "score_centre_distance", "score_knn_disagreement",
            "score_combined", "notebook_flag", "injected_noise"} <= set(outliers.columns)
    explained = list((evaluated / "explain").glob("*-cam.jpg"))
    assert explained and list((evaluated / "explain").glob("*-attention.jpg"))


def test_report_is_self_contained(evaluated):
    html = (evaluated / "report.html").read_text()
    assert "http://" not in html and "https://" not in html
    assert html.count("data:image/png;base64,") >= 10
    assert "Outliers" in html and "Protocol and data" in html and "injected noise" in html.lower()
    assert "| artist |" in (evaluated / "report.md").read_text()


def test_bad_inputs(run_cli, prepared_small, evaluated, tmp_path):
    empty_run = tmp_path / "run"
    empty_run.mkdir()
    result = run_cli("evaluate", "--run", empty_run, "--data", prepared_small)
    assert result.code == 2 and "no model.safetensors" in result.stderr and not (empty_run / "eval").exists()
    other = tmp_path / "data"
    shutil.copytree(prepared_small, other)
    classes = json.loads((other / "classes.json").read_text())
    classes["style"][3] = "Art_Nouveau_Modern"
    (other / "classes.json").write_text(json.dumps(classes))
    result = run_cli("evaluate", "--run", evaluated.parent, "--data", other, "--out", tmp_path / "e")
    assert result.code == 2
    assert "style: class 3 is 'Art_Nouveau' in the model but 'Art_Nouveau_Modern'" in result.stderr
    result = run_cli("evaluate", "--run", evaluated.parent, "--split", "nonsense")
    assert result.code == 2
    smaller = tmp_path / "smaller"
    shutil.copytree(prepared_small, smaller)
    layout = json.loads((smaller / "cache" / "layout.json").read_text())
    (smaller / "cache" / "layout.json").write_text(json.dumps({**layout, "image_size": 16}))
    result = run_cli("evaluate", "--run", evaluated.parent, "--data", smaller, "--out", tmp_path / "e2")
    assert result.code == 2 and "caches 16 px squares but the model was trained on 32 px" in result.stderr
    assert not (tmp_path / "e2").exists()


def test_temperature_scaling_recovers_a_known_temperature():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, size=(4000, 6))
    probabilities = softmax(logits, temperature=2.0)
    labels = np.array([rng.choice(6, p=p) for p in probabilities])
    assert fit_temperature(logits, labels) == pytest.approx(2.0, rel=0.1)
    assert reliability(labels, probabilities)["ece"] < 0.03
    assert reliability(labels, softmax(logits))["ece"] > 0.1


def test_confusion_noise_flips_to_the_most_confused_class():
    from artextract.analysis.outliers import most_confused

    select_labels = np.array([0, 0, 0, 1, 1, 2, 2, 2])
    select_predicted = np.array([0, 2, 2, 0, 1, 2, 1, 2])
    targets = most_confused(select_labels, select_predicted, 4)
    assert list(targets[:3]) == [2, 0, 1]  # 0 is taken for 2 twice, 1 for 0, 2 for 1
    assert targets[3] != 3  # never confused on the selection set: still another class
    labels = np.array([0, 1, 2, -1] * 25)
    noisy, flipped = inject_noise(labels, 0.2, 4, seed=1, confused_with=targets)
    assert flipped.sum() == 15
    assert (noisy[flipped] == targets[labels[flipped]]).all() and (noisy[~flipped] == labels[~flipped]).all()


def test_noise_injection_flips_exactly_the_fraction():
    labels = np.array([0, 1, 2, -1] * 25)
    noisy, flipped = inject_noise(labels, 0.2, 3, seed=1)
    assert flipped.sum() == 15 and (noisy[flipped] != labels[flipped]).all()
    assert (noisy[~flipped] == labels[~flipped]).all() and (noisy[labels < 0] == -1).all()


def test_a_data_folder_without_val_images_is_evaluated_on_its_selection_split(run_cli, prepared_small, evaluated,
                                                                               tmp_path):
    """Like the real train-only sample: the official val images are absent, so the selection split is scored,
    and the output says so."""
    data = tmp_path / "train-only"
    shutil.copytree(prepared_small, data)
    manifest = pd.read_parquet(data / "manifest.parquet")
    manifest.loc[manifest["split"] == "eval", "status"] = "skipped"
    manifest.to_parquet(data / "manifest.parquet", index=False)
    result = run_cli("evaluate", "--run", evaluated.parent, "--data", data, "--out", tmp_path / "e")
    assert result.code == 0, result.stderr
    assert "no image of the official val splits" in result.stderr and "select split" in result.stdout
    assert f"next: artextract predict --model {evaluated.parent}" in result.stdout
    metrics = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert metrics["split"] == "select" and metrics["images"] == int((manifest["split"] == "select").sum())
    again = run_cli("evaluate", "--run", evaluated.parent, "--data", data, "--out", tmp_path / "e",
                    "--from-predictions")
    assert again.code == 0 and json.loads((tmp_path / "e" / "metrics.json").read_text())["split"] == "select"
    # Its report cannot be mistaken for a held-out one (issue 26): title, a warning first, the scored split named,
    # and the calibration after T marked as fitted on the same images.
    html = (tmp_path / "e" / "report.html").read_text()
    assert "on the select split</h1>" in html and "Selection split, not a held-out score" in html
    assert html.index("Selection split, not a held-out score") < html.index('id="metrics"')
    assert "<code>artextract prepare --test-fraction 0.1</code>" in html  # a command, not Markdown backticks
    assert "NOT held out" in html and "fitted on the\nsame images" in html
    assert "Leak-free: Leak-free" not in html and "leak-free: Leak-free" not in html
    markdown = (tmp_path / "e" / "report.md").read_text()
    assert markdown.startswith("# Evaluation on the select split") and "not a held-out score" in markdown
    held_out = (evaluated / "report.html").read_text()
    assert "not a held-out score" not in held_out and "official val images (held out" in held_out


def test_auroc_intervals_are_bootstrap_intervals_of_the_exact_auroc():
    from sklearn.metrics import roc_auc_score

    from artextract.analysis.outliers import _auroc_interval

    rng = np.random.default_rng(3)
    truth = rng.random(400) < 0.1
    perfect = truth + rng.random(400) * 0.5  # every flipped label scores above every other
    assert _auroc_interval(truth, perfect) == [1.0, 1.0]
    noise = np.round(rng.random(2000), 2)  # chance, with ties
    truth = rng.random(2000) < 0.1
    low, high = _auroc_interval(truth, noise)
    assert low < roc_auc_score(truth, noise) < high and low < 0.5 < high and high - low < 0.15
