"""The prepare report: every count, repair and skip, as JSON (complete) and Markdown (for people)."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

import pandas as pd

from artextract.config import PrepareConfig

if TYPE_CHECKING:
    from artextract.data.artgan_files import CsvFolder
    from artextract.data.cache import CacheResult
    from artextract.data.protocol import Collected, ProtocolResult

PROTOCOL_TEXT = {
    "leak-free": ("Leak-free: an image listed in any task's official val split is an evaluation image and is never "
                  "trained on; its labels count only for the tasks whose val split lists it. The selection set for "
                  "early stopping is carved out of the training images (stratified, seeded)."),
    "inner-join": ("INNER-JOIN (for comparison with published work only): only images labelled in every task, with "
                   "the same official split in each, are kept. Figures from this protocol are not comparable with "
                   "leak-free ones."),
}
OFFICIAL_EVAL_TEXT = " Evaluation uses the official val sets with all classes."
TEST_SPLIT_TEXT = (" These CSVs list no val image, so a test split of {share:.0%} of the training images was carved "
                   "out (`prepare --test-fraction`, stratified, seeded) and is scored as the eval split: never trained "
                   "on, never used to choose the epoch or fit the calibration.")
_MD_LIST_LIMIT = 50


def build_report(csvs: CsvFolder, images_location: str, config: PrepareConfig, shard: tuple[int, int],
                 collected: Collected, result: ProtocolResult, manifest: pd.DataFrame, cache: CacheResult,
                 wrapper: str) -> dict[str, Any]:
    tasks = list(csvs.classes)
    unmatched_by_file = Counter(u["file"] for u in collected.unmatched)
    problems_by_file = Counter(p.file for p in csvs.problems)
    rows = {}
    for (task, split), listed in csvs.rows.items():
        name = csvs.files[f"{task}_{split}"]
        rows[name] = {"task": task, "split": split, "rows": len(listed) + problems_by_file[name],
                      "malformed": problems_by_file[name], "unmatched": unmatched_by_file[name]}
    usable = manifest["status"] == "ok"
    counts = {}
    for task in tasks:
        labelled = manifest[f"label_{task}"] >= 0
        counts[task] = {
            "official_train_rows": len(csvs.rows[task, "train"]),
            "official_val_rows": len(csvs.rows[task, "val"]),
            **{f"{split}_labelled": int((labelled & (manifest["split"] == split)).sum())
               for split in ("train", "select", "eval")},
            **{f"{split}_usable": int((labelled & usable & (manifest["split"] == split)).sum())
               for split in ("train", "select", "eval")},
        }
    leak_pairs = Counter(f"{'+'.join(e['train'])} train / {'+'.join(e['val'])} val" for e in result.leakage)
    status_counts = manifest["status"].value_counts().to_dict()
    skipped = manifest[manifest["status"] == "skipped"]
    return {
        "protocol": {"name": config.protocol, "description": PROTOCOL_TEXT[config.protocol] + (
                         TEST_SPLIT_TEXT.format(share=config.test_fraction) if config.test_fraction else
                         OFFICIAL_EVAL_TEXT if config.protocol == "leak-free" else ""),
                     "select_fraction": config.select_fraction, "test_fraction": config.test_fraction,
                     "seed": config.seed},
        "inputs": {"images": images_location, "wrapper_folder": wrapper.rstrip("/"), "files": csvs.files,
                   "missing_tasks": csvs.missing},
        "classes": {task: len(names) for task, names in csvs.classes.items()},
        "rows": rows,
        "images": {"union": len(collected.images), "in_manifest": len(manifest),
                   "usable": int(status_counts.get("ok", 0)), "skipped": int(status_counts.get("skipped", 0)),
                   "pending": int(status_counts.get("pending", 0)),
                   "duplicate_copies": int(status_counts.get("duplicate", 0)),
                   "splits": {s: int((manifest["split"] == s).sum()) for s in ("train", "select", "eval")}},
        "counts": counts,
        "repairs": {"counts": dict(Counter(r["repair"] for r in collected.repairs)), "rows": collected.repairs},
        "duplicates": {"same_label": collected.duplicates, "conflicting": collected.conflicts},
        "leakage": {"images": len(result.leakage), "by_tasks": dict(leak_pairs),
                    "action": ("kept for evaluation only; train labels of these images unused"
                               if config.protocol == "leak-free" else "dropped unless every task agrees"),
                    "list": result.leakage},
        "dropped": {"counts": dict(Counter(d["reason"] for d in result.dropped)), "list": result.dropped},
        "malformed_rows": [{"file": p.file, "line": p.line, "reason": p.reason, "text": p.text}
                           for p in csvs.problems],
        "unmatched_rows": collected.unmatched,
        "skipped_images": [{"path": p, "reason": r} for p, r in zip(skipped["path"], skipped["skip_reason"],
                                                                     strict=True)],
        "cache": {"image_size": cache.layout.image_size, "format": cache.layout.format,
                  "geometry": "short side resized, then centre-cropped to a square",
                  "max_pixels": config.max_pixels, "shard": f"{shard[0]}/{shard[1]}",
                  "decoded_this_run": cache.built_now, "already_cached": cache.reused,
                  "complete": int(status_counts.get("pending", 0)) == 0},
    }


DUPLICATES_TEXT = ("Two images are one painting when their files are byte-identical, or when both their perceptual "
                   "hashes (phash and dhash of the cached square, greyscale) differ in at most {bits} of 64 bits. "
                   "One copy of each painting is kept (the val copy when there is one, else the first by path); the "
                   "others are left out of training and scoring. Where the kept copies' labels of a task disagree, "
                   "the painting is not trained on nor scored for that task until an override settles it.")


NEAR_SKIPPED_TEXT = (" HERE THE NEAR SEARCH WAS GIVEN UP: the perceptual hashes paired far too many images (blank or "
                     "placeholder images?), so only byte-identical and identically hashed copies were grouped.")


def duplicates_report(entries: list[dict[str, Any]], classes: dict[str, list[str]],
                      near_skipped: bool = False) -> dict[str, Any]:
    """The report's section on paintings found under several names (data/duplicates.py)."""
    from artextract.data.duplicates import NEAR_BITS

    def named(copy: dict[str, Any]) -> dict[str, Any]:
        return {"path": copy["path"], "official": copy["official"],
                **{task: classes[task][label] for task, label in copy["labels"].items() if label >= 0}}

    return {
        "rule": DUPLICATES_TEXT.format(bits=NEAR_BITS) + (NEAR_SKIPPED_TEXT if near_skipped else ""),
        "groups": len(entries), "exact": sum(e["kind"] == "exact" for e in entries),
        "near": sum(e["kind"] == "near" for e in entries),
        "copies_left_out": sum(len(e["copies"]) - 1 for e in entries),
        "conflicting": [{"group": e["group"], "kind": e["kind"], "tasks": e["conflicting_tasks"],
                         "copies": [named(c) for c in e["copies"]]} for e in entries if e["conflicting_tasks"]],
        "val_and_train": [{"group": e["group"], "kept": e["kept"], "left_out": e["left_out_for_evaluation"],
                           "other_labels_in_train": e["other_labels_in_train"]}
                          for e in entries if e["left_out_for_evaluation"]],
    }


