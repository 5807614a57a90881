"""Operators: Stylize Scene (modal), Cancel, Resume, Import Result, Add/Remove Style.

Stylize Scene, step by step:
1. gathers the scene settings into a `Request` and validates it before touching anything (at
   least one style image that exists, cameras or objects for the rig, a writable output folder,
   a worker Python that exists); a problem is reported as one sentence and nothing changes;
2. writes the job folder (job.json, copies of the style images in JOB/styles/);
3. captures the training views: in the UI in a background Blender (a copy of the file is saved
   into the job and rendered there, so the interface stays responsive and the user's scene is not
   touched at all), else in this process with `capture.capture_views` (which restores every
   setting it changes);
4. starts the worker and polls it on a timer (stage, progress, ETA, preview in the INS panel);
   Esc or Cancel stops it with a checkpoint (Resume continues it);
5. when done, imports the mesh (one undo step) if "Auto Import" is on.
In background mode (`blender -b`, the bpy module) `execute` does the same, blocking.
"""

import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import bpy
from bpy.props import BoolProperty, CollectionProperty, StringProperty
from bpy.types import Operator, OperatorFileListElement

from ins_core.errors import InputError
from ins_core.job import JobPaths, JobSpec
from ins_core.stylize_options import PALETTE_SPREAD_AUTO

from .registration import class_registrar
from . import job_run, jobs, presets, worker_launch
from . import preferences as prefs_module
from . import properties as props_module

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tga", ".tif", ".tiff", ".webp")
CAPTURE_BLEND = "capture_scene.blend"
SOURCE_KEYS = {"CAMERAS": "cameras", "ANIMATION": "animation", "AUTO_RIG": "auto_rig"}


# ---------------------------------------------------------------------------------------------
# What to do: a request, validated before anything is written.
# ---------------------------------------------------------------------------------------------


@dataclass
class StyleSource:
    path: Path | None = None  # a file on disk
    image: object | None = None  # or a bpy.types.Image

    @property
    def label(self) -> str:
        return f"image '{self.image.name}'" if self.image is not None else f"'{self.path}'"


@dataclass
class Request:
    scene: object
    styles: list[StyleSource]
    mode: str = "nerf"
    preset: presets.QualityPreset = field(default_factory=lambda: presets.get("preview"))
    device: str = "auto"
    outputs: list[str] = field(default_factory=lambda: ["mesh", "render_engine"])
    source: str = "auto_rig"
    collection_name: str | None = None
    objects: list | None = None
    n_views: int = 24
    hemisphere: bool = True
    resolution: tuple[int, int] = (64, 64)
    samples: int = 16
    seed: int = 0
    style_mix: list[float] | None = None
    output_root: Path | None = None  # new job folders go in here...
    job_dir: Path | None = None  # ...unless the job folder itself is given
    python: str = ""
    bundled: bool = True
    overrides: dict = field(default_factory=dict)
    vgg_weights: str | None = None
    allow_download: bool = False
    cache_dir: str | None = None


