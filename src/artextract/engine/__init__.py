"""Training: the input pipeline from the prepare cache, the loss, the metrics, checkpoints and the loop."""
