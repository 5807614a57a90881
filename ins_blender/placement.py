"""The object the stylized field follows in the INS engine: *INS > Neural Render > Placement*.

Import Result sets it to the imported mesh (when the job imported is the one the engine renders),
so moving, turning or scaling the mesh moves the neural render with it, and an F12 of the field
and a Cycles render of the mesh keep matching. Any object will do (an Empty, to place a field
that has no mesh); empty, the field stays where the scene was captured. Its `matrix_world` at the
frame goes to the render server as the field-to-world placement (ins_core/data/placement.py, the
same checks), animated as the object is; for an imported mesh, after the change of its vertices
inside the object since import (`ANCHORS_PROPERTY`), so Set Origin and Apply Scale leave the field
where the mesh is. The field has one scale: an object scaled unevenly, or
sheared by a parent that is, is refused in one sentence. Hidden from a render (the camera icon
for F12, the eye for the viewport, Show Originals, its collection excluded) or deleted from the
scene, the object takes the field with it: that render shows the world alone (`field_hidden`).
"""

from __future__ import annotations

from pathlib import Path

import bpy
from mathutils import Matrix, Vector

from ins_core.errors import InputError

# As ins_core.data.placement.TOLERANCE: float32 matrices of an evenly scaled object pass.
TOLERANCE = 1e-4
# Closer than this to the identity everywhere (float32 products of Blender's matrices): where captured.
IDENTITY_TOLERANCE = 1e-6


def field_object(scene):
    """The object the scene's field follows, or None."""
    settings = getattr(scene, "ins", None)
    return None if settings is None else settings.field_object


# Four of an imported mesh's vertices, where they were at import ([index, x, y, z] each, object
# space = world space then): Set Origin, Apply Rotation & Scale or a transform of the whole mesh in
# Edit Mode move the vertices inside the object and its matrix the other way, so the field follows
# the mesh's vertices, not the object's matrix alone.
ANCHORS_PROPERTY = "ins_anchors"
# The object's location at import, [x, y, z]: the mesh comes in with its origin at the centre of its
# bounds, so the field (whose origin is the world's, where it was captured) lies this far behind it.
FIELD_ORIGIN_PROPERTY = "ins_field_origin"


def field_hidden(scene, depsgraph) -> str | None:
    """Why `depsgraph`'s render leaves the field out (what follows "INS: "), or None when it draws it:
    the object placing the field is hidden from that render (the depsgraph of an F12 leaves out what
    is hidden from renders, a viewport's what is hidden in it) or was deleted (the pointer still
    holds it, as a camera's focus object is held). An artist hides or deletes the stylized mesh to
    hide the stylized thing; the field is that thing in the INS engine."""
    obj = field_object(scene)
    if obj is None or depsgraph is None:
        return None
    if scene.objects.get(obj.name) != obj:
        return (f"the field's Placement '{obj.name}' is no longer in scene '{scene.name}', so the field is not drawn; "
                "clear INS > Neural Render > Placement to draw it where it was captured")
    shown = depsgraph.objects.get(obj.name)
    if shown is None or shown.original != obj:
        return f"the field's Placement '{obj.name}' is hidden here, so the field is not drawn"
    return None


def world_matrix(obj, depsgraph=None) -> Matrix:
    """The object's `matrix_world` as evaluated (animation, constraints, parents), a copy."""
    return Matrix((obj.evaluated_get(depsgraph) if depsgraph is not None else obj).matrix_world)


