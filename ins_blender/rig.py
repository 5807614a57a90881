"""Automatic camera rig: poses around the objects' bounds, and a temporary camera to render them.

Camera convention (Blender = NeRF/OpenGL): a camera looks down its local -Z axis with +Y up, so a
pose is simply the camera object's `matrix_world` (camera-to-world).
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable

import bpy
from mathutils import Matrix, Vector

# Object types whose geometry shows up in a render (lights, cameras, empties, armatures do not).
# The custom property Import Result gives its objects (the job folder): an INS result is the
# product's own output, not part of the scene the artist made.
RESULT_PROPERTY = "ins_job"


def is_ins_result(obj) -> bool:
    """Whether `obj` is a stylized mesh Import Result added (it names its job)."""
    return RESULT_PROPERTY in obj.keys()


RENDERABLE_TYPES = frozenset(
    {"MESH", "CURVE", "SURFACE", "META", "FONT", "VOLUME", "POINTCLOUD", "CURVES", "GREASEPENCIL"}
)

# Elevation band of the hemisphere rig, in degrees above the horizontal plane through the centre:
# above ~5 degrees the object's ground plane is never seen edge-on, below ~75 degrees the views
# do not crowd around the pole (where every azimuth looks alike).
HEMISPHERE_ELEVATION_DEG = (5.0, 75.0)

# The bounding sphere fills at most 1 / FRAME_MARGIN of the narrower half field of view.
FRAME_MARGIN = 1.15

_GOLDEN_ANGLE = math.pi * (3.0 - math.sqrt(5.0))


def look_at(eye: Vector, target: Vector) -> Matrix:
    """Camera-to-world matrix of a camera at `eye` looking at `target`, world +Z up."""
    direction = Vector(target) - Vector(eye)
    if direction.length < 1e-12:
        raise ValueError("look_at: the eye and the target coincide.")
    # to_track_quat('-Z', 'Y'): local -Z along the direction, local +Y as close to world +Z as
    # possible (it picks a stable fallback when looking straight up or down).
    rotation = direction.to_track_quat("-Z", "Y").to_matrix().to_4x4()
    return Matrix.Translation(Vector(eye)) @ rotation


def rig_radius(bounds_min, bounds_max, camera_angle: float) -> float:
    """Distance from the centre at which the bounds' sphere fits in a view of `camera_angle`."""
    if not 0.0 < camera_angle < math.pi:
        raise ValueError(f"camera_angle must be in (0, pi) radians, got {camera_angle}.")
    low, high = Vector(bounds_min), Vector(bounds_max)
    sphere = max(0.5 * (high - low).length, 1e-6)
    return FRAME_MARGIN * sphere / math.sin(0.5 * camera_angle)


def unit_directions(n_views: int, hemisphere: bool, seed: int = 0) -> list[Vector]:
    """`n_views` unit vectors spread evenly (equal area) over the sphere or the upper band.

    Fibonacci lattice: heights are evenly spaced (so each view covers an equal area), azimuths
    advance by the golden angle; `seed` only rotates the whole lattice about +Z.
    """
    if n_views < 1:
        raise ValueError(f"n_views must be >= 1, got {n_views}.")
    offset = random.Random(seed).uniform(0.0, 2.0 * math.pi) if seed else 0.0
    if hemisphere:
        z_low, z_high = (math.sin(math.radians(a)) for a in HEMISPHERE_ELEVATION_DEG)
    else:
        z_low, z_high = -1.0, 1.0
    directions = []
    for i in range(n_views):
        z = z_high - (z_high - z_low) * (i + 0.5) / n_views
        ring = math.sqrt(max(0.0, 1.0 - z * z))
        phi = offset + i * _GOLDEN_ANGLE
        directions.append(Vector((ring * math.cos(phi), ring * math.sin(phi), z)))
    return directions


def auto_rig_poses(bounds_min, bounds_max, n_views: int, hemisphere: bool, camera_angle: float,
                   seed: int = 0) -> list[Matrix]:
    """Camera-to-world matrices of `n_views` cameras around the bounds, each aimed at its centre.

    camera_angle: the camera's narrower field of view in radians (min of the horizontal and
    vertical angles), so that the bounding sphere fits in frame with a margin on every side.
    """
    low, high = Vector(bounds_min), Vector(bounds_max)
    centre = 0.5 * (low + high)
    radius = rig_radius(low, high, camera_angle)
    return [look_at(centre + radius * d, centre) for d in unit_directions(n_views, hemisphere, seed)]


# ---------------------------------------------------------------------------------------------
# Which objects are captured, and their bounds.
# ---------------------------------------------------------------------------------------------


def _render_visible_collections(layer_collection) -> Iterable:
    """Collections of a view layer that take part in a render (not excluded, not render-hidden)."""
    if layer_collection.exclude or layer_collection.collection.hide_render:
        return
    yield layer_collection.collection
    for child in layer_collection.children:
        yield from _render_visible_collections(child)


