"""report.html (self-contained: every image embedded as a data URI) and report.md, from the files in RUN/eval."""

from __future__ import annotations

import base64
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pandas as pd

from artextract.analysis.outliers import MIN_FLIPPED_TO_CONCLUDE, nearest_rows
from artextract.core.atomic import write_text
from artextract.core.progress import log
from artextract.core.safe_text import markdown_cell
from artextract.core.version import VERSION
from artextract.layout import DataFolder, EvalFolder, RunFolder
from artextract.report.audit_report import audit_markdown

GALLERY_SIZE = 12
_MIME = {".png": "image/png", ".jpg": "image/jpeg"}


def _data_uri(path: Path) -> str | None:
    if not path.is_file():
        return None
    return f"data:{_MIME[path.suffix]};base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _fmt(value: Any, interval: list[float] | None = None) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "n/a"
    text = f"{value:.3f}"
    return f"{text} [{interval[0]:.3f}, {interval[1]:.3f}]" if interval else text


def _cell(value: Any, interval: list[float] | None = None) -> dict[str, str | None]:
    """A figure and, on its own line in the HTML (so tables fit a narrow window), its 95 % interval."""
    return {"value": _fmt(value), "ci": f"{interval[0]:.3f}-{interval[1]:.3f}" if interval else None}