def request_from_scene(context, scene=None) -> Request:
    """Gather scene.ins and the preferences into a Request (InputError / WorkerError on mistakes)."""
    scene = scene or context.scene
    settings = scene.ins
    prefs = prefs_module.get(context)
    styles = []
    for item in settings.styles:
        if item.image is not None:
            styles.append(StyleSource(image=item.image))
        elif item.filepath.strip():
            styles.append(StyleSource(path=Path(bpy.path.abspath(item.filepath.strip()))))
    preset = presets.get(settings.preset)
    resolution = presets.scene_view_size(preset, scene.render, settings.capture_resolution)
    objects = None
    if settings.only_selected:
        objects = list(getattr(context, "selected_objects", []) or [])
        if not objects:
            raise InputError("'Selected Only' is on but nothing is selected; select the objects to stylize or turn the option off.")
    python, bundled = prefs_module.worker_python(prefs)
    mix = props_module.style_mix(settings)
    if mix is not None and len(mix) != len(styles):
        mix = None  # empty rows do not count as styles
    return Request(
        scene=scene, styles=styles, mode=settings.mode.lower(), preset=preset,
        device=props_module.device_for_job(settings, prefs.device),
        outputs=props_module.outputs_for_job(settings), source=SOURCE_KEYS[settings.capture_source],
        collection_name=settings.camera_collection.name if settings.camera_collection else None,
        objects=objects, n_views=settings.n_views or preset.capture_views, hemisphere=settings.hemisphere,
        resolution=resolution, samples=settings.capture_samples or preset.capture_samples, seed=settings.seed,
        style_mix=mix, output_root=props_module.output_root(settings), python=python, bundled=bundled,
        overrides={**presets.job_overrides(resolution), "stroke_scale": round(float(settings.stroke_scale), 3),
                   "palette_weight": round(float(settings.palette_weight), 3), "palette_spread": PALETTE_SPREAD_AUTO if settings.palette_spread_auto else round(float(settings.palette_spread), 3),
                   "style_detail": settings.style_detail.lower(), "mesh_keep_unseen": bool(settings.keep_unseen)},
        vgg_weights=prefs_module.vgg_weights(prefs), allow_download=prefs_module.downloads_allowed(prefs),
        cache_dir=prefs_module.cache_dir(prefs),
    )


def _image_file(image) -> Path | None:
    if image.source != "FILE" or not image.filepath:
        return None
    return Path(bpy.path.abspath(image.filepath, library=image.library))


def validate(request: Request) -> None:
    """Every check that can fail before anything is written; InputError names the fix."""
    if not request.styles:
        raise InputError("No style image is set; add at least one style image in the INS panel (Style Images > +).")
    for style in request.styles:
        if style.image is not None:
            image = style.image
            if image.packed_file is not None or image.source == "GENERATED":
                continue
            path = _image_file(image)
            if path is None:
                if image.has_data:
                    continue  # saved from memory as a PNG copy
                raise InputError(f"The style image '{image.name}' has no pixels or file; pick an image file or another image.")
            if not path.is_file():
                raise InputError(f"The style image '{image.name}' points to the missing file '{path}'; fix its path or pick another image.")
            continue
        path = style.path
        if not path.exists():
            raise InputError(f"The style image '{path}' does not exist; choose an existing image file.")
        if not path.is_file():
            raise InputError(f"The style image '{path}' is not a file; choose an image file (PNG, JPEG, ...).")
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            raise InputError(f"The style image '{path}' is not a supported image ({', '.join(IMAGE_SUFFIXES)}); choose a PNG or JPEG file.")
        if not os.access(path, os.R_OK):
            raise InputError(f"The style image '{path}' cannot be read (permission denied); choose a readable file.")
    if request.style_mix is not None and len(request.style_mix) != len(request.styles):
        raise InputError(f"The style mix has {len(request.style_mix)} weights for {len(request.styles)} styles; give one weight per style.")
    _validate_views(request)
    target = request.job_dir if request.job_dir is not None else request.output_root
    if target is None:
        raise InputError("No output folder is set; choose an output folder in the INS panel.")
    check_writable(target)


def _validate_views(request: Request) -> None:
    from . import rig as rig_module
    from .capture import scene_cameras

    scene = request.scene
    if request.source == "cameras":
        scene_cameras(scene, request.collection_name)  # raises a clear InputError when there are none
    elif request.source == "animation":
        if scene.camera is None:
            raise InputError(f"Scene '{scene.name}' has no active camera; set the scene camera or use the automatic camera rig.")
    elif request.source == "auto_rig":
        if request.n_views < 1:
            raise InputError(f"The automatic rig needs at least 1 view, not {request.n_views}; use about 24-100 views.")
    else:
        raise InputError(f"Capture source {request.source!r} is unknown; use 'cameras', 'animation' or 'auto_rig'.")
    objects = request.objects if request.objects is not None else rig_module.renderable_objects(scene)
    if not objects:
        raise InputError(f"Scene '{scene.name}' has no visible objects to stylize; add a mesh or make its objects visible in renders.")