def duplicates_table(entries: list[dict[str, Any]], classes: dict[str, list[str]]) -> pd.DataFrame:
    """DATA/duplicates.csv: one row per copy, with its group, whether it is the copy kept and its labels."""
    rows = [{"group": e["group"], "kind": e["kind"], "path": c["path"], "kept": c["path"] == e["kept"],
             "official": c["official"],
             **{f"{task}": classes[task][label] if label >= 0 else "" for task, label in c["labels"].items()},
             "conflicting_tasks": " ".join(e["conflicting_tasks"])}
            for e in entries for c in e["copies"]]
    columns = ["group", "kind", "path", "kept", "official", *classes, "conflicting_tasks"]
    return pd.DataFrame(rows, columns=columns)


def overrides_report(files: list[dict[str, str]], changes: list[dict[str, Any]],
                     classes: dict[str, list[str]]) -> dict[str, Any]:
    """What a reviewed label audit changed: from which files, how many labels per task and action."""
    def name(task: str, label: int) -> str:
        return classes[task][label] if label >= 0 else "(none)"

    counts: dict[str, Counter[str]] = {}
    for change in changes:
        counts.setdefault(change["task"], Counter())[change["action"]] += 1
    return {"files": files, "counts": {task: dict(c) for task, c in counts.items()},
            "changed": sum(c["before"] != c["after"] for c in changes),
            "list": [{"path": c["path"], "task": c["task"], "action": c["action"], "from": name(c["task"], c["before"]),
                      "to": name(c["task"], c["after"]), "row": c["row"]} for c in changes]}


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _listing(title: str, items: list[dict[str, Any]], keys: list[str]) -> str:
    if not items:
        return f"\n### {title}: none\n"
    shown = items[:_MD_LIST_LIMIT]
    more = f"\n{len(items) - len(shown)} more in prepare_report.json.\n" if len(items) > len(shown) else ""
    return f"\n### {title}: {len(items)}\n\n" + _table(keys, [[item.get(k, "") for k in keys] for item in shown]) + more


