"""The object the stylized field follows in the INS engine: *INS > Neural Render > Placement*.

Import Result sets it to the imported mesh (when the job imported is the one the engine renders),
so moving, turning or scaling the mesh moves the neural render with it, and an F12 of the field
and a Cycles render of the mesh keep matching. Any object will do (an Empty, to place a field
that has no mesh); empty, the field stays where the scene was captured. Its `matrix_world` at the
frame goes to the render server as the field-to-world placement (ins_core/data/placement.py, the
same checks), animated as the object is; for an imported mesh, after the change of its vertices
inside the object since import (`AT_IMPORT_ATTRIBUTE`) and back by its location then
(`FIELD_ORIGIN_PROPERTY`), so Set Origin and Apply Scale leave the field where the mesh is, and
deleting or moving a few vertices does not move it. The field has one scale: an object scaled
unevenly, or sheared by a parent that is, is refused in one sentence. Hidden from a render (the camera icon
for F12, the eye for the viewport, Show Originals, its collection excluded) or deleted from the
scene, the object takes the field with it: that render shows the world alone (`field_hidden`).
"""

from __future__ import annotations

import array
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


# Each vertex's position in the object at import, a point attribute: edits move the vertices'
# `co` and leave it, Set Origin and Apply Scale move every `co` and leave it, and deleting vertices
# deletes their entries, so each vertex still pairs where it was with where it is (stored vertex
# indices did not survive a deleted floater). The field follows the affine map that most of them agree on.
AT_IMPORT_ATTRIBUTE = "ins_at_import"
SAMPLES = 64  # vertices spread over the mesh that the map is fitted to (the viewport asks at each redraw)
CANDIDATES = 8  # four-vertex maps tried when some vertices were edited on their own
INLIER = 1e-4  # of the mesh's size: float32 noise agrees with the map, a vertex moved on its own does not


def record_at_import(mesh) -> None:
    """Keep each vertex's position as it is now in the mesh's `AT_IMPORT_ATTRIBUTE`."""
    positions = array.array("f", bytes(4 * 3 * len(mesh.vertices)))
    mesh.vertices.foreach_get("co", positions)
    mesh.attributes.new(AT_IMPORT_ATTRIBUTE, "FLOAT_VECTOR", "POINT").data.foreach_set("vector", positions)


def _pairs(obj) -> list[tuple[tuple[float, ...], tuple[float, ...]]]:
    """(at import, now) of up to SAMPLES vertices spread over the mesh; [] for an object that is no
    imported mesh (or whose record was removed)."""
    if obj.type != "MESH":
        return []
    record = obj.data.attributes.get(AT_IMPORT_ATTRIBUTE)
    if record is None or record.data_type != "FLOAT_VECTOR" or record.domain != "POINT":
        return []
    vertices, count = obj.data.vertices, len(obj.data.vertices)
    picked = sorted({(2 * k + 1) * count // (2 * SAMPLES) for k in range(SAMPLES)}) if count > SAMPLES else range(count)
    return [(tuple(record.data[i].vector), tuple(vertices[i].co)) for i in picked]


def _inverse3(m: list[list[float]]) -> list[list[float]] | None:
    """The inverse of a 3x3 (doubles), None when it is (nearly) singular: points on a plane."""
    cofactors = [[m[(j + 1) % 3][(i + 1) % 3] * m[(j + 2) % 3][(i + 2) % 3] - m[(j + 1) % 3][(i + 2) % 3] * m[(j + 2) % 3][(i + 1) % 3]
                  for j in range(3)] for i in range(3)]
    det = sum(m[0][k] * cofactors[k][0] for k in range(3))
    scale = max(abs(v) for row in m for v in row)
    if scale == 0.0 or abs(det) <= 1e-12 * scale ** 3:
        return None
    return [[c / det for c in row] for row in cofactors]


def _affine_fit(pairs) -> tuple[list[list[float]], list[float]] | None:
    """(A, t) with A @ before + t nearest to after over the pairs (least squares, doubles); None when
    the points before lie on a plane (no one map then)."""
    n = len(pairs)
    mean_p = [sum(p[i] for p, _ in pairs) / n for i in range(3)]
    mean_q = [sum(q[i] for _, q in pairs) / n for i in range(3)]
    cpp = [[sum((p[i] - mean_p[i]) * (p[j] - mean_p[j]) for p, _ in pairs) for j in range(3)] for i in range(3)]
    cqp = [[sum((q[i] - mean_q[i]) * (p[j] - mean_p[j]) for p, q in pairs) for j in range(3)] for i in range(3)]
    inverse = _inverse3(cpp)
    if inverse is None:
        return None
    a = [[sum(cqp[i][k] * inverse[k][j] for k in range(3)) for j in range(3)] for i in range(3)]
    return a, [mean_q[i] - sum(a[i][j] * mean_p[j] for j in range(3)) for i in range(3)]


def _agreeing(fit, pairs, tolerance: float) -> list:
    a, t = fit
    return [(p, q) for p, q in pairs
            if sum((sum(a[i][j] * p[j] for j in range(3)) + t[i] - q[i]) ** 2 for i in range(3)) <= tolerance ** 2]


def _spread_four(pairs, start: int) -> list:
    """Four pairs whose points before span the mesh: `start`, the farthest from it, the farthest from
    their line, the farthest from their plane."""
    points = [Vector(p) for p, _ in pairs]
    chosen = [start, max(range(len(points)), key=lambda i: (points[i] - points[start]).length_squared)]
    axis = points[chosen[1]] - points[start]
    chosen.append(max(range(len(points)), key=lambda i: axis.cross(points[i] - points[start]).length_squared))
    normal = axis.cross(points[chosen[2]] - points[start])
    chosen.append(max(range(len(points)), key=lambda i: abs(normal.dot(points[i] - points[start]))))
    return [pairs[i] for i in chosen]


def mesh_change(obj) -> Matrix:
    """The affine map from where the mesh's vertices were in the object at import to where they are
    now: the one all the sampled vertices agree on (Set Origin, Apply Scale, the whole mesh moved in
    Edit Mode), else the one most of them do (some vertices deleted, moved or added on their own);
    identity when untouched, or for an object that is no imported mesh."""
    pairs = _pairs(obj)
    if len(pairs) < 4 or all(p == q for p, q in pairs):  # untouched (the usual case): exactly the identity
        return Matrix.Identity(4)
    size = max(max(q[i] for _, q in pairs) - min(q[i] for _, q in pairs) for i in range(3))
    tolerance = INLIER * max(size, 1e-12)
    fit = _affine_fit(pairs)
    if fit is None:
        return Matrix.Identity(4)
    if len(_agreeing(fit, pairs, tolerance)) < len(pairs):  # some vertices edited on their own: the map most agree on
        candidates = [_affine_fit(_spread_four(pairs, k * len(pairs) // CANDIDATES)) for k in range(CANDIDATES)]
        best = max((_agreeing(c, pairs, tolerance) for c in candidates if c is not None), key=len, default=[])
        if len(best) >= max(4, len(pairs) // 2):
            fit = _affine_fit(best) or fit
    a, t = fit
    return Matrix([[*a[i], t[i]] for i in range(3)] + [[0.0, 0.0, 0.0, 1.0]])


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
