"""Typed configuration: dataclass sections with defaults, loaded from YAML, overridden by `--set key=value`.

Every command reads one `Config`; flags such as `--epochs` set one key each, as `--set train.epochs=...` would.
The resolved config is written as `config.yaml` beside the outputs so that a run can be repeated.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

from artextract.errors import ConfigError

# Images larger than this are refused before decoding (decompression-bomb guard). The largest real
# WikiArt painting has 107 megapixels, so the default keeps it.
DEFAULT_MAX_PIXELS = 120_000_000
# Files larger than this are skipped unread, so that a zip member inflating to gigabytes cannot take the memory.
# The largest WikiArt files are tens of MB.
DEFAULT_MAX_FILE_MB = 256


def _limits(low: float | None = None, high: float | None = None, *, above: bool = False,
            below: bool = False) -> dict[str, Any]:
    """Field metadata: the value must lie in [low, high]; `above` / `below` make that end open."""
    return {"range": (low, high, above, below)}


# The ArtGAN tasks, smallest first: the order prepare stratifies and cross-validation deals folds in.
TASKS = ("artist", "style", "genre")
OUTPUT_STRIDES = (8, 16, 32)
_MAX_SEED = 2**32 - 1  # numpy's seeds; a negative one fails deep inside a run


@dataclass
class SynthConfig:
    """`artextract synth`: a generated dataset shaped like ArtGAN's WikiArt."""

    artists: int = field(default=23, metadata=_limits(1, 23))  # how many of the 23 real artist classes to paint
    per_artist: int = field(default=40, metadata=_limits(2))  # at least one train and one val painting
    size: int = field(default=256, metadata=_limits(16))  # short side of the generated paintings, in pixels
    val_fraction: float = field(default=0.3, metadata=_limits(0.0, 1.0, above=True, below=True))
    seed: int = field(default=0, metadata=_limits(0, _MAX_SEED))
    quirks: bool = False  # inject the real data's quirks (leakage, duplicates, mojibake, corrupt files, ...)
    workers: int = field(default=0, metadata=_limits(0))  # 0 = all cores


@dataclass
class PrepareConfig:
    """`artextract prepare`: manifest, leak-free splits and the pre-resized image cache."""

    protocol: Literal["leak-free", "inner-join"] = "leak-free"
    # share of the training images held out for early stopping
    select_fraction: float = field(default=0.1, metadata=_limits(0.0, 1.0, below=True))
    # share of the training images held out as a test split (scored as `eval`), for collections without val images
    test_fraction: float = field(default=0.0, metadata=_limits(0.0, 1.0, below=True))
    # side of the square cache images (short side resized, then centre-cropped); older configs call it
    # `image_size`, still read with a warning (config_files.RENAMED_KEYS)
    cache_size: int = field(default=256, metadata=_limits(8))
    max_pixels: int = field(default=DEFAULT_MAX_PIXELS, metadata=_limits(1))
    max_file_mb: int = field(default=DEFAULT_MAX_FILE_MB, metadata=_limits(1))  # larger files are skipped unread
    workers: int = field(default=0, metadata=_limits(0))  # 0 = all cores
    seed: int = field(default=0, metadata=_limits(0, _MAX_SEED))


@dataclass
class ModelConfig:
    """The convolutional-recurrent classifier: backbone -> reader -> one head per task."""

    tasks: list[str] = field(default_factory=lambda: list(TASKS))
    backbone: str = "resnet18"  # any timm model name
    weights: str = "none"  # none | imagenet | path to a .safetensors or .pth file
    reader: str = "gru"  # a name of models/readers.py's registry: gru, lstm, none (global average pooling)
    scan: Literal["rows", "cols", "snake", "2d"] = "rows"
    # 4096 is far beyond any useful reader; it keeps a typo (60000) from allocating tens of GB
    hidden_size: int = field(default=256, metadata=_limits(1, 4096))
    layers: int = field(default=1, metadata=_limits(1, 8))
    bidirectional: bool = True
    pooling: Literal["last", "mean", "attention"] = "mean"
    # channels of a 1x1 convolution between the feature map and the recurrent reader (0 = none): cheaper RNNs
    # over wide maps (EfficientNet's 1280 channels)
    reduce_channels: int = field(default=0, metadata=_limits(0, 4096))
    dropout: float = field(default=0.0, metadata=_limits(0.0, 1.0, below=True))  # before each head
    # Partial fine-tuning: the backbone's last N stages (and its head convolution) train even when the backbone is
    # frozen; the feature cache then holds the maps entering them (EfficientNet / ResNet families)
    tuned_stages: int = field(default=0, metadata=_limits(0, 16))
    # map: the last feature map, read as a sequence of positions; pyramid: every stage's channel means and standard
    # deviations, read as a sequence of stages (reader gru/lstm) or concatenated (reader none)
    representation: Literal["map", "pyramid"] = "map"
    # 32: the network's own; 16 or 8 dilate its last stages instead of striding, a 2x or 4x finer grid for the
    # reader from the same weights (at 4x or 16x the compute of those stages)
    output_stride: int = 32


