"""What Stylize Scene is asked to do: the scene's INS settings and the preferences gathered into a
`Request`, validated before anything is written (one sentence naming the fix), then the job
folder (job.json and copies of the style images) and the capture of the training views, in this
Blender or in a background one. Shared by the operators and the headless command (`batch.py`).
"""

import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import bpy

from ins_core.errors import InputError
from ins_core.job import JobPaths, JobSpec
from ins_core.stylize_options import PALETTE_SPREAD_AUTO

from . import presets, worker_launch
from . import preferences as prefs_module
from . import properties as props_module

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tga", ".tif", ".tiff", ".webp")
CAPTURE_BLEND = "capture_scene.blend"
SOURCE_KEYS = {"CAMERAS": "cameras", "ANIMATION": "animation", "AUTO_RIG": "auto_rig"}


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
                   "style_detail": settings.style_detail.lower(), "mesh_keep_unseen": bool(settings.keep_unseen),
                   "mesh_smooth": int(settings.mesh_smoothing)},
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
            f"import {package_dir.name}.background_capture as b; sys.exit(b.capture_main())")
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
