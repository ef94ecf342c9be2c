"""The label audit's summary (AUDIT/audit.md), and its section in the explorer and the evaluation report."""

from __future__ import annotations

from typing import Any

DETECTION_FIGURES = (("auroc", "AUROC"), ("average_precision", "average precision"), ("precision", "precision"),
                     ("recall", "recall"))


def _figure(entry: dict[str, Any]) -> str:
    value, (low, high) = entry["value"], entry["ci"]
    return f"{value:.3f} [{low:.3f}, {high:.3f}]"


def detection_rows(detection: dict[str, Any]) -> list[list[str]]:
    """One row per ranking: its name, then each figure with its 95 % interval."""
    return [[name, *(_figure(figures[key]) for key, _ in DETECTION_FIGURES)] for name, figures in detection.items()]


def render_audit_markdown(record: dict[str, Any]) -> str:
    config = record["config"]
    noise = record.get("noise")
    lines = ["# Label audit", "",
             f"DATA: `{record['data']}`. {record['folds']} models ({config['backbone']}, {config['weights']} weights, "
             f"{config['representation']} representation, reader {config['reader']}, {config['epochs']} epochs), each "
             "trained on the other folds of the training paintings; every painting is judged by the model that did "
             f"not train on it. Ranked by `{record['headline']}` (named before validation; see "
             "analysis/label_issues.py). The flagged quota is Confident Learning's estimate of how many labels are "
             "wrong (cleanlab).", ""]
    if noise:
        lines += [f"**Validation run**: {noise['fraction']:.0%} of the training labels of each task were flipped on "
                  f"purpose ({noise['mode']} mode, seed {noise['seed']}) before training.", ""]
    lines += ["| task | paintings | flagged | cleanlab's verdict | duplicate paintings with conflicting labels "
              "(within the flagged) |", "|---|---|---|---|---|"]
    for task, figures in record["per_task"].items():
        groups = figures["conflicting_duplicate_groups"]
        lines.append(f"| {task} | {figures['paintings']:,} | {figures['flagged']:,} | {figures['cleanlab_issues']:,} "
                     f"| {groups['count']} ({groups['within_quota']}) |")
    for task, figures in record["per_task"].items():
        if figures.get("detection"):
            lines += ["", f"## {task}: finding the flipped labels (95 % intervals over paintings)", "",
                      "| ranking | " + " | ".join(label for _, label in DETECTION_FIGURES) + " |",
                      "|---|" + "---|" * len(DETECTION_FIGURES)]
            lines += ["| " + " | ".join(row) + " |" for row in detection_rows(figures["detection"])]
    seconds = record["seconds"]
    lines += ["", f"Training {sum(seconds['training']):.0f} s over {record['folds']} folds; "
              f"{seconds['total']:.0f} s in all.", "",
              "Review: fill `action` (keep, relabel or drop) and, to relabel, `new_label` in label_issues_<task>.csv, "
              "then `artextract prepare ... --overrides label_issues_<task>.csv` and train again.", ""]
    return "\n".join(lines)
