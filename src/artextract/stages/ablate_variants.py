"""The variants `artextract ablate` compares, by name: settings laid over the configured model. Kept apart from
the stage (no torch here) so that the command's --help lists them without loading anything."""

from __future__ import annotations

from typing import Any

LAST_MAP = {"representation": "map"}
# name -> settings over the configured ones (model settings, or "train.KEY" for a training setting). The readers
# of the last map name their representation, so that a recipe configured with the pyramid still compares them.
VARIANTS: dict[str, dict[str, Any]] = {
    "gap": {**LAST_MAP, "reader": "none"},
    "gru-rows": {**LAST_MAP, "reader": "gru", "scan": "rows", "pooling": "mean"},
    "gru-cols": {**LAST_MAP, "reader": "gru", "scan": "cols", "pooling": "mean"},
    "gru-snake": {**LAST_MAP, "reader": "gru", "scan": "snake", "pooling": "mean"},
    "gru-2d": {**LAST_MAP, "reader": "gru", "scan": "2d", "pooling": "mean"},
    "lstm-rows": {**LAST_MAP, "reader": "lstm", "scan": "rows", "pooling": "mean"},
    "gru-rows-attention": {**LAST_MAP, "reader": "gru", "scan": "rows", "pooling": "attention"},
    "gru-rows-last": {**LAST_MAP, "reader": "gru", "scan": "rows", "pooling": "last"},
    # the configured reader of the last map with more of the network or more data: partial fine-tuning of the
    # last one or two backbone stages from the maps entering them, mirrored cached maps
    "tune1": {**LAST_MAP, "tuned_stages": 1, "train.backbone_lr_scale": 0.1},
    "tune2": {**LAST_MAP, "tuned_stages": 2, "train.backbone_lr_scale": 0.1},
    "flip": {**LAST_MAP, "train.feature_hflip": True},
    "tune1-flip": {**LAST_MAP, "tuned_stages": 1, "train.backbone_lr_scale": 0.1, "train.feature_hflip": True},
    # every stage's channel statistics, concatenated or read as a sequence of stages by a GRU
    "pyramid-gap": {"representation": "pyramid", "reader": "none"},
    "pyramid-gru": {"representation": "pyramid", "reader": "gru"},
    "pyramid-mlp": {"representation": "pyramid", "reader": "mlp"},
    # the recipe with each task's loss weighted by inverse class frequency: a remedy for the long tail of classes
    # that macro-F1 weighs as much as the large ones
    "pyramid-weighted": {"representation": "pyramid", "reader": "none", "train.class_weights": True},
    # the configured model on the larger Lite backbones
    "lite1": {"backbone": "tf_efficientnet_lite1"},
    "lite2": {"backbone": "tf_efficientnet_lite2"},
}


def variants_help() -> str:
    """--variants' help: every variant by name, then the registered readers."""
    return (f"Comma-separated variants to compare: {', '.join(VARIANTS)}, or any registered reader's name (the "
            "configured model with that reader on the last map).")
