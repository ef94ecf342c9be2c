"""Data layer: the ArtGAN file formats, a synthetic stand-in dataset, and `prepare` (manifest and cache)."""