def _unmatched_listing(rows: list[dict[str, Any]]) -> str:
    """The rows matching no file; the `closest` column only when some row has a close name (a sample without
    those images has none, and 136,149 rows of `None` say nothing)."""
    if any(row.get("closest") for row in rows):
        return _listing("Rows matching no file", rows, ["file", "line", "path", "closest"])
    note = ("\nNo file with a close name exists for any of them: the images are not in --images (a sample, or an "
            "incomplete download), not misspelt.\n" if rows else "")
    return _listing("Rows matching no file", rows, ["file", "line", "path"]) + note


def render_markdown(report: dict[str, Any]) -> str:
    images, protocol = report["images"], report["protocol"]
    parts = [
        "# Prepare report\n\n",
        f"**Protocol: {protocol['name']}.** {protocol['description']}\n\n",
        f"Images: {report['inputs']['images']}"
        + (f" (wrapper folder `{report['inputs']['wrapper_folder']}/` dropped)" if report['inputs']['wrapper_folder']
           else "") + "\n",
        f"\n{images['union']:,} images matched the CSV rows; {images['in_manifest']:,} are in the manifest "
        f"({images['splits']['train']:,} train, {images['splits']['select']:,} select, {images['splits']['eval']:,} "
        f"eval); {images['usable']:,} usable, {images['skipped']:,} skipped, {images['pending']:,} not cached yet.\n",
        "\n## Split files\n\n",
        _table(["file", "task", "split", "rows", "malformed", "unmatched"],
               [[name, r["task"], r["split"], r["rows"], r["malformed"], r["unmatched"]]
                for name, r in report["rows"].items()]),
        "\n## Images per task and split (labelled / usable)\n\n",
        _table(["task", "classes", "official train rows", "official val rows", "train", "select", "eval"],
               [[task, report["classes"][task], c["official_train_rows"], c["official_val_rows"],
                 *(f"{c[f'{s}_labelled']} / {c[f'{s}_usable']}" for s in ("train", "select", "eval"))]
                for task, c in report["counts"].items()]),
        "\n## Repairs and exclusions\n\n",
        _table(["what", "count"], [
            *[[f"path matched after {how} repair", n] for how, n in sorted(report["repairs"]["counts"].items())],
            ["duplicate rows with the same label (merged)", len(report["duplicates"]["same_label"])],
            ["conflicting duplicates (label excluded)", len(report["duplicates"]["conflicting"])],
            [f"images in one task's train and another's val ({report['leakage']['action']})",
             report["leakage"]["images"]],
            *[[f"dropped: {reason}", n] for reason, n in sorted(report["dropped"]["counts"].items())],
            ["malformed rows skipped", len(report["malformed_rows"])],
            ["rows matching no file", len(report["unmatched_rows"])],
            ["images skipped (unreadable, over the pixel limit, ...)", len(report["skipped_images"])],
            ["files refused unread (names or links pointing outside --images)", len(report.get("refused_files", []))],
        ]),
    ]
    if report["leakage"]["by_tasks"]:
        parts.append("\nLeakage by task pair: " + "; ".join(f"{k}: {v}" for k, v in
                                                           sorted(report["leakage"]["by_tasks"].items())) + "\n")
    parts.append(_duplicates_markdown(report.get("content_duplicates")))
    parts.append(_overrides_markdown(report.get("overrides")))
    parts += [
        _listing("Conflicting duplicates", report["duplicates"]["conflicting"], ["path", "task", "labels", "rows"]),
        _listing("Malformed rows", report["malformed_rows"], ["file", "line", "reason", "text"]),
        _unmatched_listing(report["unmatched_rows"]),
        _listing("Skipped images", report["skipped_images"], ["path", "reason"]),
        _listing("Files refused unread", report.get("refused_files", []), ["path", "reason"]),
        _listing("Repaired paths", report["repairs"]["rows"], ["file", "line", "csv_path", "path", "repair"]),
    ]
    cache = report["cache"]
    parts.append(f"\n## Cache\n\n{cache['image_size']} x {cache['image_size']} pixels ({cache['geometry']}), "
                 f"{cache['format']}; pixel limit {cache['max_pixels']:,}; shard {cache['shard']}; "
                 f"{cache['decoded_this_run']:,} decoded this run, {cache['already_cached']:,} already cached; "
                 f"{'complete' if cache['complete'] else 'INCOMPLETE: run the remaining shards'}.\n")
    return "".join(parts)