def _metric_rows(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for task, m in metrics["tasks"].items():
        if not m.get("images"):
            rows.append({"task": task, "images": 0})
            continue
        ci, cal = m["intervals_95"], m.get("calibration", {})
        rows.append({
            "task": task, "images": m["images"], "classes": f"{m['classes_with_images']} of {len(m['per_class'])}",
            "accuracy": _cell(m["accuracy"], ci["accuracy"]), "top5": _cell(m["top5_accuracy"], ci["top5_accuracy"]),
            "balanced": _cell(m["balanced_accuracy"], ci["balanced_accuracy"]),
            "macro_f1": _cell(m["macro_f1"], ci["macro_f1"]), "macro_p": _fmt(m["macro_precision"]),
            "macro_r": _fmt(m["macro_recall"]), "weighted_f1": _fmt(m["weighted_f1"]),
            "ece": _fmt(cal.get("before", {}).get("ece")), "ece_after": _fmt(cal.get("after", {}).get("ece")),
            "temperature": _fmt(cal.get("temperature")), "select_ece": _fmt(cal.get("select_ece_before")),
            "select_ece_after": _fmt(cal.get("select_ece_after")), "worsened": cal.get("worsened_on_select", False),
        })
    return rows


def _noise_rows(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for task, m in metrics["tasks"].items():
        detection = m.get("noise_detection", {})
        for mode, result in detection.get("modes", {}).items():
            for score, r in result["scores"].items():
                rows.append({"task": task, "mode": mode, "score": score, "k": r["k"],
                             "auroc": _cell(r["auroc"], r.get("auroc_ci")), "few": r["k"] < MIN_FLIPPED_TO_CONCLUDE,
                             "precision": _fmt(r["precision_at_k"]), "headline": score == detection["headline"],
                             "baseline": score.startswith("baseline")})
    return rows


def _inline_code(text: str | None) -> Any:
    """Escaped `text` with its `backticked` commands set as <code> (the caveats are shared with report.md and the
    terminal, where backticks read as they should)."""
    from markupsafe import Markup, escape

    if text is None:
        return None
    parts = text.split("`")
    return Markup("").join(Markup("<code>{}</code>").format(part) if i % 2 else escape(part)
                           for i, part in enumerate(parts))


def _picture(path: Path, caption: str) -> dict[str, str] | None:
    uri = _data_uri(path)
    return {"src": uri, "caption": caption} if uri else None


def _pictures(out: EvalFolder, cache_index: int, task: str, explained: str) -> list[dict[str, str]]:
    found = [_picture(out.thumbnail(cache_index), "painting"),
             _picture(out.heatmap(cache_index, task, "cam"), f"Grad-CAM for {explained}"),
             _picture(out.heatmap(cache_index, task, "attention"), "reader attention")]
    return [p for p in found if p]


def _cards(out: EvalFolder, frame: pd.DataFrame, task_frame: pd.DataFrame, task: str,
           outliers: bool) -> list[dict[str, Any]]:
    cards = []
    for _, row in frame.iterrows():
        nearest = [_picture(out.thumbnail(index), path.rsplit("/", 1)[-1])
                   for path, index in nearest_rows(task_frame, row)] if outliers else []
        cards.append({"rank": int(row["rank"]), "label": row["label_name"], "p_label": f"{row['p_label']:.2f}",
                      "predicted": row["predicted_name"], "p_predicted": f"{row['p_predicted']:.2f}",
                      "resembles": row["resembles_name"], "nearest": [p for p in nearest if p],
                      "path": row["path"], "injected": bool(row.get("injected_noise", False)),
                      "pictures": _pictures(out, int(row["cache_index"]), task,
                                            row["resembles_name"] if outliers else row["predicted_name"])})
    return cards


def _per_class_rows(task_metrics: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"name": r["class"], "support": r["support"], "predicted": r.get("predicted", "n/a"),
             "precision": _fmt(r["precision"]), "recall": _fmt(r["recall"]), "f1": _fmt(r["f1"]),
             "absent": r["support"] == 0} for r in task_metrics["per_class"]]


def _confused(out: EvalFolder, task_metrics: dict[str, Any]) -> list[dict[str, Any]]:
    return [{**pair, "share": f"{pair['share_of_true']:.0%}",
             "examples": [p for p in (_picture(out.thumbnail(e["cache_index"]), e["path"].rsplit("/", 1)[-1])
                                      for e in pair.get("examples", [])) if p]}
            for pair in task_metrics.get("most_confused", [])]


def _data_summary(data: Path | None) -> tuple[dict[str, Any], str]:
    report_path = DataFolder(data).report_json if data else None
    if report_path is None or not report_path.is_file():
        return {}, ""
    try:
        report = json.loads(report_path.read_text(encoding="utf-8"))
        counts = {task: {**c, "classes": report["classes"][task]} for task, c in report["counts"].items()}
        notes = (f"{report['images']['in_manifest']:,} images; {report['leakage']['images']} in one task's train "
                 f"and another's val ({report['leakage']['action']}); {len(report['duplicates']['conflicting'])} "
                 f"conflicting duplicates excluded; {len(report['skipped_images'])} images and "
                 f"{len(report['unmatched_rows'])} CSV rows skipped.")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        # The data summary is one paragraph of the report: a damaged prepare report must not cost the rest.
        log.warning("report: %s is unreadable (%s: %s); the report leaves out its data summary", report_path,
                    type(err).__name__, err)
        return {}, ""
    return counts, notes


def _task_sections(out: EvalFolder, metrics: dict[str, Any], outliers: pd.DataFrame) -> list[dict[str, Any]]:
    tasks = []
    for task, task_metrics in metrics["tasks"].items():
        frame = outliers[outliers["task"] == task] if len(outliers) else outliers
        if frame.empty or not task_metrics.get("images"):
            continue
        correct = frame[(frame["predicted"] == frame["label"])]
        correct = correct[[out.heatmap(int(i), task, "cam").is_file() for i in correct["cache_index"]]]
        absent = [r["class"] for r in task_metrics["per_class"] if r["support"] == 0]
        tasks.append({
            "name": task, "scored": len(frame), "flagged": int(frame["flagged"].sum()), "absent": absent,
            "per_class": _per_class_rows(task_metrics), "confused": _confused(out, task_metrics),
            "confusion": _data_uri(out.confusion(task, "", "png")),
            "confusion_normalised": _data_uri(out.confusion(task, "_normalised", "png")),
            "f1": _data_uri(out.figure("f1", task)), "reliability": _data_uri(out.figure("reliability", task)),
            "cards": _cards(out, frame[frame["flagged"]].head(GALLERY_SIZE), frame, task, outliers=True),
            "correct_cards": _cards(out, correct.head(6), frame, task, outliers=False),
        })
    return tasks


def write_report(out: EvalFolder, run: RunFolder | None, data: Path | None, metrics: dict[str, Any],
                 outliers: pd.DataFrame, audit: dict[str, Any] | None = None) -> Path:
    """report.html and report.md; `audit`: the section of a label audit of the run's DATA (report/audit_report)."""
    from jinja2 import Environment, PackageLoader

    from artextract.report import plots
    from artextract.report.summary import best_epoch, generated_note, header_rows, split_caveat

    curves = None
    if run is not None and run.metrics.is_file():
        history = pd.read_csv(run.metrics)
        if len(history):
            png = plots.training_curves_png(history, best_epoch(history))
            curves = "data:image/png;base64," + base64.b64encode(png).decode()
    data_counts, data_notes = _data_summary(data)
    stand_ins = generated_note(data)  # synth's generated paintings: said at the top of both reports
    # Escape everything: class names and paths come from CSVs and archives (a template named *.j2 is not
    # escaped by select_autoescape).
    env = Environment(loader=PackageLoader("artextract.report", "templates"), autoescape=True)
    html = env.get_template("report.html.j2").render(
        run_name=run.root.name if run else out.root.name, split=metrics["split"], images=metrics["images"],
        generated=dt.datetime.now().strftime("%Y-%m-%d %H:%M"), version=VERSION,
        header=header_rows(out, run, data, metrics["split"]), caveat=_inline_code(split_caveat(metrics["split"])),
        data_counts=data_counts, data_notes=data_notes,
        metric_rows=_metric_rows(metrics), noise_rows=_noise_rows(metrics), curves=curves,
        tasks=_task_sections(out, metrics, outliers), skipped=metrics.get("inputs", {}).get("skipped_by_prepare", 0),
        audit=audit, stand_ins=stand_ins)
    write_text(out.report_html, html)
    write_text(out.report_md, render_markdown(metrics, outliers, stand_ins) + "\n".join(audit_markdown(audit)))
    return out.report_html


def _md_cell(cell: dict[str, str | None]) -> str:
    return f"{cell['value']} [{cell['ci']}]" if cell["ci"] else str(cell["value"])


def _open_set_lines(metrics: dict[str, Any]) -> list[str]:
    """The model file's "unknown" flag on the scored split: the share of known-class paintings it flags (meant to
    be about 5 %) and of paintings outside the task's classes (which it is meant to catch)."""
    rows = [(task, m["open_set"]) for task, m in metrics["tasks"].items() if m.get("open_set")]
    if not rows:
        return []
    lines = ["", "## Open-set flag (\"unknown\", as `predict` applies it)", "",
             "| task | target | known classes flagged [95 % CI] | outside the classes flagged [95 % CI] | AUROC |",
             "|---|---|---|---|---|"]
    for task, o in rows:
        cells = [f"{s['rate']:.1%} [{s['interval_95'][0]:.1%}, {s['interval_95'][1]:.1%}] ({s['flagged']} of "
                 f"{s['images']})" if s.get("images") else "n/a" for s in (o["known"], o["outside_classes"])]
        auroc = f"{o['auroc_outside_vs_known']:.3f}" if "auroc_outside_vs_known" in o else "n/a"
        lines.append(f"| {task} | {o['target_rate']:.0%} | {cells[0]} | {cells[1]} | {auroc} |")
    return lines


def render_markdown(metrics: dict[str, Any], outliers: pd.DataFrame, generated: str | None = None) -> str:
    from artextract.report.summary import seen_phrase, split_caveat

    caveat = split_caveat(metrics["split"])
    left_out = (metrics.get("inputs") or {}).get("left_out_seen_by_run")
    lines = [f"# Evaluation on the {metrics['split']} split ({metrics['images']} images)", "",
             *([f"> **{generated}**", ""] if generated else []), *([f"> **{caveat}**", ""] if caveat else []),
             *([f"> Images the run saw: {seen_phrase(left_out)}.", ""] if left_out and any(left_out.values()) else []),
             "| task | images | accuracy [95 % CI] | top-5 | balanced acc. | macro F1 [95 % CI] | weighted F1 | ECE | "
             "ECE after T |", "|---|---|---|---|---|---|---|---|---|"]
    for row in _metric_rows(metrics):
        if row["images"]:
            lines.append(f"| {row['task']} | {row['images']} | {_md_cell(row['accuracy'])} | {_md_cell(row['top5'])} "
                         f"| {_md_cell(row['balanced'])} | {_md_cell(row['macro_f1'])} | {row['weighted_f1']} | "
                         f"{row['ece']} | {row['ece_after']} |")
    noise = _noise_rows(metrics)
    if noise:
        lines += ["", "## Outlier scores against injected label noise", "",
                  "Headline score: **combined** (named before the run). Modes: uniform flips, and flips to the class "
                  "most confused with the true one on the selection set. Baselines never look at the image.", "",
                  "| task | mode | score | flipped (k) | AUROC | precision@k |", "|---|---|---|---|---|---|"]
        lines += [f"| {r['task']} | {r['mode']} | {'**' + r['score'] + '**' if r['headline'] else r['score']} | "
                  f"{r['k']}{' (too few to conclude)' if r['few'] else ''} | {_md_cell(r['auroc'])} | "
                  f"{r['precision']} |" for r in noise]
    lines += _open_set_lines(metrics)
    for task, task_metrics in metrics["tasks"].items():
        if not task_metrics.get("images"):
            continue
        lines += ["", f"## {task}: per class", "", "| class | support | predicted | precision | recall | F1 |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {markdown_cell(r['name'])} | {r['support']} | {r['predicted']} | {r['precision']} | "
                  f"{r['recall']} | {r['f1']} |" for r in _per_class_rows(task_metrics)]
        pairs = task_metrics.get("most_confused", [])
        if pairs:
            lines += ["", f"Most confused ({task}): " + "; ".join(
                f"{markdown_cell(p['true_name'])} -> {markdown_cell(p['predicted_name'])} {p['count']} "
                f"({p['share_of_true']:.0%})" for p in pairs)]
        frame = outliers[(outliers["task"] == task) & outliers["flagged"]] if len(outliers) else outliers
        if frame.empty:
            continue
        lines += ["", f"## {task}: flagged outliers ({len(frame)})", "", f"![confusion](confusion_{task}.png)", "",
                  "| rank | path | label | predicted | resembles | p(label) |", "|---|---|---|---|---|---|"]
        lines += [f"| {r.rank} | {markdown_cell(r.path)} | {markdown_cell(r.label_name)} | "
                  f"{markdown_cell(r.predicted_name)} | {markdown_cell(r.resembles_name)} | "
                  f"{r.p_label:.2f} |" for r in frame.head(GALLERY_SIZE * 2).itertuples()]
    return "\n".join(lines) + "\n"
