"""The shorthand flags that set config keys (`--epochs 5` for `train.epochs`), from one table.

Each flag's name comes from its key, its type from the config dataclass and its default from `Config()`, so a
command declares one with `epochs: config_flag("train.epochs") = None` and hands the typed values it was given
to `given` (no `section.key=value` strings in between: that is `--set`'s job)."""

from __future__ import annotations

import types
import typing
from collections.abc import Callable
from typing import Annotated, Any, Literal

import typer

from artextract.config_files import default_value, key_type
from artextract.models.readers import reader_help

# config key -> help text of its flag (or a function giving it, for text drawn from a registry that may grow after
# this import). A key missing here has no flag (`--set` still sets it).
FLAG_HELP: dict[str, str | Callable[[], str]] = {
    "synth.artists": "How many of the 23 artist classes (the first N).",
    "synth.per_artist": "Paintings per artist.",
    "synth.size": "Short side of the paintings in pixels.",
    "synth.val_fraction": "Share of each artist's paintings in val.",
    "synth.seed": "Random seed; the same seed gives identical files.",
    "synth.quirks": "Inject the real data's quirks.",
    "synth.workers": "Worker processes (0 = all cores).",
    "prepare.cache_size": "Side of the cached square images in pixels.",
    "prepare.protocol": "leak-free (default) or inner-join.",
    "prepare.select_fraction": "Share of training images held out for early stopping.",
    "prepare.test_fraction": "Share of training images held out as a test split (scored as eval), for CSVs "
                             "without val images such as the WikiArt sample.",
    "prepare.max_pixels": "Skip images with more pixels than this.",
    "prepare.workers": "Decoding processes (0 = all cores).",
    "prepare.seed": "Seed of the selection-set draw.",
    "model.tasks": "Comma-separated tasks: artist,style,genre.",
    "model.backbone": "timm model name, e.g. resnet18.",
    "model.weights": "none, imagenet, or a .safetensors/.pth file.",
    "model.reader": lambda: reader_help() + ".",
    "train.epochs": "Number of epochs.",
    "train.batch_size": "Images per device per step.",
    "train.image_size": "Side of the crops fed to the model.",
    "train.devices": "auto, a count, or a list such as 0,1.",
    "train.num_nodes": "Machines taking part (DDP).",
    "train.precision": "auto, 32-true, bf16-mixed or 16-mixed.",
    "train.compile": "torch.compile the model.",
    "train.freeze_backbone": "Train only the reader and heads, from the backbone's feature maps cached in "
                             "DATA/features/.",
}


def _flag_type(annotation: Any) -> type:
    """What the command line parses: numbers and switches as such; names, choices and lists as text, which the
    config checks (Literal choices, comma-separated lists) with the key in its message."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        annotation = next(arg for arg in typing.get_args(annotation) if arg is not type(None))
    if annotation in (bool, int, float):
        return annotation
    if typing.get_origin(annotation) in (Literal, list) or annotation is str:
        return str
    raise TypeError(f"no flag type for config annotation {annotation!r}")


def config_help(key: str, text: str) -> str:
    """Help text of a flag that sets config key `key`, with the key and its default (flags left unset keep the
    config file's value, so Typer itself shows no default)."""
    return f"{text} (config {key}; default: {default_value(key)})"


def config_flag(key: str, *aliases: str) -> Any:
    """The parameter annotation of the flag that sets `key`; `aliases` are further names (e.g. an old one)."""
    flag_type = _flag_type(key_type(key))
    name = "--" + key.split(".", 1)[1].replace("_", "-")
    names = (f"{name}/--no-{name[2:]}",) if flag_type is bool else (name, *aliases)
    text = FLAG_HELP[key]
    return Annotated[flag_type | None, typer.Option(*names, help=config_help(key, text() if callable(text) else text))]


def given(section: str, **values: Any) -> dict[str, Any]:
    """`section.key` -> value for each flag the user gave (an unset flag is None and leaves the config alone)."""
    return {f"{section}.{name}": value for name, value in values.items() if value is not None}
