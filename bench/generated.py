"""A generated, prepared DATA folder for the probes that need one when no real DATA is given."""

from __future__ import annotations

from pathlib import Path

from artextract.config import PrepareConfig, SynthConfig
from artextract.data.synth import generate_dataset
from artextract.stages.prepare import prepare_dataset


def generated_data(root: Path, image_size: int, per_artist: int, artists: int = 8, size: int = 256,
                   val_fraction: float = 0.2) -> Path:
    """`artists` x `per_artist` synth paintings of `size` px under root/synth, prepared into root/data."""
    generate_dataset(root / "synth", SynthConfig(artists=artists, per_artist=per_artist, size=size,
                                                 val_fraction=val_fraction))
    prepare_dataset(root / "synth" / "csv", root / "synth" / "wikiart", root / "data",
                    PrepareConfig(cache_size=image_size))
    return root / "data"
