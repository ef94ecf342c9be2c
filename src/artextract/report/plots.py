"""Report figures as PNG bytes (matplotlib, no display needed); sized so 27 x 27 class names stay readable."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pandas as pd


def _figure(width: float, height: float, columns: int = 1, rows: int = 1, **options: Any):
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt.subplots(rows, columns, figsize=(width, height), dpi=110, **options)


def _png(fig: Any) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def confusion_png(matrix: np.ndarray, class_names: list[str], title: str, normalised: bool,
                  trained: list[int] | None = None) -> bytes:
    """Rows true, columns predicted. Rows of classes without evaluation images are left out (they are all
    zero and would read as a class the model never gets right), and so are the columns of classes without
    training images that nothing was predicted as (`trained`: training images per class, when known); the
    figure grows with the class count so that 27 names stay readable."""
    matrix = np.asarray(matrix)
    rows = np.flatnonzero(matrix.sum(axis=1) > 0)
    if trained is not None and len(trained) == len(class_names):
        columns = np.flatnonzero((np.asarray(trained) > 0) | (matrix.sum(axis=0) > 0))
    else:
        columns = np.arange(len(class_names))
    notes = []
    if len(rows) < len(class_names):
        notes.append(f"rows of {len(class_names) - len(rows)} classes without evaluation images omitted")
    if len(columns) < len(class_names):
        notes.append(f"columns of {len(class_names) - len(columns)} classes never trained on nor predicted omitted")
    shown, n_rows, n_cols = matrix[np.ix_(rows, columns)], len(rows), len(columns)
    width, height = max(5.0, 0.34 * n_cols + 3.0), max(4.0, 0.34 * n_rows + 2.6)
    fig, ax = _figure(width, height)
    values = shown.astype(np.float64)
    if normalised:  # an omitted column holds no image, so the shown cells still sum to each row's images
        values = values / np.maximum(values.sum(axis=1, keepdims=True), 1)
    top = 1.0 if normalised else max(1.0, values.max())
    image = ax.imshow(values, cmap="Blues", vmin=0, vmax=top, aspect="auto")
    ax.set_xticks(range(n_cols), labels=[class_names[j] for j in columns], rotation=90, fontsize=7)
    ax.set_yticks(range(n_rows), labels=[class_names[i] for i in rows], fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title + "".join(f"\n({note})" for note in notes), fontsize=10)
    if max(n_rows, n_cols) <= 30:
        for i in range(n_rows):
            for j in range(n_cols):
                if shown[i, j]:
                    text = f"{values[i, j]:.2f}".lstrip("0") if normalised else str(int(shown[i, j]))
                    ax.text(j, i, text, ha="center", va="center", fontsize=5.5 if n_cols > 15 else 7,
                            color="white" if values[i, j] > top / 2 else "black")
    fig.colorbar(image, ax=ax, fraction=0.04)
    return _png(fig)


def per_class_f1_png(per_class: list[dict[str, Any]], title: str) -> bytes:
    """F1 per class; a class without evaluation images gets "n/a", not a bar at 0."""
    names = [row["class"] for row in per_class]
    fig, ax = _figure(6.0, max(3.0, 0.24 * len(names) + 1.0))
    scores = [row["f1"] for row in per_class]
    ax.barh(range(len(names)), [0.0 if f is None else f for f in scores], color="#4c72b0")
    for i, f in enumerate(scores):  # every class gets a value, so an F1 of 0 is not an empty row
        text = "n/a (no evaluation image)" if f is None else f"{f:.2f}"
        ax.text((f or 0.0) + 0.01, i, text, va="center", fontsize=7, color="#5f6b76" if f is None else "#222222")
    ax.set_yticks(range(len(names)), labels=[f"{n} ({row['support']})" for n, row in zip(names, per_class,
                                                                                          strict=True)], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("F1 (support in brackets)")
    ax.set_title(title)
    return _png(fig)


def reliability_png(calibration: dict[str, Any], title: str) -> bytes:
    """Accuracy against confidence per bin, raw and after temperature scaling, above the images per bin (a
    point drawn from 3 images says little)."""
    fig, (ax, counts_ax) = _figure(5.0, 5.6, rows=2, sharex=True, gridspec_kw={"height_ratios": [3, 1.2]})
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1)
    edges = np.linspace(0, 1, len(calibration["before"]["bin_count"]) + 1)
    centres, width = (edges[:-1] + edges[1:]) / 2, edges[1] - edges[0]
    for offset, (key, label) in zip((-0.22, 0.22), (("before", "raw"),
                                                    ("after", f"T = {calibration['temperature']:.2f}")), strict=True):
        data = calibration[key]
        conf, acc = np.array(data["bin_confidence"], float), np.array(data["bin_accuracy"], float)
        ok = ~np.isnan(conf)
        line = ax.plot(conf[ok], acc[ok], marker="o", label=f"{label} (ECE {data['ece']:.3f})")[0]
        counts = np.array(data["bin_count"], float)
        counts_ax.bar(centres + offset * width, counts, width=width * 0.44, color=line.get_color(), label=label)
    ax.set_ylabel("accuracy")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title(title)
    counts_ax.set_xlabel("confidence")
    counts_ax.set_ylabel("images per bin", fontsize=8)
    return _png(fig)


def training_curves_png(history: pd.DataFrame, best_epoch: int | None = None) -> bytes:
    """Losses and selection-set figures per epoch; a dashed line at the epoch whose model was kept."""
    # 7 x 4.5 inches rather than 10 x 3.8: shown 800 px wide, its legends stay readable (they were ~6 px).
    fig, (left, right) = _figure(7.0, 4.5, columns=2)
    for column in [c for c in ("train_loss", "select_loss") if c in history]:
        left.plot(history["epoch"], history[column], marker=".", label=column)
    left.set_xlabel("epoch")
    left.set_title("loss")
    for column in [c for c in history if c.startswith("select_acc_") or c.startswith("select_macro_f1_")]:
        right.plot(history["epoch"], history[column], marker=".", label=column.replace("select_", ""))
    right.set_xlabel("epoch")
    right.set_ylim(0, 1)
    right.set_title("selection set")
    if best_epoch is not None:
        for ax in (left, right):
            ax.axvline(best_epoch, color="#9a3b00", linestyle="--", linewidth=1, label=f"kept: epoch {best_epoch}")
    left.legend(fontsize=9)
    right.legend(fontsize=9)
    return _png(fig)