def renderable_objects(scene, view_layer=None) -> list:
    """Objects of the scene with geometry that shows up in a render of `view_layer`.

    Render visibility is what counts (the object's and its collections' camera icon, view-layer
    exclusion), not the viewport eye. Collection-instance empties are included: their instanced
    geometry renders. INS results (earlier stylizations imported) are not the scene's own and are
    left out. Sorted by name so captures are reproducible.
    """
    view_layer = view_layer or _active_view_layer(scene)
    found = {}
    for collection in _render_visible_collections(view_layer.layer_collection):
        for obj in collection.objects:
            if obj.hide_render or is_ins_result(obj):
                continue
            if obj.type in RENDERABLE_TYPES or is_collection_instance(obj):
                found[obj.name] = obj
    return [found[name] for name in sorted(found)]


def is_collection_instance(obj) -> bool:
    return obj.type == "EMPTY" and obj.instance_type == "COLLECTION" and obj.instance_collection is not None


def _active_view_layer(scene):
    context = bpy.context
    if context.scene == scene and context.view_layer is not None:
        return context.view_layer
    return scene.view_layers[0]


def evaluated_depsgraph(scene):
    """An up-to-date evaluated depsgraph of the scene's render view layer.

    Works for a scene that is not the context's scene too (its depsgraph is created on demand).
    """
    if bpy.context.scene == scene:
        return bpy.context.evaluated_depsgraph_get()
    with bpy.context.temp_override(scene=scene, view_layer=_active_view_layer(scene)):
        return bpy.context.evaluated_depsgraph_get()


def objects_bounds(objects, depsgraph=None) -> tuple[Vector, Vector] | None:
    """World-space axis-aligned (min, max) of the objects' evaluated bounding boxes.

    Uses each object's `bound_box` (8 corners in local space, after modifiers when evaluated)
    and `matrix_world`; collection instances contribute their collection's objects. Objects
    without geometry are skipped. Returns None when nothing has bounds.
    """
    if depsgraph is None:
        depsgraph = bpy.context.evaluated_depsgraph_get()
    low = Vector((math.inf,) * 3)
    high = Vector((-math.inf,) * 3)

    def add(obj, parent_matrix: Matrix, depth: int) -> None:
        if depth > 16:  # collections instancing each other: Blender refuses cycles, stay safe
            return
        if is_collection_instance(obj):
            collection = obj.instance_collection
            inner = parent_matrix @ obj.matrix_world @ Matrix.Translation(-Vector(collection.instance_offset))
            for child in collection.all_objects:
                if not child.hide_render:
                    # Children's matrix_world is relative to the collection's own space.
                    add(child, inner, depth + 1)
            return
        if obj.type not in RENDERABLE_TYPES:
            return
        evaluated = obj.evaluated_get(depsgraph)
        matrix = parent_matrix @ evaluated.matrix_world
        for corner in evaluated.bound_box:
            p = matrix @ Vector(corner)
            for axis in range(3):
                low[axis] = min(low[axis], p[axis])
                high[axis] = max(high[axis], p[axis])

    for obj in objects:
        add(obj, Matrix.Identity(4), 0)
    if not all(math.isfinite(v) for v in (*low, *high)):
        return None
    return low, high


# ---------------------------------------------------------------------------------------------
# The temporary camera.
# ---------------------------------------------------------------------------------------------


class TemporaryRig:
    """A camera object that exists only inside the `with` block.

    The camera (object and data) is linked to the scene's master collection so the render sees
    it; on exit both are removed, even after an exception, so the file ends with exactly the
    datablocks it had. No collection is created. The scene's active camera is *not* restored
    here (`render_settings.preserved_render_settings` does that); removing the object clears
    `scene.camera` if it pointed at the rig.
    """

    NAME = "INS Capture Camera"

    def __init__(self, scene, *, lens: float = 50.0, sensor_width: float = 36.0) -> None:
        self.scene = scene
        self.lens = lens
        self.sensor_width = sensor_width
        self.camera = None
        self._data = None

    def __enter__(self) -> "TemporaryRig":
        try:
            self._data = bpy.data.cameras.new(self.NAME)
            self._data.type = "PERSP"
            self._data.lens_unit = "MILLIMETERS"
            self._data.lens = self.lens
            self._data.sensor_fit = "AUTO"
            self._data.sensor_width = self.sensor_width
            self._data.shift_x = self._data.shift_y = 0.0
            self.camera = bpy.data.objects.new(self.NAME, self._data)
            self.scene.collection.objects.link(self.camera)
        except BaseException:
            self._remove()
            raise
        return self

    def set_clipping(self, distance: float, sphere_radius: float) -> None:
        """Near/far planes that keep everything within `sphere_radius` of the aim point."""
        self._data.clip_start = max(1e-4, 0.5 * (distance - sphere_radius), distance * 1e-3)
        self._data.clip_end = max(2.0 * (distance + sphere_radius), self._data.clip_start * 10)

    def set_pose(self, matrix: Matrix) -> None:
        self.camera.matrix_world = matrix

    def __exit__(self, *exc) -> None:
        self._remove()

    def _remove(self) -> None:
        camera, data = self.camera, self._data
        self.camera = self._data = None
        # ReferenceError: something else already removed it; there is nothing left to clean.
        if camera is not None:
            try:
                bpy.data.objects.remove(camera, do_unlink=True)
            except ReferenceError:
                pass
        if data is not None:
            try:
                bpy.data.cameras.remove(data, do_unlink=True)
            except ReferenceError:
                pass
