"""The reader registry: every name `model.reader` accepts, with how to build it and how to say what it is.

A reader turns the backbone's N x C x H x W feature map (or the pyramid's N x D x 1 x 1 statistics) into one
embedding per image (the `Reader` protocol of models/reader.py). Adding one is a class and one `register_reader`
line; the config check, `build_model`, the start-up summary, the report, `compare` and `ablate` (a variant of the
same name) all read this table. No torch at import: the CLI lists the names without loading it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from artextract.errors import ConfigError

if TYPE_CHECKING:
    from torch import nn

    from artextract.config import ModelConfig


@dataclass(frozen=True)
class ReaderKind:
    name: str
    summary: str  # a few words for --help: "global average pooling"
    # (input channels, backbone's pyramid level widths or [], model config) -> the reader module
    build: Callable[[int, list[int], ModelConfig], nn.Module]
    describe: Callable[[ModelConfig], str]  # in words, for the start-up summary and the report
    label: Callable[[ModelConfig], str]  # a short name for tables (compare)
    sequential: bool  # reads the grid positions in order: a 1 x 1 grid defeats it


READERS: dict[str, ReaderKind] = {}


def register_reader(kind: ReaderKind) -> ReaderKind:
    READERS[kind.name] = kind
    return kind


def reader_kind(name: str) -> ReaderKind:
    """The registered reader `name`, or a ConfigError naming the choices."""
    kind = READERS.get(name)
    if kind is None:
        raise ConfigError(f"config key 'model.reader' must be one of {', '.join(READERS)}, got {name!r}")
    return kind


def describe_reader(model: ModelConfig) -> str:
    return reader_kind(model.reader).describe(model)


def reader_label(model: ModelConfig) -> str:
    return reader_kind(model.reader).label(model)


def reader_help() -> str:
    return ", ".join(f"{name} ({kind.summary})" for name, kind in READERS.items())


# ---------------------------------------------------------------------------------------------- the built-ins


def _build_pooling(channels: int, levels: list[int], model: ModelConfig) -> nn.Module:
    from artextract.models.reader import GapReader

    return GapReader(channels)  # over the pyramid's 1 x 1 "map": the statistics, concatenated


def _build_mlp(channels: int, levels: list[int], model: ModelConfig) -> nn.Module:
    from artextract.models.reader import MlpReader

    return MlpReader(channels, model.hidden_size, model.dropout)


def _build_recurrent(channels: int, levels: list[int], model: ModelConfig) -> nn.Module:
    from artextract.models.reader import PyramidReader, SequenceReader

    pyramid = model.representation == "pyramid"
    # A pyramid's levels are projected to a common width first; the sequence reader then needs no reduction.
    width = (model.reduce_channels or model.hidden_size) if pyramid else channels
    sequence = SequenceReader(width, cell=model.reader, scan="rows" if pyramid else model.scan,
                              hidden_size=model.hidden_size, layers=model.layers, bidirectional=model.bidirectional,
                              pooling=model.pooling, reduce_channels=0 if pyramid else model.reduce_channels)
    return PyramidReader(levels, sequence, width) if pyramid else sequence


def _describe_recurrent(model: ModelConfig) -> str:
    cell = f"{'bi' if model.bidirectional else ''}{model.reader.upper()}({model.hidden_size})"
    over = "the stages' channel statistics" if model.representation == "pyramid" else model.scan
    return f"{cell} over {over}, {model.pooling} pooling"


register_reader(ReaderKind(
    "none", "global average pooling", _build_pooling,
    describe=lambda m: ("the stages' channel statistics, concatenated" if m.representation == "pyramid"
                        else "global average pooling"),
    label=lambda m: "stage statistics, concatenated" if m.representation == "pyramid" else "GAP",
    sequential=False))
for _cell, _article in (("gru", "a"), ("lstm", "an")):
    register_reader(ReaderKind(
        _cell, f"{_article} {_cell.upper()} over the scanned grid", _build_recurrent, _describe_recurrent,
        label=lambda m: (f"stage statistics read by {m.reader}" if m.representation == "pyramid"
                         else f"{m.reader} {m.scan} {m.pooling}"), sequential=True))
register_reader(ReaderKind(
    "mlp", "global average pooling, then one hidden layer", _build_mlp,
    describe=lambda m: (f"the stages' channel statistics, concatenated, then an MLP({m.hidden_size})"
                        if m.representation == "pyramid" else f"global average pooling, then an MLP({m.hidden_size})"),
    label=lambda m: f"stage statistics + MLP({m.hidden_size})" if m.representation == "pyramid" else
    f"GAP + MLP({m.hidden_size})", sequential=False))
