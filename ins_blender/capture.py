"""Capture: the scene's cameras (or an automatic rig) -> rendered views -> a NeRF dataset.

`capture_views(scene, job_root, ...)` renders RGBA PNGs into JOB/dataset/train and JOB/dataset/test
and writes transforms_train.json / transforms_test.json in the NeRF-synthetic layout with the
instant-ngp / nerfstudio intrinsic keys (fl_x, fl_y, cx, cy, w, h) and the scene box (aabb).

Conventions (DESIGN.md): `transform_matrix` is the camera's `matrix_world` with its scale removed
(Blender renders through the normalised matrix too), i.e. camera-to-world with the camera looking
down -Z, +Y up, +X right. Intrinsics are in pixels, the principal point measured from the image's
top-left corner with rows going down, exactly as Blender projects (sensor fit, sensor size, lens,
shift and pixel aspect included).

The user's scene is left as it was: render settings, active camera and frame are restored, the
temporary rig camera is removed, and a "Render Result" image that did not exist before is
removed again, after success, error (InputError), cancel (CaptureCancelled) or KeyboardInterrupt.
"""

from __future__ import annotations

import math
import os
import re
import time
from collections.abc import Callable, Iterable
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import bpy
from mathutils import Matrix, Vector

from ins_core.errors import InputError
from ins_core.job import JobPaths
from ins_core.json_files import write_json_atomic

from . import rig as rig_module
from .camera_model import CameraIntrinsics, camera_intrinsics, camera_to_world
from .render_settings import apply_capture_settings, depth_output, preserved_render_settings

SOURCES = ("cameras", "animation", "auto_rig")
TRAIN_JSON = "transforms_train.json"
TEST_JSON = "transforms_test.json"
AABB_PADDING = 0.05  # the scene box grows by this fraction of its largest side on every side
_IMAGE_NAME = re.compile(r"r_\d+(\.png|_depth\.exr)")
DEPTH_SUFFIX = "_depth.exr"  # r_N.png's depth: r_N_depth.exr (a multilayer EXR with the Depth pass)


class CaptureCancelled(Exception):
    """The capture was stopped by its `cancel` callback; the scene has been restored."""


@dataclass
class CaptureResult:
    dataset_dir: Path
    train_json: Path
    test_json: Path | None  # None when there were too few views to hold one out
    n_train: int
    n_test: int
    width: int
    height: int
    aabb: list[list[float]]
    source: str
    seconds: float
    per_frame_intrinsics: bool = False
    images: list[Path] = field(default_factory=list)
    depths: list[Path] = field(default_factory=list)  # each image's depth (r_N_depth.exr), if captured


# ---------------------------------------------------------------------------------------------
# Camera checks (the maths: camera_model.py).
# ---------------------------------------------------------------------------------------------


def _require_perspective(camera_object, camera_data=None) -> None:
    data = camera_data if camera_data is not None else camera_object.data
    if data.type != "PERSP":
        kind = {"ORTHO": "orthographic", "PANO": "panoramic"}.get(data.type, data.type.lower())
        raise InputError(
            f"Camera '{camera_object.name}' is {kind} but only perspective cameras can be captured; "
            "set its Type to Perspective in the camera properties or leave it out of the capture."
        )


# ---------------------------------------------------------------------------------------------
# Views to render.
# ---------------------------------------------------------------------------------------------


@dataclass
class _View:
    camera: object | None = None  # a user camera object; None for the rig
    pose: Matrix | None = None  # rig pose
    frame: int | None = None  # animation frame


