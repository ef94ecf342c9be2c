"""A generated dataset shaped like ArtGAN's WikiArt: same tree, same file formats, learnable paintings."""

from artextract.data.synth.generate import SynthSummary, generate_dataset

__all__ = ["SynthSummary", "generate_dataset"]
