"""Mesh export: field callables -> marching cubes mesh -> UVs -> baked texture -> glb / obj / npz.

Format logic (`writers`) is kept apart from geometry (`marching_cubes`, `cleanup`, `uv`) and
from the field (`bake` only calls the colour callable), and nothing here imports the training
code: a field is handed in as `scalar_fn(points) -> values` and `color_fn(points, dirs) -> rgb`.
"""

from ins_core.export.pipeline import ExportResult, export_mesh

__all__ = ["ExportResult", "export_mesh"]
