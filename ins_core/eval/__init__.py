"""Evaluation: image quality metrics and the pictures people look at (depth maps, grids, charts, videos)."""