@dataclass
class TrainConfig:
    """`artextract train`: the loop, the input pipeline and the hardware."""

    epochs: int = field(default=30, metadata=_limits(1))
    batch_size: int = field(default=256, metadata=_limits(1))
    image_size: int = field(default=224, metadata=_limits(8))  # side of the crops fed to the model
    lr: float = field(default=1e-3, metadata=_limits(0.0, above=True))
    weight_decay: float = field(default=0.05, metadata=_limits(0.0))
    warmup_epochs: float = field(default=1.0, metadata=_limits(0.0))
    label_smoothing: float = field(default=0.0, metadata=_limits(0.0, 1.0, below=True))
    class_weights: bool = False  # weight each task's loss by inverse class frequency
    balanced_sampling: bool = False  # draw training images class-balanced on the first task
    grad_clip: float = field(default=1.0, metadata=_limits(0.0))  # max gradient norm; 0 disables
    # random resized crop: smallest share of the cached square's area
    min_crop_scale: float = field(default=0.35, metadata=_limits(0.0, 1.0, above=True))
    hflip: bool = True
    # epochs without a better selection score before stopping; 0 disables
    patience: int = field(default=5, metadata=_limits(0))
    accelerator: Literal["auto", "cpu", "cuda"] = "auto"
    devices: str = "auto"  # "auto", a count, or a list such as "0,1"
    num_nodes: int = field(default=1, metadata=_limits(1))
    precision: Literal["auto", "32-true", "bf16-mixed", "16-mixed"] = "auto"  # auto: bf16 on GPU, fp32 on CPU
    channels_last: bool = True  # faster on GPUs and, for the models measured, on CPUs too
    compile: bool = False
    workers: int = field(default=4, metadata=_limits(0))  # data-reading processes per device
    # torch threads on a CPU; 0 = all cores, but one for an epoch from cached maps that starts while other processes
    # keep the CPU busy (it degrades far less then; engine/runtime.py: cpu_threads_for)
    cpu_threads: int = field(default=0, metadata=_limits(0, 1024))
    log_every: int = field(default=50, metadata=_limits(1))  # steps between log lines when not on a terminal
    # 0 = the whole training split (smaller values are for benchmarks)
    max_steps_per_epoch: int = field(default=0, metadata=_limits(0))
    # Frozen backbone: its feature maps are computed once into DATA/features/ and the reader and heads train
    # from them. `frozen_epochs` > 0 trains that many epochs frozen, then fine-tunes everything from the images.
    freeze_backbone: bool = False
    # augment cached maps by mirroring half of each batch left-right (the maps of a mirrored painting, roughly)
    feature_hflip: bool = False
    frozen_epochs: int = field(default=0, metadata=_limits(0))
    backbone_lr_scale: float = field(default=1.0, metadata=_limits(0.0))  # backbone lr = lr x this
    seed: int = field(default=0, metadata=_limits(0, _MAX_SEED))
    # K >= 2: K-fold cross-validation over the train and selection splits pooled; this run trains on every fold but
    # `fold` and selects on that one (engine/folds.py). 0: the selection split prepare carved.
    folds: int = field(default=0, metadata=_limits(0, 100))
    fold: int = field(default=0, metadata=_limits(0))


@dataclass
class Config:
    synth: SynthConfig = field(default_factory=SynthConfig)
    prepare: PrepareConfig = field(default_factory=PrepareConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def validate(self) -> Config:
        """Raise a ConfigError naming the first key whose value is out of its range; return self."""
        for section_name in _field_types(Config):
            check_ranges(getattr(self, section_name), section_name)
        tasks = self.model.tasks
        if not tasks or not all(isinstance(t, str) and t.strip() for t in tasks):
            raise ConfigError("model.tasks is empty: name at least one of artist, style, genre (--tasks artist,style)")
        repeated = sorted({t for t in tasks if tasks.count(t) > 1})
        if repeated:
            raise ConfigError(f"model.tasks names {', '.join(repeated)} more than once: list each task once")
        if self.model.output_stride not in OUTPUT_STRIDES:
            raise ConfigError(f"config key 'model.output_stride' must be one of "
                              f"{', '.join(map(str, OUTPUT_STRIDES))}, got {self.model.output_stride!r}")
        folds, fold = self.train.folds, self.train.fold
        if folds == 1 or (folds and fold >= folds) or (not folds and fold):
            raise ConfigError(f"train.folds {folds} with train.fold {fold}: folds is 0 (the prepared selection split) "
                              "or at least 2, and fold one of 0..folds-1")
        return self


def check_ranges(section: Any, name: str) -> None:
    """Check every field of one section against the range its metadata declares."""
    for item in dataclasses.fields(section):
        limits = item.metadata.get("range")
        if limits is None:
            continue
        low, high, above, below = limits
        value = getattr(section, item.name)
        too_low = low is not None and (value <= low if above else value < low)
        too_high = high is not None and (value >= high if below else value > high)
        if too_low or too_high or (isinstance(value, float) and not math.isfinite(value)):
            raise ConfigError(f"config key '{name}.{item.name}' must be {_describe(low, high, above, below)}, "
                              f"got {value!r}")


def _describe(low: float | None, high: float | None, above: bool, below: bool) -> str:
    if low is not None and high is not None:
        return f"in {'(' if above else '['}{low}, {high}{')' if below else ']'}"
    if low is not None:
        return f"{'greater than' if above else 'at least'} {low}"
    return f"{'less than' if below else 'at most'} {high}"


def config_to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)
