"""The label audit's summary (AUDIT/audit.md), and its section in the explorer and the evaluation report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from artextract.errors import ArtExtractError

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
             f"not train on it. Ranked by `{record['headline']}` (`joint`, the default, was named before the "
             "validation; see docs/label-audit.md). The flagged quota is Confident Learning's estimate of how many "
             "labels are wrong (cleanlab).", ""]
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


TOP_SHOWN = 10


def audit_section(folder: Path, data: Path | None) -> dict[str, Any]:
    """The report's section on a label audit of the run's DATA: the summary per task, the first flagged paintings
    and, for a validation run, how well each ranking found the flips."""
    import pandas as pd

    from artextract.core.records import read_record

    record = read_record(folder / "audit.json", f"run `artextract audit --out {folder}` to finish it",
                         keys=("data", "per_task"))
    if data is not None and Path(str(record["data"])).resolve() != Path(data).resolve():
        raise ArtExtractError(f"--audit {folder} audits {record['data']}, not {data}, the DATA evaluated here: give "
                              "the audit of this run's DATA")
    tasks = []
    for task, figures in record["per_task"].items():
        try:
            frame = pd.read_csv(folder / f"label_issues_{task}.csv", keep_default_na=False, nrows=TOP_SHOWN)
        except (OSError, ValueError) as err:
            raise ArtExtractError(f"{folder}/label_issues_{task}.csv is unreadable ({err}); run the audit again") \
                from None
        groups = figures["conflicting_duplicate_groups"]
        tasks.append({"task": task, "paintings": figures["paintings"], "flagged": figures["flagged"],
                      "cleanlab": figures["cleanlab_issues"], "groups": groups["count"],
                      "groups_flagged": groups["within_quota"],
                      "top": [{"rank": r["rank"], "path": r["path"], "label": r["label_name"],
                               "suggested": r["suggested_name"], "p_label": f"{float(r['p_label']):.2f}"}
                              for r in frame.to_dict("records")],
                      "detection": detection_rows(figures["detection"]) if figures.get("detection") else []})
    return {"folder": str(folder), "headline": record["headline"], "folds": record["folds"],
            "noise": record.get("noise"), "tasks": tasks}


def audit_markdown(section: dict[str, Any] | None) -> list[str]:
    """The section in report.md."""
    if not section:
        return []
    lines = ["", "## Label audit of the training paintings", "",
             f"From `{section['folder']}`: every training painting judged by the model of the {section['folds']} "
             f"that did not train on it, ranked by `{section['headline']}`; the flagged quota is Confident Learning's "
             "estimate of the wrong labels.", "",
             "| task | paintings | flagged | cleanlab's verdict | duplicate paintings with conflicting labels "
             "(flagged) |", "|---|---|---|---|---|"]
    lines += [f"| {t['task']} | {t['paintings']:,} | {t['flagged']:,} | {t['cleanlab']:,} | {t['groups']} "
              f"({t['groups_flagged']}) |" for t in section["tasks"]]
    for t in section["tasks"]:
        lines += ["", f"{t['task']}, first flagged: " + "; ".join(
            f"#{r['rank']} {r['path']} ({r['label']} -> {r['suggested']}, p {r['p_label']})" for r in t["top"])]
    return lines
