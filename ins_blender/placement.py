"""The object the stylized field follows in the INS engine: *INS > Neural Render > Placement*.

Import Result sets it to the imported mesh (when the job imported is the one the engine renders),
so moving, turning or scaling the mesh moves the neural render with it, and an F12 of the field
and a Cycles render of the mesh keep matching. Any object will do (an Empty, to place a field
that has no mesh); empty, the field stays where the scene was captured. Its `matrix_world` at the
frame goes to the render server as the field-to-world placement (ins_core/data/placement.py, the
same checks), animated as the object is. The field has one scale: an object scaled unevenly, or
sheared by a parent that is, is refused in one sentence.
"""

from __future__ import annotations

from pathlib import Path

import bpy
from mathutils import Matrix

from ins_core.errors import InputError

# As ins_core.data.placement.TOLERANCE: float32 matrices of an evenly scaled object pass.
TOLERANCE = 1e-4


def field_object(scene):
    """The object the scene's field follows, or None."""
    settings = getattr(scene, "ins", None)
    return None if settings is None else settings.field_object


def world_matrix(obj, depsgraph=None) -> Matrix:
    """The object's `matrix_world` as evaluated (animation, constraints, parents), a copy."""
    return Matrix((obj.evaluated_get(depsgraph) if depsgraph is not None else obj).matrix_world)


def checked_placement(name: str, matrix: Matrix) -> list[list[float]] | None:
    """`matrix` as the field-to-world rows the server takes; None when it leaves the field where it
    was captured (identity); InputError naming the object when it is not a move, a turn and one scale."""
    if all(abs(matrix[i][j] - (1.0 if i == j else 0.0)) <= 1e-7 for i in range(4) for j in range(4)):
        return None
    axes = [matrix.col[i].xyz for i in range(3)]
    lengths = [axis.length for axis in axes]
    scale = sum(lengths) / 3.0
    square = all(abs(axes[i].dot(axes[j])) <= TOLERANCE * scale * scale for i, j in ((0, 1), (0, 2), (1, 2)))
    if scale <= 1e-8 or max(abs(length - scale) for length in lengths) > TOLERANCE * scale or not square:
        shown = ", ".join(f"{length:.3g}" for length in lengths)
        raise InputError(f"Object '{name}' places the INS field but is not scaled evenly (its axes are {shown} long"
                         f"{'' if square else ' and sheared'}); give it three equal Scale values (and its parents too), "
                         "or clear INS > Neural Render > Placement.")
    return [list(row) for row in matrix]


def field_placement(scene, depsgraph=None) -> list[list[float]] | None:
    """The field-to-world placement the scene's frame renders with (None: where it was captured)."""
    obj = field_object(scene)
    return None if obj is None else checked_placement(obj.name, world_matrix(obj, depsgraph))


def follow_import(scene, obj, job_root: Path) -> None:
    """After Import Result: the field follows the new mesh when its job is the one the engine renders."""
    settings = getattr(scene, "ins", None)
    if settings is None:
        return
    rendered = settings.render_job_dir.strip() or settings.job_dir.strip()
    if rendered and Path(bpy.path.abspath(rendered)).resolve() == Path(job_root).resolve():
        settings.field_object = obj
