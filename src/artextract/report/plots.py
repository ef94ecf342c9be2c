"""Report figures as PNG bytes (matplotlib, no display needed); sized so 27 x 27 class names stay readable."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pandas as pd


def _figure(width: float, height: float, columns: int = 1):
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt.subplots(1, columns, figsize=(width, height), dpi=110)


def _png(fig: Any) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def confusion_png(matrix: np.ndarray, class_names: list[str], title: str, normalised: bool) -> bytes:
    n = len(class_names)
    side = max(5.0, 0.38 * n + 2.5)
    fig, ax = _figure(side + 1.0, side)
    values = matrix.astype(np.float64)
    if normalised:
        values = values / np.maximum(values.sum(axis=1, keepdims=True), 1)
    image = ax.imshow(values, cmap="Blues", vmin=0, vmax=1 if normalised else max(1.0, values.max()))
    ax.set_xticks(range(n), labels=class_names, rotation=90, fontsize=7)
    ax.set_yticks(range(n), labels=class_names, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    if n <= 30:
        for i in range(n):
            for j in range(n):
                if matrix[i, j]:
                    text = f"{values[i, j]:.2f}" if normalised else str(int(matrix[i, j]))
                    ax.text(j, i, text, ha="center", va="center", fontsize=5 if n > 15 else 7,
                            color="white" if values[i, j] > (0.5 if normalised else values.max() / 2) else "black")
    fig.colorbar(image, ax=ax, fraction=0.04)
    return _png(fig)


def per_class_f1_png(per_class: list[dict[str, Any]], title: str) -> bytes:
    names = [row["class"] for row in per_class]
    fig, ax = _figure(7.0, max(3.0, 0.26 * len(names) + 1.0))
    ax.barh(range(len(names)), [row["f1"] for row in per_class], color="#4c72b0")
    ax.set_yticks(range(len(names)), labels=[f"{n} ({row['support']})" for n, row in zip(names, per_class,
                                                                                          strict=True)], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("F1 (support in brackets)")
    ax.set_title(title)
    return _png(fig)


def reliability_png(calibration: dict[str, Any], title: str) -> bytes:
    fig, ax = _figure(5.0, 4.5)
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1)
    for key, label in (("before", "raw"), ("after", f"T = {calibration['temperature']:.2f}")):
        data = calibration[key]
        conf, acc = np.array(data["bin_confidence"], float), np.array(data["bin_accuracy"], float)
        ok = ~np.isnan(conf)
        ax.plot(conf[ok], acc[ok], marker="o", label=f"{label} (ECE {data['ece']:.3f})")
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title(title)
    return _png(fig)


def training_curves_png(history: pd.DataFrame) -> bytes:
    fig, (left, right) = _figure(10.0, 3.8, columns=2)
    for column in [c for c in ("train_loss", "select_loss") if c in history]:
        left.plot(history["epoch"], history[column], marker=".", label=column)
    left.set_xlabel("epoch")
    left.set_title("loss")
    left.legend(fontsize=8)
    for column in [c for c in history if c.startswith("select_acc_") or c.startswith("select_macro_f1_")]:
        right.plot(history["epoch"], history[column], marker=".", label=column.replace("select_", ""))
    right.set_xlabel("epoch")
    right.set_ylim(0, 1)
    right.set_title("selection set")
    right.legend(fontsize=7)
    return _png(fig)