def anchors(coordinates) -> list[float]:
    """[index, x, y, z] x 4 of four vertices spanning the mesh (flat xyz `coordinates`): the first,
    the farthest from it, the farthest from their line, the farthest from their plane; [] when the
    mesh is flat or a line (no four points pin an affine map then)."""
    points = [Vector(coordinates[i:i + 3]) for i in range(0, len(coordinates) - 2, 3)]
    if len(points) < 4:
        return []
    chosen = [0]
    chosen.append(max(range(len(points)), key=lambda i: (points[i] - points[0]).length_squared))
    axis = points[chosen[1]] - points[0]
    chosen.append(max(range(len(points)), key=lambda i: axis.cross(points[i] - points[0]).length_squared))
    normal = axis.cross(points[chosen[2]] - points[0])
    chosen.append(max(range(len(points)), key=lambda i: abs(normal.dot(points[i] - points[0]))))
    size = max(axis.length, 1e-12)
    if abs(normal.dot(points[chosen[3]] - points[0])) <= 1e-6 * size ** 3:
        return []
    return [value for i in chosen for value in (float(i), *points[i])]


def _frame(points: list[Vector]) -> Matrix:
    """The 4x4 whose columns are the four points, homogeneous."""
    return Matrix([[p[row] for p in points] for row in range(3)] + [[1.0] * 4])


def mesh_change(obj) -> Matrix:
    """The affine map from where the anchors were at import to where they are in the object now
    (identity when they have not moved, or when the object has no anchors that still apply: not an
    imported mesh, or vertices added or removed since)."""
    stored = obj.get(ANCHORS_PROPERTY) if obj.type == "MESH" else None
    if not stored or len(stored) != 16:
        return Matrix.Identity(4)
    vertices = obj.data.vertices
    indices = [int(stored[k]) for k in range(0, 16, 4)]
    if any(i >= len(vertices) for i in indices):
        return Matrix.Identity(4)
    then = _frame([Vector(stored[k + 1:k + 4]) for k in range(0, 16, 4)])
    now = _frame([vertices[i].co for i in indices])
    if now == then:  # untouched (the usual case): exactly the identity, not float32 noise around it
        return Matrix.Identity(4)
    try:
        change = now @ then.inverted()
    except ValueError:  # (a flat set was never stored)
        return Matrix.Identity(4)
    change[3] = (0.0, 0.0, 0.0, 1.0)  # affine by construction; float32 leaves noise in the last row
    return change


def origin_offset(obj) -> Matrix:
    """From the field's space to the object's at import: back by the object's location then
    (identity for an object that is no imported mesh)."""
    stored = obj.get(FIELD_ORIGIN_PROPERTY)
    if stored is None or len(stored) != 3:
        return Matrix.Identity(4)
    return Matrix.Translation(-Vector(stored))


def field_matrix(obj, depsgraph=None) -> Matrix:
    """Where the object puts the field: its world matrix, after the change of its mesh since import."""
    return world_matrix(obj, depsgraph) @ mesh_change(obj) @ origin_offset(obj)


def checked_placement(name: str, matrix: Matrix) -> list[list[float]] | None:
    """`matrix` as the field-to-world rows the server takes; None when it leaves the field where it
    was captured (identity); InputError naming the object when it is not a move, a turn and one scale."""
    if all(abs(matrix[i][j] - (1.0 if i == j else 0.0)) <= IDENTITY_TOLERANCE for i in range(4) for j in range(4)):
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
    if obj is None:
        return None
    world = world_matrix(obj, depsgraph)
    checked_placement(obj.name, world)  # the object's own scale first: its sentence names the Scale
    try:
        return checked_placement(obj.name, field_matrix(obj, depsgraph))
    except InputError:  # the object is fine: its mesh was stretched or sheared inside it since import
        raise InputError(f"The mesh '{obj.name}' places the INS field, but its vertices were stretched or sheared since "
                         "Import Result (an uneven edit of the whole mesh, or of some of its vertices); undo that edit, "
                         "or clear INS > Neural Render > Placement.") from None


def follow_import(scene, obj, job_root: Path) -> None:
    """After Import Result: the field follows the new mesh when its job is the one the engine renders."""
    settings = getattr(scene, "ins", None)
    if settings is None:
        return
    rendered = settings.render_job_dir.strip() or settings.job_dir.strip()
    if rendered and Path(bpy.path.abspath(rendered)).resolve() == Path(job_root).resolve():
        settings.field_object = obj