def check_writable(folder: Path) -> None:
    """Create `folder` if needed and prove a file can be written there."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".ins_write_test_{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        reason = error.strerror or str(error)
        raise InputError(f"Cannot write to the output folder '{folder}' ({reason}); choose a folder you can write to.") from None


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_")[:40] or "scene"


def new_job_dir(root: Path, scene_name: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path(root) / f"{_slug(scene_name)}_{stamp}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}_{n}")
    return path


def _copy_style(style: StyleSource, folder: Path, index: int) -> str:
    if style.image is None:
        name = f"{index:02d}_{_slug(style.path.stem)}{style.path.suffix.lower()}"
        shutil.copyfile(style.path, folder / name)
        return name
    image = style.image
    stem = f"{index:02d}_{_slug(Path(image.name).stem)}"
    path = _image_file(image)
    if image.packed_file is not None:
        suffix = path.suffix.lower() if path is not None and path.suffix.lower() in IMAGE_SUFFIXES else ".png"
        (folder / f"{stem}{suffix}").write_bytes(bytes(image.packed_file.data))
        return f"{stem}{suffix}"
    if path is not None and path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not image.is_dirty:
        shutil.copyfile(path, folder / f"{stem}{path.suffix.lower()}")
        return f"{stem}{path.suffix.lower()}"
    # Generated or edited in Blender: save a copy (the image's own path and state stay as they are).
    suffix = {"JPEG": ".jpg", "BMP": ".bmp", "TARGA": ".tga", "TIFF": ".tif", "WEBP": ".webp"}.get(image.file_format, ".png")
    target = folder / f"{stem}{suffix}"
    try:
        image.save(filepath=str(target), save_copy=True)
    except RuntimeError as error:
        raise InputError(f"Cannot save the style image '{image.name}' into the job ({error}); save the image to a file and pick that file.") from None
    return target.name


def create_job(request: Request) -> JobPaths:
    """Write the job folder: sub-folders, copies of the style images, job.json."""
    root = request.job_dir if request.job_dir is not None else new_job_dir(request.output_root, request.scene.name)
    job = JobPaths(Path(root).resolve())
    try:
        job.make_dirs()
        styles = [f"styles/{_copy_style(s, job.styles_dir, i)}" for i, s in enumerate(request.styles)]
        spec = JobSpec(mode=request.mode, styles=styles, preset=request.preset.key, overrides=dict(request.overrides),
                       device=request.device, outputs=list(request.outputs), seed=int(request.seed),
                       vgg_weights=request.vgg_weights, allow_download=bool(request.allow_download),
                       cache_dir=request.cache_dir, style_mix=request.style_mix)
        spec.save(job.job_json)
    except OSError as error:
        raise InputError(f"Cannot write the job folder '{job.root}' ({error.strerror or error}); choose an output folder you can write to.") from None
    return job


def capture_in_process(request: Request, job: JobPaths, progress=None, cancel=None):
    """Render the views in this Blender (blocking); the scene is restored afterwards."""
    from .capture import capture_views

    return capture_views(
        request.scene, job.root, source=request.source, collection_name=request.collection_name,
        objects=request.objects, n_views=request.n_views, hemisphere=request.hemisphere,
        resolution=request.resolution, samples=request.samples, seed=request.seed,
        progress=progress, cancel=cancel,
    )


def can_capture_in_background(context) -> bool:
    prefs = prefs_module.get(context)
    return (not bpy.app.background and bool(bpy.app.binary_path) and os.path.isfile(bpy.app.binary_path)
            and bool(getattr(prefs, "capture_in_background", True)))


def capture_subprocess_argv(request: Request, job: JobPaths) -> list[str]:
    """Save a copy of the file into the job and return the background Blender command."""
    blend = job.root / CAPTURE_BLEND
    bpy.ops.wm.save_as_mainfile(filepath=str(blend), copy=True, check_existing=False, compress=False, relative_remap=True)
    package_dir = Path(__file__).resolve().parent
    paths = [str(package_dir.parent), worker_launch.ins_core_root()]
    expr = (f"import sys; sys.path[:0] = {paths!r}; "
            f"import {package_dir.name}.batch as b; sys.exit(b.capture_main())")
    args = ["--capture-job", str(job.root), "--scene", request.scene.name, "--source", request.source,
            "--views", str(request.n_views), "--resolution", str(request.resolution[0]), str(request.resolution[1]),
            "--samples", str(request.samples), "--seed", str(request.seed), "--delete-blend"]
    if not request.hemisphere:
        args.append("--full-sphere")
    if request.collection_name:
        args += ["--collection", request.collection_name]
    if request.objects is not None:
        for obj in request.objects:
            args += ["--object", obj.name]
    return [bpy.app.binary_path, "-b", "--factory-startup", str(blend), "--python-exit-code", "1",
            "--python-expr", expr, "--", *args]


def _remove_new_job(job: JobPaths | None) -> None:
    """Remove a job folder this operator just created (nothing else is ever deleted)."""
    if job is not None and (job.root / "job.json").is_file():
        shutil.rmtree(job.root, ignore_errors=True)


def _unexpected(error: Exception) -> str:
    import traceback

    traceback.print_exc()
    return f"INS stopped on an unexpected error ({type(error).__name__}: {error}); the details are in the system console."


# ---------------------------------------------------------------------------------------------
# Operators.
# ---------------------------------------------------------------------------------------------


class INS_OT_stylize_scene(Operator):
    """Capture the scene, stylize it with the chosen style images in a background worker, and import the result"""

    bl_idname = "ins.stylize_scene"
    bl_label = "Stylize Scene"
    # UNDO without REGISTER: the finished import is one undo step, but Repeat Last and the
    # Adjust Last Operation panel cannot re-run a job that takes minutes (they would call
    # execute(), which blocks the interface until the job ends).
    bl_options = {"UNDO"}

    resume: BoolProperty(name="Resume", default=False, options={"HIDDEN", "SKIP_SAVE"},
                         description="Continue the latest job of the scene instead of starting a new one")

    _run = None
    _timer = None
    _outputs = ()
    _scene_name = ""

    @classmethod
    def poll(cls, context):
        scene = getattr(context, "scene", None)
        return scene is not None and hasattr(scene, "ins") and jobs.active_run(scene) is None

    # -- set-up shared by invoke and execute ---------------------------------------------------

    def _prepare(self, context, background_capture: bool):
        """Validate, write the job, capture (in process or planned in background); returns a JobRun.

        Raises InputError / WorkerError; on failure the new job folder is removed again.
        """
        scene = context.scene
        if self.resume:
            return self._prepare_resume(context)
        request = request_from_scene(context)
        validate(request)
        job = None
        try:
            job = create_job(request)
            capture_argv = None
            if background_capture:
                capture_argv = capture_subprocess_argv(request, job)
            else:
                wm = context.window_manager
                wm.progress_begin(0, 1)
                try:
                    scene.ins.status = "CAPTURING"
                    capture_in_process(request, job, progress=lambda done, total: wm.progress_update(done / max(1, total)))
                finally:
                    wm.progress_end()
            run = job_run.JobRun(job.root, request.python, bundled=request.bundled, capture_argv=capture_argv,
                              scene_name=scene.name)
            run.start()
        except BaseException:
            _remove_new_job(job)
            raise
        self._outputs = tuple(request.outputs)
        return run

    def _prepare_resume(self, context):
        scene = context.scene
        text = scene.ins.job_dir.strip()
        if not text:
            raise InputError("There is no job to resume; press Stylize Scene to start one.")
        job = JobPaths(Path(bpy.path.abspath(text)))
        if not job.job_json.is_file() or not (job.dataset_dir / "transforms_train.json").is_file():
            raise InputError(f"The job folder '{job.root}' is incomplete (no job.json or captured views); start a new job with Stylize Scene.")
        spec = JobSpec.load(job.job_json)
        python, bundled = prefs_module.worker_python(prefs_module.get(context))
        run = job_run.JobRun(job.root, python, bundled=bundled, scene_name=scene.name).start()
        self._outputs = tuple(spec.outputs)
        return run

    def _fail(self, context, error) -> set:
        message = str(error)
        # Nothing was started: the status stays as it was; the panel shows the sentence.
        context.scene.ins.message = message
        self.report({"ERROR"}, message)
        return {"CANCELLED"}

    def _before(self, context):
        scene = context.scene
        settings = scene.ins
        return settings.status, settings.message

    # -- UI: modal -----------------------------------------------------------------------------

    def invoke(self, context, event):
        scene = context.scene
        if jobs.active_run(scene) is not None:
            self.report({"ERROR"}, "A job is already running for this scene; cancel it first.")
            return {"CANCELLED"}
        status = self._before(context)
        try:
            run = self._prepare(context, can_capture_in_background(context))
        except (InputError, worker_launch.WorkerError) as error:
            context.scene.ins.status, context.scene.ins.message = status
            return self._fail(context, error)
        except Exception as error:  # noqa: BLE001 - a bug: one sentence here, the traceback in the console
            context.scene.ins.status, context.scene.ins.message = status
            return self._fail(context, _unexpected(error))
        self._run = run
        self._scene_name = scene.name
        jobs.add_run(scene, run)
        wm = context.window_manager
        self._timer = wm.event_timer_add(0.25, window=context.window)
        wm.modal_handler_add(self)
        self.report({"INFO"}, "INS: job started; Esc cancels.")
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        run = self._run
        scene = bpy.data.scenes.get(self._scene_name) or context.scene
        if event.type == "ESC" and event.value == "PRESS" and not run.done:
            jobs.cancel_scene(scene) or run.request_cancel()
            self.report({"INFO"}, "INS: cancelling (saving a checkpoint)...")
            return {"RUNNING_MODAL"}
        if event.type == "TIMER":
            if jobs.poll_scene(scene) is None and not run.done:
                run.update()  # the scene was renamed: keep the run moving anyway
            if run.done:
                context.window_manager.event_timer_remove(self._timer)
                self._timer = None
                return self._finish(scene, run)
        return {"PASS_THROUGH"}

    def cancel(self, context):
        # Blender ends the operator (window closed, file loaded): stop the worker with a checkpoint.
        if self._timer is not None:
            try:
                context.window_manager.event_timer_remove(self._timer)
            except (ValueError, RuntimeError):
                pass
        if self._run is not None and not self._run.done:
            self._run.request_cancel()

    def _finish(self, scene, run) -> set:
        if run.status == "finished":
            message = run.message
            if scene.ins.auto_import and "mesh" in self._outputs:
                from . import importer

                try:
                    obj = importer.import_result(scene, run.job.root)
                    message = f"INS: finished; added '{obj.name}' to '{importer.COLLECTION}'."
                except InputError as error:
                    scene.ins.message = f"INS: finished, but the mesh could not be imported: {error}"
                    self.report({"WARNING"}, scene.ins.message)
                    return {"FINISHED"}
            scene.ins.message = message
            self.report({"INFO"}, message)
            return {"FINISHED"}
        if run.status == "cancelled":
            self.report({"WARNING"}, f"INS: {run.message}")
        else:
            self.report({"ERROR"}, f"INS: {run.message}")
        return {"CANCELLED"}

    # -- scripts and background mode: blocking -------------------------------------------------

    def execute(self, context):
        scene = context.scene
        status = self._before(context)
        try:
            run = self._prepare(context, background_capture=False)
        except (InputError, worker_launch.WorkerError) as error:
            scene.ins.status, scene.ins.message = status
            return self._fail(context, error)
        except Exception as error:  # noqa: BLE001
            scene.ins.status, scene.ins.message = status
            return self._fail(context, _unexpected(error))
        from .batch import _printer

        try:
            run.wait(on_events=_printer(print))
        except KeyboardInterrupt:
            if run.current is not None:
                run.current.cancel()
            run.update()
        jobs.sync_scene(scene, run)
        return self._finish(scene, run)


class INS_OT_cancel(Operator):
    """Stop the running job after the current step; it keeps a checkpoint so Resume continues it"""

    bl_idname = "ins.cancel"
    bl_label = "Cancel"
    bl_options = {"INTERNAL"}

    @classmethod
    def poll(cls, context):
        scene = getattr(context, "scene", None)
        return scene is not None and jobs.active_run(scene) is not None

    def execute(self, context):
        if jobs.cancel_scene(context.scene):
            self.report({"INFO"}, "INS: cancelling (saving a checkpoint)...")
            return {"FINISHED"}
        self.report({"WARNING"}, "INS: no job is running for this scene.")
        return {"CANCELLED"}


class INS_OT_import_result(Operator):
    """Add the stylized mesh of a finished job to the 'INS Results' collection"""

    bl_idname = "ins.import_result"
    bl_label = "Import Result"
    bl_options = {"REGISTER", "UNDO"}

    job_dir: StringProperty(name="Job Folder", subtype="DIR_PATH", default="",
                            description="Finished job folder (empty: the scene's latest job)")
    pack_texture: BoolProperty(name="Pack Texture", default=False,
                               description="Store the texture inside the .blend file (the job folder is no longer needed)")

    @classmethod
    def poll(cls, context):
        return getattr(context, "scene", None) is not None

    def execute(self, context):
        from . import importer

        scene = context.scene
        job_dir = self.job_dir.strip() or (scene.ins.job_dir.strip() if hasattr(scene, "ins") else "")
        if not job_dir:
            self.report({"ERROR"}, "There is no finished job to import; run Stylize Scene first or give a job folder.")
            return {"CANCELLED"}
        try:
            obj = importer.import_result(scene, job_dir, pack_texture=self.pack_texture)
        except InputError as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        self.report({"INFO"}, f"Added '{obj.name}' to '{importer.COLLECTION}'.")
        return {"FINISHED"}


class INS_OT_add_style(Operator):
    """Add style images (paintings, textures, photos) to the scene's style list"""

    bl_idname = "ins.add_style"
    bl_label = "Add Style Image"
    bl_options = {"REGISTER", "UNDO"}

    filepath: StringProperty(subtype="FILE_PATH", options={"SKIP_SAVE"})
    directory: StringProperty(subtype="DIR_PATH", options={"HIDDEN", "SKIP_SAVE"})
    files: CollectionProperty(type=OperatorFileListElement, options={"HIDDEN", "SKIP_SAVE"})
    image_name: StringProperty(name="Image", default="", options={"SKIP_SAVE"},
                               description="Add a loaded Blender image instead of a file")
    filter_image: BoolProperty(default=True, options={"HIDDEN", "SKIP_SAVE"})
    filter_folder: BoolProperty(default=True, options={"HIDDEN", "SKIP_SAVE"})

    def invoke(self, context, event):
        if self.image_name or self.filepath:
            return self.execute(context)
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}

    def execute(self, context):
        settings = context.scene.ins
        added = 0
        if self.image_name:
            image = bpy.data.images.get(self.image_name)
            if image is None:
                self.report({"ERROR"}, f"There is no image named '{self.image_name}'; load it first or pick a file.")
                return {"CANCELLED"}
            item = settings.styles.add()
            item.image = image
            added = 1
        else:
            paths = []
            if self.files and self.directory:
                paths = [os.path.join(self.directory, f.name) for f in self.files if f.name]
            if not paths and self.filepath:
                paths = [self.filepath]
            for path in paths:
                item = settings.styles.add()
                item.filepath = path
                added += 1
        if not added:
            self.report({"ERROR"}, "No style image was chosen; pick one or more image files.")
            return {"CANCELLED"}
        settings.active_style_index = len(settings.styles) - 1
        return {"FINISHED"}


class INS_OT_remove_style(Operator):
    """Remove the selected style image from the list (the file stays where it is)"""

    bl_idname = "ins.remove_style"
    bl_label = "Remove Style Image"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        scene = getattr(context, "scene", None)
        return scene is not None and hasattr(scene, "ins") and len(scene.ins.styles) > 0

    def execute(self, context):
        settings = context.scene.ins
        index = min(max(0, settings.active_style_index), len(settings.styles) - 1)
        settings.styles.remove(index)
        settings.active_style_index = max(0, min(index, len(settings.styles) - 1))
        return {"FINISHED"}


CLASSES = (INS_OT_stylize_scene, INS_OT_cancel, INS_OT_import_result, INS_OT_add_style, INS_OT_remove_style)


register, unregister = class_registrar(CLASSES)
