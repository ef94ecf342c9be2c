"""The verdicts and the table of `artextract ablate`: which pairs of variants are tested, the seed-aware paired
test of each (accuracy and macro-F1), Holm's correction over the whole table, and the markdown."""

from __future__ import annotations

from typing import Any

import numpy as np

from artextract.analysis.compare import SIGNIFICANCE, apply_holm, seeded_paired_test, verdict_cell
from artextract.config import Config
from artextract.errors import ConfigError
from artextract.models.weights import weights_phrase

BASELINE = "gap"  # by default every other variant is tested against it (against the first variant when absent)


def parse_pairs(text: str, variants: list[str]) -> list[tuple[str, str]]:
    """`pyramid-gap:gap,pyramid-gru:pyramid-gap` -> [(A, B), ...]: B is tested against A; both must be among
    the ablation's variants."""
    pairs = []
    for item in (i.strip() for i in text.split(",") if i.strip()):
        a, colon, b = item.partition(":")
        if not colon or a == b:
            raise ConfigError(f"--pairs expects A:B items (two different variants), got {item!r}")
        missing = [n for n in (a, b) if n not in variants]
        if missing:
            raise ConfigError(f"--pairs names {', '.join(missing)}, which --variants does not train; add it to "
                              f"--variants ({', '.join(variants)})")
        pairs.append((a, b))
    return pairs


def default_pairs(variants: list[str]) -> list[tuple[str, str]]:
    baseline = BASELINE if BASELINE in variants else variants[0]
    return [(baseline, name) for name in variants if name != baseline]


def verdicts(pairs: list[tuple[str, str]], predictions: dict[str, dict[str, np.ndarray]],
             labels: dict[str, np.ndarray], classes: dict[str, int]) -> list[dict[str, Any]]:
    """One verdict per pair and task (`predictions`: variant -> task -> seeds x images), Holm-corrected together."""
    found = [{"a": a, "b": b, "task": task,
              **seeded_paired_test(labels[task], predictions[a][task], predictions[b][task], classes[task])}
             for a, b in pairs for task in labels]
    apply_holm(found)
    return found


def render_markdown(table: dict[str, dict[str, dict[str, Any]]], found: list[dict[str, Any]], tasks: list[str],
                    seeds: list[int], config: Config, folds: int = 0) -> str:
    model = config.model
    scored = (f"{folds}-fold cross-validation over the training and selection paintings pooled (each scored once "
              "per seed, by the run that did not train on it)" if folds >= 2 else "Selection set")
    lines = [f"# Ablation on frozen {model.backbone} features ({weights_phrase(model.weights)})", "",
             f"{scored}; {len(seeds)} seed(s) ({', '.join(map(str, seeds))}), {config.train.epochs} epochs each, "
             f"scored at the last epoch; hidden size {model.hidden_size}, channel reduction "
             f"{model.reduce_channels or 'none'}. Brackets: 95 % bootstrap intervals (stratified by class) over the "
             "scored images of the seed-averaged figure.", ""]
    for task in tasks:
        lines += [f"## {task}", "", "| variant | accuracy [95 % CI] | macro-F1 [95 % CI] | accuracy per seed | "
                  "macro-F1 per seed | trainable parameters | seconds per run |", "|---|---|---|---|---|---|---|"]
        for name, tasks_figures in table.items():
            f = tasks_figures[task]
            acc, f1 = f["accuracy_interval_95"], f["macro_f1_interval_95"]
            per_seed = {m: ", ".join(f"{v:.3f}" for v in f[f"{m}_per_run"]) for m in ("accuracy", "macro_f1")}
            lines.append(f"| {name} | {f['accuracy']:.3f} [{acc[0]:.3f}, {acc[1]:.3f}] | {f['macro_f1']:.3f} "
                         f"[{f1[0]:.3f}, {f1[1]:.3f}] | {per_seed['accuracy']} | {per_seed['macro_f1']} | "
                         f"{f['trainable_parameters']:,} | {f['seconds_per_run']:.0f} |")
        lines.append("")
    lines += verdict_lines(found)
    return "\n".join(lines)


def verdict_lines(found: list[dict[str, Any]]) -> list[str]:
    """The verdict table: B - A in points, per task and metric, with the family-wise correction stated."""
    if not found:
        return []
    single = any(not v["training_variance"] for v in found)
    lines = ["## Verdicts: B - A, paired on the same images", "",
             "Points of accuracy and of macro-F1, each model's figure averaged over its seeds. The variance adds the "
             "images' (a stratified bootstrap of the seed-averaged difference) and the training runs' (each "
             "model's seed-to-seed variance over its number of seeds); interval and p are the normal ones for it. "
             f"Holm's correction over all {2 * len(found)} tests of this table (both metrics, every pair and task); "
             f"bold: significant at {SIGNIFICANCE:g} after it."
             + (" One seed per model: the training variance is not included, so a verdict can be the luck of "
                "one seed; give --seeds 0,1,2." if single else ""), "",
             "| A | B | task | images | seeds | accuracy B - A | macro-F1 B - A |", "|---|---|---|---|---|---|---|"]
    for v in found:
        lines.append(f"| {v['a']} | {v['b']} | {v['task']} | {v['images']:,} | {v['seeds_a']} / {v['seeds_b']} | "
                     f"{verdict_cell(v['accuracy'])} | {verdict_cell(v['macro_f1'])} |")
    return [*lines, ""]