def _duplicates_markdown(section: dict[str, Any] | None) -> str:
    if not section:
        return ""
    text = (f"\n## Duplicate paintings\n\n{section['rule']}\n\n{section['groups']:,} paintings found under several "
            f"names ({section['exact']:,} byte-identical, {section['near']:,} near copies); "
            f"{section['copies_left_out']:,} copies left out. Every copy is listed in duplicates.csv.\n")
    conflicting = [{"group": c["group"], "kind": c["kind"], "tasks": " ".join(c["tasks"]),
                    "copies": "; ".join(f"{x['path']} ({', '.join(str(x.get(t, '-')) for t in c['tasks'])})"
                                        for x in c["copies"])} for c in section["conflicting"]]
    both = [{"group": v["group"], "kept (val)": v["kept"], "left out (train)": "; ".join(v["left_out"]),
             "other labels in train": " ".join(v["other_labels_in_train"])} for v in section["val_and_train"]]
    return (text + _listing("Duplicate paintings whose copies disagree (that task left unlabelled)", conflicting,
                            ["group", "kind", "tasks", "copies"])
            + _listing("Val paintings with copies in train (the train copies left out)", both,
                       ["group", "kept (val)", "left out (train)", "other labels in train"]))


def _overrides_markdown(section: dict[str, Any] | None) -> str:
    if not section or not section["files"]:
        return ""
    files = ", ".join(f"`{f['path']}` (SHA-256 {f['sha256'][:12]})" for f in section["files"])
    counts = "; ".join(f"{task}: " + ", ".join(f"{n} {action}" for action, n in sorted(c.items()))
                       for task, c in section["counts"].items())
    return (f"\n## Reviewed labels\n\nFrom {files}: {section['changed']:,} labels changed ({counts or 'none'}).\n"
            + _listing("Reviewed rows", section["list"], ["path", "task", "action", "from", "to", "row"]))


def summary_lines(report: dict[str, Any]) -> list[str]:
    """A few lines for the terminal."""
    images = report["images"]
    lines = [f"protocol {report['protocol']['name']}: {images['in_manifest']:,} images "
             f"({images['splits']['train']:,} train / {images['splits']['select']:,} select / "
             f"{images['splits']['eval']:,} eval), {images['usable']:,} usable, {images['skipped']:,} skipped"]
    for task, c in report["counts"].items():
        lines.append(f"  {task}: {c['train_usable']:,} train / {c['select_usable']:,} select / "
                     f"{c['eval_usable']:,} eval images usable")
    if report.get("content_duplicates"):
        dup = report["content_duplicates"]
        lines.append(f"  duplicate paintings {dup['groups']:,} ({dup['exact']:,} byte-identical, {dup['near']:,} "
                     f"near): {dup['copies_left_out']:,} copies left out, {len(dup['conflicting']):,} with "
                     f"conflicting labels, {len(dup['val_and_train']):,} in val and train (see duplicates.csv)")
    if report.get("overrides", {}).get("files"):
        lines.append(f"  reviewed labels: {report['overrides']['changed']:,} changed by "
                     f"{len(report['overrides']['list']):,} reviewed rows of {len(report['overrides']['files'])} "
                     "file(s)")
    lines.append(f"  repairs {sum(report['repairs']['counts'].values())}, leakage {report['leakage']['images']}, "
                 f"conflicting duplicates {len(report['duplicates']['conflicting'])}, unmatched rows "
                 f"{len(report['unmatched_rows'])}, malformed rows {len(report['malformed_rows'])}")
    if not report["cache"]["complete"]:
        lines.append(f"  cache INCOMPLETE ({images['pending']:,} pending): run the other shards, then prepare once "
                     "more without --shard")
    return lines