def scene_cameras(scene, collection_name: str | None) -> list:
    """The perspective cameras to capture from: those in the collection, or all of the scene's."""
    if collection_name:
        collection = bpy.data.collections.get(collection_name)
        if collection is None:
            raise InputError(f"Collection '{collection_name}' does not exist; pick an existing collection of cameras or leave the collection empty to use all cameras of the scene.")
        cameras = [o for o in collection.all_objects if o.type == "CAMERA"]
        where = f"Collection '{collection_name}'"
    else:
        cameras = [o for o in scene.objects if o.type == "CAMERA"]
        where = f"Scene '{scene.name}'"
    if not cameras:
        raise InputError(f"{where} has no cameras; add cameras around the objects or use the automatic camera rig (source 'auto_rig').")
    cameras.sort(key=lambda o: o.name)
    for camera in cameras:
        _require_perspective(camera)
    return cameras


def _animation_frames(scene) -> list[int]:
    step = max(1, scene.frame_step)
    frames = list(range(scene.frame_start, scene.frame_end + 1, step))
    if not frames:
        raise InputError(f"Scene '{scene.name}' has an empty frame range ({scene.frame_start}..{scene.frame_end}); set End after Start in the Output properties.")
    return frames


def _union(bounds_a, bounds_b):
    if bounds_a is None:
        return bounds_b
    if bounds_b is None:
        return bounds_a
    return (Vector(map(min, bounds_a[0], bounds_b[0])), Vector(map(max, bounds_a[1], bounds_b[1])))


def _capture_objects(scene, objects) -> list:
    if objects is None:
        found = rig_module.renderable_objects(scene)
        if not found:
            raise InputError(f"Scene '{scene.name}' has no visible objects to capture; add a mesh or make its objects visible in renders.")
        return found
    found = [o for o in objects if o.type in rig_module.RENDERABLE_TYPES or rig_module.is_collection_instance(o)]
    if not found:
        raise InputError("None of the given objects has geometry to capture; select meshes (or curves, text, volumes) or capture the whole scene.")
    return found


def _padded_aabb(bounds, what: str) -> list[list[float]]:
    if bounds is None:
        raise InputError(f"{what} have no geometry (empty bounds); add vertices to the meshes or capture other objects.")
    low, high = Vector(bounds[0]), Vector(bounds[1])
    extent = max(high - low)
    if not math.isfinite(extent) or extent < 1e-6:
        raise InputError(f"{what} have empty bounds (every vertex at one point); add geometry or capture other objects.")
    pad = AABB_PADDING * extent
    return [[float(v - pad) for v in low], [float(v + pad) for v in high]]


# ---------------------------------------------------------------------------------------------
# Output folder and rendering.
# ---------------------------------------------------------------------------------------------


def _prepare_output(job_root) -> tuple[Path, Path, Path]:
    """Create JOB/dataset/{train,test}, prove they are writable, drop a previous transforms file."""
    if job_root is None or not str(job_root).strip():
        raise InputError("No output folder was given for the capture; choose a job folder.")
    root = Path(bpy.path.abspath(str(job_root)))  # honours Blender's "//" (next to the .blend)
    dataset = JobPaths(root).dataset_dir
    train_dir, test_dir = dataset / "train", dataset / "test"
    try:
        for folder in (train_dir, test_dir):
            folder.mkdir(parents=True, exist_ok=True)
            probe = folder / f".ins_write_test_{os.getpid()}"
            probe.write_bytes(b"")
            probe.unlink()
        # A dataset is either complete or absent: the transforms files are written last.
        for name in (TRAIN_JSON, TEST_JSON):
            (dataset / name).unlink(missing_ok=True)
    except OSError as error:
        reason = error.strerror or str(error)
        raise InputError(f"Cannot write the capture into '{root}' ({reason}); choose an output folder you can write to.") from None
    return dataset, train_dir, test_dir


def _render_result_images() -> list:
    return [image for image in bpy.data.images if image.type == "RENDER_RESULT"]


def _render_context(scene):
    """Render `scene` even when it is not the context's scene."""
    if bpy.context.scene == scene:
        return nullcontext()
    return bpy.context.temp_override(scene=scene, view_layer=scene.view_layers[0])


