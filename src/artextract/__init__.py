"""ArtExtract: classify paintings by artist, style and genre with convolutional-recurrent networks."""

from typing import Any

from artextract.core.version import VERSION as __version__

__all__ = ["__version__", "load_model"]


def __getattr__(name: str) -> Any:
    # `load_model` pulls in torch; importing the package (e.g. for `artextract --version`) should not.
    if name == "load_model":
        from artextract.predictor import load_model

        return load_model
    raise AttributeError(f"module 'artextract' has no attribute {name!r}")
