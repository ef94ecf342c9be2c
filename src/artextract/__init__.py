"""ArtExtract: classify paintings by artist, style and genre with convolutional-recurrent networks."""

__version__ = "0.1.0"
