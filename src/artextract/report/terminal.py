"""Tables for the terminal."""

from __future__ import annotations

import io
from typing import Any

FEW_MARK = "(too few flipped*)"


def too_few_note(metrics: dict[str, Any]) -> str:
    """One line under the table for the AUROCs marked FEW_MARK (not the warning repeated per task and mode)."""
    from artextract.analysis.outliers import MIN_FLIPPED_TO_CONCLUDE

    counts: set[int] = set()
    for task in metrics["tasks"].values():
        detection = task.get("noise_detection") or {}
        for result in detection.get("modes", {}).values():
            score = result.get("scores", {}).get(detection.get("headline"))
            if score is not None and score["k"] < MIN_FLIPPED_TO_CONCLUDE:
                counts.add(score["k"])
    if not counts:
        return ""
    low, high = min(counts), max(counts)
    flipped = f"{low} to {high}" if low != high else str(low)
    return (f"* only {flipped} labels flipped in a task: too few to conclude whether the outlier score finds them; "
            f"evaluate with a larger --inject-noise\n")


def noise_headline(detection: dict[str, Any] | None) -> str:
    """The pre-named headline score's AUROC per noise mode with its interval, beside both baselines', and a
    warning when too few labels were flipped to conclude."""
    from artextract.analysis.outliers import MIN_FLIPPED_TO_CONCLUDE

    if not detection:
        return ""
    headline = detection["headline"]
    parts = []
    for mode, r in detection["modes"].items():
        if headline not in r["scores"]:
            continue
        main, scores = r["scores"][headline], r["scores"]
        low, high = main.get("auroc_ci", [float("nan")] * 2)
        prior, chance = scores["baseline label_prior"]["auroc"], scores["baseline random"]["auroc"]
        text = f"{mode} {main['auroc']:.2f} [{low:.2f}, {high:.2f}] (prior {prior:.2f}, random {chance:.2f})"
        if main["k"] < MIN_FLIPPED_TO_CONCLUDE:
            text += f" {FEW_MARK}"  # explained once, under the table (too_few_note)
        parts.append(text)
    return f"; {headline} AUROC " + ", ".join(parts) if parts else ""


def metrics_table(metrics: dict[str, Any]) -> str:
    """The headline figures of an evaluation, one row per task."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{metrics['split']} split, {metrics['images']} images")
    for column in ("task", "accuracy [95% CI]", "top-5", "macro F1 [95% CI]", "ECE -> after T", "outliers"):
        table.add_column(column, justify="left" if column == "task" else "right")
    for task, m in metrics["tasks"].items():
        if not m.get("images"):
            continue
        ci, cal = m["intervals_95"], m["calibration"]
        flagged = metrics["outliers"][task]["flagged"]
        outlier_text = f"{flagged} flagged" + noise_headline(m.get("noise_detection"))
        table.add_row(task, f"{m['accuracy']:.3f} [{ci['accuracy'][0]:.3f}, {ci['accuracy'][1]:.3f}]",
                      f"{m['top5_accuracy']:.3f}",
                      f"{m['macro_f1']:.3f} [{ci['macro_f1'][0]:.3f}, {ci['macro_f1'][1]:.3f}]",
                      f"{cal['before']['ece']:.3f} -> {cal['after']['ece']:.3f}", outlier_text)
    console = Console(file=io.StringIO(), width=140)
    console.print(table)
    return console.file.getvalue() + too_few_note(metrics)


def unknown_phrase(tasks: list[str]) -> str:
    """How a prediction under the model's open-set thresholds is shown, in the terminal and the explorer alike."""
    return f"unknown {', '.join(tasks)}? (under the open-set threshold)"


def predictions_table(results: list[dict[str, Any]]) -> str:
    """`predict`'s table: one row per image, the top classes with probabilities per task (or why it failed)."""
    from rich.console import Console
    from rich.table import Table

    from artextract.config import TASKS

    table = Table()
    table.add_column("image", overflow="fold")  # folded, never cut: long names differ at their ends
    seen = {t for r in results for t in r["predictions"]}
    tasks = [t for t in TASKS if t in seen]
    for task in tasks:
        table.add_column(task)
    noted = any(r["status"] != "ok" or r.get("warning") or r.get("unknown") for r in results)
    if noted:
        table.add_column("status", overflow="fold")
    for r in results:
        cells = ["\n".join(f"{e['class']} {e['probability']:.2f}" for e in r["predictions"].get(task, []))
                 for task in tasks]
        notes = ([r["warning"]] if r.get("warning") else []) + ([unknown_phrase(r["unknown"])] if r.get("unknown")
                                                                 else [])
        status = f"ok, but {'; '.join(notes)}" if r["status"] == "ok" and notes else r["status"]
        table.add_row(r["source"], *cells, *([status] if noted else []))
    console = Console(file=io.StringIO(), width=160)
    console.print(table)
    return console.file.getvalue()


def similar_table(results: list[dict[str, Any]]) -> str:
    """`similar`'s table: per query image, its nearest paintings with similarity and their labels."""
    from rich.console import Console
    from rich.table import Table

    table = Table()
    table.add_column("image", overflow="fold")
    table.add_column("#", justify="right")
    table.add_column("similar painting", overflow="fold")
    table.add_column("cosine", justify="right")
    table.add_column("labels (true / predicted)", overflow="fold")
    for r in results:
        if r["status"] != "ok":
            table.add_row(r["source"], "", r["status"], "", "")
        for rank, n in enumerate(r["similar"], start=1):
            labels = "; ".join(f"{task} {n['labels'][task] or 'no label'} / {n['predicted'][task]}"
                               for task in n["labels"])
            table.add_row(r["source"] if rank == 1 else "", str(rank), n["path"], f"{n['similarity']:.3f}", labels)
    console = Console(file=io.StringIO(), width=160)
    console.print(table)
    return console.file.getvalue()