def _render_still(scene, path: Path, depth_path: Path | None = None) -> None:
    """Render the scene's camera into `path` (PNG) and, with `depth_path`, its passes (the
    Depth pass among them) into that OpenEXR."""
    with _render_context(scene):
        bpy.ops.render.render(write_still=False)
    results = _render_result_images()
    if not results:
        raise RuntimeError("Blender rendered no 'Render Result' image.")
    try:
        results[0].save_render(str(path), scene=scene)
        if depth_path is not None:
            with depth_output(scene):
                results[0].save_render(str(depth_path), scene=scene)
    except RuntimeError as error:
        raise InputError(f"Cannot write the view '{path}' ({error}); check free disk space and the output folder's permissions.") from None


@contextmanager
def _depth_pass(view_layer, wanted: bool):
    """The view layer's Z pass on while the views render (when `wanted`), as the user had it after."""
    had = view_layer.use_pass_z
    view_layer.use_pass_z = had or wanted
    try:
        yield
    finally:
        view_layer.use_pass_z = had


def _render_view_layer(scene):
    """The view layer a capture renders (one layer: the window's if `scene` is shown, else the first)."""
    if bpy.context.scene == scene and bpy.context.view_layer is not None:
        return bpy.context.view_layer
    return scene.view_layers[0]


def _split(n: int, test_every: int) -> list[bool]:
    """True for a held-out view: every `test_every`-th one (the 8th, 16th, ... for 8).

    When that holds out nothing but there are at least two views, the last view is held out so
    transforms_test.json exists; `test_every` 0 holds out nothing.
    """
    is_test = [test_every > 0 and i % test_every == test_every - 1 for i in range(n)]
    if test_every > 0 and n >= 2 and not any(is_test):
        is_test[-1] = True
    return is_test


def _transforms(frames: list[dict], first: CameraIntrinsics, aabb, captured) -> dict:
    # captured_objects: what Show Stylized / Show Originals swap with the imported result (originals.py)
    return {**first.as_dict(), "aabb": aabb, "captured_objects": sorted(obj.name for obj in captured), "frames": frames}


# ---------------------------------------------------------------------------------------------
# The capture.
# ---------------------------------------------------------------------------------------------


def _check_arguments(source, n_views, resolution, samples, test_every, engine) -> tuple[int, int]:
    if source not in SOURCES:
        raise InputError(f"Capture source {source!r} is unknown; use one of {', '.join(repr(s) for s in SOURCES)}.")
    try:
        width, height = (int(v) for v in resolution)
    except (TypeError, ValueError):
        raise InputError(f"Capture resolution {resolution!r} is not a (width, height) pair; give two whole numbers of pixels.") from None
    if width < 4 or height < 4 or width > 65536 or height > 65536:
        raise InputError(f"Capture resolution {width}x{height} is out of range; use 4 to 65536 pixels per side.")
    if source == "auto_rig" and (not isinstance(n_views, int) or n_views < 1):
        raise InputError(f"Number of views {n_views!r} is not a positive whole number; use at least 1 (about 40-100 for a good reconstruction).")
    if not isinstance(samples, int) or samples < 1:
        raise InputError(f"Render samples {samples!r} is not a positive whole number; use at least 1.")
    if not isinstance(test_every, int) or test_every < 0:
        raise InputError(f"test_every {test_every!r} is not a whole number >= 0; use 0 for no test views or e.g. 8.")
    if not isinstance(engine, str) or not engine:
        raise InputError(f"Render engine {engine!r} is not an engine name; use 'CYCLES'.")
    return width, height


