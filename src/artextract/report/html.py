"""report.html (self-contained: every image embedded as a data URI) and report.md, from the files in RUN/eval."""

from __future__ import annotations

import base64
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pandas as pd

from artextract import __version__
from artextract.core.atomic import write_text
from artextract.layout import DataFolder, EvalFolder, RunFolder

GALLERY_SIZE = 12


def _data_uri(path: Path) -> str | None:
    if not path.is_file():
        return None
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _fmt(value: Any, interval: list[float] | None = None) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "n/a"
    text = f"{value:.3f}"
    return f"{text} [{interval[0]:.3f}, {interval[1]:.3f}]" if interval else text


def _metric_rows(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for task, m in metrics["tasks"].items():
        if not m.get("images"):
            rows.append({"task": task, "images": 0})
            continue
        ci, cal = m["intervals_95"], m.get("calibration", {})
        rows.append({
            "task": task, "images": m["images"], "accuracy": _fmt(m["accuracy"], ci["accuracy"]),
            "top5": _fmt(m["top5_accuracy"], ci["top5_accuracy"]),
            "balanced": _fmt(m["balanced_accuracy"], ci["balanced_accuracy"]),
            "macro_f1": _fmt(m["macro_f1"], ci["macro_f1"]), "macro_p": _fmt(m["macro_precision"]),
            "macro_r": _fmt(m["macro_recall"]), "weighted_f1": _fmt(m["weighted_f1"]),
            "ece": _fmt(cal.get("before", {}).get("ece")), "ece_after": _fmt(cal.get("after", {}).get("ece")),
            "temperature": _fmt(cal.get("temperature")),
        })
    return rows


def _noise_rows(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for task, m in metrics["tasks"].items():
        detection = m.get("noise_detection", {})
        for mode, result in detection.get("modes", {}).items():
            for score, r in result["scores"].items():
                rows.append({"task": task, "mode": mode, "score": score, "k": r["k"], "auroc": _fmt(r["auroc"]),
                             "precision": _fmt(r["precision_at_k"]), "headline": score == detection["headline"],
                             "baseline": score.startswith("baseline")})
    return rows


def _pictures(out: EvalFolder, cache_index: int, task: str) -> list[dict[str, str]]:
    pictures = []
    for path, alt in ((out.thumbnail(cache_index), "painting"), (out.heatmap(cache_index, task, "cam"), "Grad-CAM"),
                      (out.heatmap(cache_index, task, "attention"), "attention")):
        uri = _data_uri(path)
        if uri:
            pictures.append({"src": uri, "alt": alt})
    return pictures


def _cards(out: EvalFolder, frame: pd.DataFrame, task: str) -> list[dict[str, Any]]:
    cards = []
    for _, row in frame.iterrows():
        nearest = [p.rsplit("/", 1)[-1] for p in str(row.get("nearest_of_resembled") or "").split(";") if p]
        cards.append({"rank": int(row["rank"]), "label": row["label_name"], "p_label": f"{row['p_label']:.2f}",
                      "predicted": row["predicted_name"], "p_predicted": f"{row['p_predicted']:.2f}",
                      "resembles": row["resembles_name"], "nearest": ", ".join(nearest) or "n/a",
                      "path": row["path"], "injected": bool(row.get("injected_noise", False)),
                      "pictures": _pictures(out, int(row["cache_index"]), task)})
    return cards


def _data_summary(data: Path | None) -> tuple[dict[str, Any] | None, dict[str, Any], str]:
    report_path = DataFolder(data).report_json if data else None
    if report_path is None or not report_path.is_file():
        return None, {}, ""
    report = json.loads(report_path.read_text(encoding="utf-8"))
    counts = {task: {**c, "classes": report["classes"][task]} for task, c in report["counts"].items()}
    notes = (f"{report['images']['in_manifest']:,} images; {report['leakage']['images']} in one task's train and "
             f"another's val ({report['leakage']['action']}); {len(report['duplicates']['conflicting'])} "
             f"conflicting duplicates excluded; {len(report['skipped_images'])} images and "
             f"{len(report['unmatched_rows'])} CSV rows skipped.")
    return report["protocol"], counts, notes


def write_report(out: EvalFolder, run: RunFolder | None, data: Path | None, metrics: dict[str, Any],
                 outliers: pd.DataFrame) -> Path:
    from jinja2 import Environment, PackageLoader

    from artextract.report import plots

    curves = None
    if run is not None and run.metrics.is_file():
        history = pd.read_csv(run.metrics)
        if len(history):
            curves = "data:image/png;base64," + base64.b64encode(plots.training_curves_png(history)).decode()
    protocol, data_counts, data_notes = _data_summary(data)
    tasks = []
    for task in metrics["tasks"]:
        frame = outliers[outliers["task"] == task] if len(outliers) else outliers
        if frame.empty:
            continue
        correct = frame[(frame["predicted"] == frame["label"])]
        correct = correct[[out.heatmap(int(i), task, "cam").is_file() for i in correct["cache_index"]]]
        tasks.append({
            "name": task, "scored": len(frame), "flagged": int(frame["flagged"].sum()),
            "confusion": _data_uri(out.confusion(task, "", "png")),
            "confusion_normalised": _data_uri(out.confusion(task, "_normalised", "png")),
            "f1": _data_uri(out.figure("f1", task)), "reliability": _data_uri(out.figure("reliability", task)),
            "cards": _cards(out, frame[frame["flagged"]].head(GALLERY_SIZE), task),
            "correct_cards": _cards(out, correct.head(6), task),
        })
    # Escape everything: class names and paths come from CSVs and archives (a template named *.j2 is not
    # escaped by select_autoescape).
    env = Environment(loader=PackageLoader("artextract.report", "templates"), autoescape=True)
    html = env.get_template("report.html.j2").render(
        run_name=run.root.name if run else out.root.name, split=metrics["split"], images=metrics["images"],
        generated=dt.datetime.now().strftime("%Y-%m-%d %H:%M"), version=__version__, protocol=protocol,
        data_counts=data_counts, data_notes=data_notes, metric_rows=_metric_rows(metrics),
        noise_rows=_noise_rows(metrics), curves=curves, tasks=tasks,
        skipped=metrics.get("inputs", {}).get("skipped_by_prepare", 0))
    write_text(out.report_html, html)
    write_text(out.report_md, render_markdown(metrics, outliers))
    return out.report_html


def render_markdown(metrics: dict[str, Any], outliers: pd.DataFrame) -> str:
    lines = [f"# Evaluation ({metrics['split']}, {metrics['images']} images)", "",
             "| task | images | accuracy [95 % CI] | top-5 | balanced acc. | macro F1 [95 % CI] | weighted F1 | ECE | "
             "ECE after T |", "|---|---|---|---|---|---|---|---|---|"]
    for row in _metric_rows(metrics):
        if row["images"]:
            lines.append(f"| {row['task']} | {row['images']} | {row['accuracy']} | {row['top5']} | {row['balanced']} "
                         f"| {row['macro_f1']} | {row['weighted_f1']} | {row['ece']} | {row['ece_after']} |")
    noise = _noise_rows(metrics)
    if noise:
        lines += ["", "## Outlier scores against injected label noise", "",
                  "Headline score: **combined** (named before the run). Modes: uniform flips, and flips to the class "
                  "most confused with the true one on the selection set. Baselines never look at the image.", "",
                  "| task | mode | score | flipped (k) | AUROC | precision@k |", "|---|---|---|---|---|---|"]
        lines += [f"| {r['task']} | {r['mode']} | {'**' + r['score'] + '**' if r['headline'] else r['score']} | "
                  f"{r['k']} | {r['auroc']} | {r['precision']} |" for r in noise]
    for task in metrics["tasks"]:
        frame = outliers[(outliers["task"] == task) & outliers["flagged"]] if len(outliers) else outliers
        if frame.empty:
            continue
        lines += ["", f"## {task}: flagged outliers ({len(frame)})", "", f"![confusion](confusion_{task}.png)", "",
                  "| rank | path | label | predicted | resembles | p(label) |", "|---|---|---|---|---|---|"]
        lines += [f"| {r.rank} | {r.path} | {r.label_name} | {r.predicted_name} | {r.resembles_name} | "
                  f"{r.p_label:.2f} |" for r in frame.head(GALLERY_SIZE * 2).itertuples()]
    return "\n".join(lines) + "\n"
