"""The convolutional-recurrent model family: backbone -> sequence reader -> one linear head per task."""

from artextract.models.classifier import ConvRecurrentClassifier, build_model

__all__ = ["ConvRecurrentClassifier", "build_model"]
