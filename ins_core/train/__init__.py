"""Training loops, checkpoints and run directories."""