def capture_views(
    scene,
    job_root,
    *,
    source: str,
    collection_name: str | None = None,
    objects: Iterable | None = None,
    n_views: int = 40,
    hemisphere: bool = True,
    resolution: tuple[int, int] = (64, 64),
    samples: int = 16,
    engine: str = "CYCLES",
    test_every: int = 8,
    denoise: bool = False,
    seed: int = 0,
    depth: bool = True,
    progress: Callable[[int, int], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> CaptureResult:
    """Render training views of `scene` into JOB/dataset and write the transforms files.

    source: "cameras" (every camera of `collection_name`, or of the scene, sorted by name),
      "animation" (the active camera at each frame of the scene's range), or "auto_rig"
      (`n_views` cameras on a sphere / upper hemisphere around the objects).
    objects: the objects whose bounds make the scene box (and frame the rig); default: every
      render-visible object with geometry. Other visible objects still appear in the images;
      earlier INS results (imported stylized meshes) neither make the box nor appear, unless given.
    depth: also write each view's passes as r_N_depth.exr (its Depth pass, the distance the
      content fit is taught where surfaces are) and name it in the frame's 'depth_file_path'.
    progress(done, total) is called after each view; cancel() is asked before each view and
      True stops the capture with CaptureCancelled. Views already written stay on disk, but
      no transforms file is written, so a cancelled dataset is never mistaken for a whole one.
    Raises InputError (one sentence naming the thing and the fix) for user mistakes.
    """
    started = time.monotonic()
    width, height = _check_arguments(source, n_views, resolution, samples, test_every, engine)
    captured = _capture_objects(scene, list(objects) if objects is not None else None)
    dataset, train_dir, test_dir = _prepare_output(job_root)
    had_render_result = bool(_render_result_images())

    try:
        with preserved_render_settings(scene):
            # Plan every view first, so bad input stops the capture before anything renders.
            bounds = rig_module.objects_bounds(captured, rig_module.evaluated_depsgraph(scene))
            if source == "cameras":
                views = [_View(camera=c) for c in scene_cameras(scene, collection_name)]
            elif source == "animation":
                views = []
                for frame in _animation_frames(scene):
                    scene.frame_set(frame)
                    camera = scene.camera
                    if camera is None:
                        raise InputError(f"Scene '{scene.name}' has no active camera at frame {frame}; set the scene camera (Scene properties) or use the automatic camera rig.")
                    _require_perspective(camera)
                    views.append(_View(camera=camera, frame=frame))
                    # Moving objects: the box holds them at every captured frame.
                    bounds = _union(bounds, rig_module.objects_bounds(captured, rig_module.evaluated_depsgraph(scene)))
            else:
                views = []
            aabb = _padded_aabb(bounds, "The captured objects")

            try:
                apply_capture_settings(scene, width, height, engine=engine, samples=samples, denoise=denoise)
            except TypeError:
                raise InputError(f"Render engine '{engine}' is not available in this Blender; use 'CYCLES'.") from None

            rig_context = rig_module.TemporaryRig(scene) if source == "auto_rig" else nullcontext()
            with rig_context as rig:
                if rig is not None:
                    rig_intrinsics = camera_intrinsics(rig.camera.data, width, height,
                                                       scene.render.pixel_aspect_x, scene.render.pixel_aspect_y)
                    narrow = min(rig_intrinsics.camera_angle_x, rig_intrinsics.camera_angle_y)
                    low, high = (Vector(c) for c in aabb)
                    rig.set_clipping(rig_module.rig_radius(low, high, narrow), 0.5 * (high - low).length)
                    poses = rig_module.auto_rig_poses(low, high, n_views, hemisphere, narrow, seed=seed)
                    views = [_View(pose=p) for p in poses]
                with _depth_pass(_render_view_layer(scene), depth), _results_hidden(scene, captured):
                    result = _render_views(scene, views, rig, train_dir, test_dir, width, height,
                                           test_every, depth, progress, cancel)
    finally:
        if not had_render_result:
            for image in _render_result_images():
                bpy.data.images.remove(image)

    records, intrinsics, images, depths = result
    is_test = _split(len(records), test_every)
    per_frame = any(not k.close_to(intrinsics[0]) for k in intrinsics)
    splits: dict[bool, list[dict]] = {False: [], True: []}
    for record, k, test in zip(records, intrinsics, is_test):
        if per_frame:
            record.update({key: value for key, value in k.as_dict().items() if key not in ("w", "h")})
        splits[test].append(record)
    train_json = dataset / TRAIN_JSON
    test_json = dataset / TEST_JSON if splits[True] else None
    try:
        if test_json is not None:
            write_json_atomic(test_json, _transforms(splits[True], intrinsics[0], aabb, captured))
        write_json_atomic(train_json, _transforms(splits[False], intrinsics[0], aabb, captured))
    except OSError as error:
        raise InputError(f"Cannot write the transforms files into '{dataset}' ({error.strerror or error}); choose an output folder you can write to.") from None
    _remove_stale_images(train_dir, test_dir, images + depths)
    return CaptureResult(
        dataset_dir=dataset, train_json=train_json, test_json=test_json,
        n_train=len(splits[False]), n_test=len(splits[True]), width=width, height=height,
        aabb=aabb, source=source, seconds=time.monotonic() - started,
        per_frame_intrinsics=per_frame, images=images, depths=depths,
    )


@contextmanager
def _results_hidden(scene, captured):
    """Earlier INS results (imported stylized meshes) hidden from the views' renders, then shown
    again: they lie where the objects they stylized are, and a second stylization (another
    painting, say) must learn the scene, not the first result over it. Those given as `captured`
    (chosen by hand) stay."""
    hidden = [obj for obj in scene.objects if rig_module.is_ins_result(obj) and not obj.hide_render and obj not in captured]
    for obj in hidden:
        obj.hide_render = True
    try:
        yield
    finally:
        for obj in hidden:
            try:
                obj.hide_render = False
            except ReferenceError:  # removed meanwhile
                pass


def _render_views(scene, views, rig, train_dir, test_dir, width, height, test_every, depth, progress, cancel):
    """Render every view; returns per-view frame records, intrinsics, image paths and depth paths."""
    is_test = _split(len(views), test_every)
    counters = {False: 0, True: 0}
    records, intrinsics, images, depths = [], [], [], []
    for index, view in enumerate(views):
        if cancel is not None and cancel():
            raise CaptureCancelled(f"Capture cancelled after {index} of {len(views)} views.")
        if view.frame is not None:
            scene.frame_set(view.frame)
        if view.pose is not None:
            rig.set_pose(view.pose)
            camera = rig.camera
        else:
            camera = view.camera
        scene.camera = camera
        # What the render will use: the evaluated camera (constraints, parents, drivers, animation).
        evaluated = camera.evaluated_get(rig_module.evaluated_depsgraph(scene))
        _require_perspective(camera, evaluated.data)
        k = camera_intrinsics(evaluated.data, width, height, scene.render.pixel_aspect_x, scene.render.pixel_aspect_y)
        test = is_test[index]
        folder = test_dir if test else train_dir
        name = f"r_{counters[test]}.png"
        counters[test] += 1
        path = folder / name
        depth_path = path.with_name(path.stem + DEPTH_SUFFIX) if depth else None
        _render_still(scene, path, depth_path)
        record = {"file_path": f"./{folder.name}/{name}", "transform_matrix": camera_to_world(evaluated.matrix_world)}
        if depth_path is not None:
            record["depth_file_path"] = f"./{folder.name}/{depth_path.name}"
            depths.append(depth_path)
        records.append(record)
        intrinsics.append(k)
        images.append(path)
        if progress is not None:
            progress(index + 1, len(views))
    return records, intrinsics, images, depths


def _remove_stale_images(train_dir: Path, test_dir: Path, keep: list[Path]) -> None:
    """Delete r_N.png (and r_N_depth.exr) files left by an earlier, larger capture into the same job."""
    keep_set = {p.resolve() for p in keep}
    for folder in (train_dir, test_dir):
        for path in folder.iterdir():
            if _IMAGE_NAME.fullmatch(path.name) and path.resolve() not in keep_set:
                try:
                    path.unlink()
                except OSError:
                    pass
