"""The convolutional-recurrent model family: backbone -> reader -> one linear head per task.

Loaded lazily: `artextract.models.readers` (the reader registry) is read by the command line without torch.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ConvRecurrentClassifier", "build_model"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from artextract.models import classifier

        return getattr(classifier, name)
    raise AttributeError(f"module 'artextract.models' has no attribute {name!r}")
