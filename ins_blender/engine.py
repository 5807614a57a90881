"""The "INS" render engine: renders a finished job's stylized field from any camera.

F12 (and `blender -b file.blend -E INS -f 1`) renders the scene camera at the scene resolution
(resolution percentage and pixel aspect included; only the render region when one is set), with
Neural Render > Render Samples rays a pixel: the camera's `matrix_world` and its intrinsics
(`camera_model.camera_intrinsics`, the same maths the capture used: a perspective camera's pinhole, an
orthographic camera's pixels per unit, its rays parallel) go as a `RenderCommand` to a long-lived
render server (`python -m ins_core.worker JOB --serve`), started once per job and reused for
every frame; the engine waits for the `rendered` event (showing progress, honouring Esc via
`test_break()`), then loads the PNG into the render result (`RenderLayer.load_from_file`, which
turns the top-down PNG rows into Blender's bottom-up ones and the 8-bit sRGB values into linear
light; with the "Standard" view transform the colours come out exactly as rendered). As Cycles
does, it shows the world's colour where the field is empty unless Film > Transparent is on
(`world.py`), and fills the Depth pass when the view layer has Z on (the distance along the
camera's axis, 1e10 where there is no surface), so the result can be Z-combined with other
renders in the compositor, the Mist pass when it has Mist on (by the world's Mist Pass settings,
as Cycles makes it), and the Normal pass when it has Normal on (the field's world-space normals
facing the camera, for relighting and masks in the compositor). A camera's Depth of Field blurs
what lies off its plane in focus, each of a pixel's rays from its own point of the aperture
(`depth_of_field.py`, as Cycles takes the settings), in the viewport too when it looks through the
camera (noise at first, as Cycles' first samples are, then 16 rays a pixel once the view is still).
With Motion Blur on (Render Properties), a camera moving during the shutter smears the frame: each
ray is cast from the camera's pose at its own time (`motion_blur.py`; F12 only). The field stands
where *INS > Neural Render > Placement* puts it (the imported mesh after Import Result: move the mesh
and the field follows, in F12 and the viewport; `placement.py`), and with Motion Blur that object's
own motion blurs it too. Hide that object from renders (or Show Originals) and F12 leaves the field
out; hide it in the viewport and the preview does. Every other stylized mesh the render shows
brings its own job's field, placed (and, with Motion Blur, blurred) by itself, into the same frame
(`shown_fields.py`): two parts of a scene stylized with two paintings, or a copy of a stylized
mesh, render together; with no field left to show, the frame is the world alone.

The style mix is read from the scene's style weights at each frame (they are animatable).
In the viewport (never in background mode) a preview renders at 1/8 of the region size first and
refines to 1/4, 1/2 and full size while the view stays still, then at Viewport Samples rays a
pixel when those are more than one (`ViewportPreview`); orthographic views draw too, and only the
render region when one is set (the scene's through the camera, else View > Render Region), as Cycles.

The job rendered is `scene.ins.render_job_dir`, else the latest job `scene.ins.job_dir`; without a
finished job the engine says so in one sentence and leaves the result empty.
"""

from __future__ import annotations

import os
import struct
import time

import bpy

from ins_core.errors import InputError

from . import worker_launch
from .camera_model import camera_intrinsics, camera_to_world
from .depth_of_field import depth_of_field
from .motion_blur import camera_motions
from .placement import field_hidden
from .render_client import EngineError, get_server, mix_for_job, pass_path, png_size, read_pass, stop_servers
from .shown_fields import frame_fields
from .viewport_preview import ViewportPreview, draw_colour, draw_image, render_border, viewport_view
from .world import background_colour, empty_passes, mist_settings


def _camera_view(scene, depsgraph, camera_object, width: int, height: int):
    """(camera-to-world, intrinsics, orthographic, depth of field or None) of the camera that renders."""
    if camera_object is None:
        raise EngineError(f"Scene '{scene.name}' has no active camera; set the scene camera in the Scene properties.")
    evaluated = camera_object.evaluated_get(depsgraph) if depsgraph is not None else camera_object
    if evaluated.data.type not in ("PERSP", "ORTHO"):
        raise EngineError(f"Camera '{camera_object.name}' is panoramic; the INS engine renders perspective and orthographic "
                          "cameras, so set its Type to one of them in the camera properties.")
    k = camera_intrinsics(evaluated.data, width, height, scene.render.pixel_aspect_x, scene.render.pixel_aspect_y)
    return camera_to_world(evaluated.matrix_world), k, evaluated.data.type == "ORTHO", depth_of_field(evaluated)


def _single(value: float) -> float:
    """`value` rounded to single precision, as Blender's C code holds it."""
    return struct.unpack("f", struct.pack("f", value))[0]


def render_region(scene, width: int, height: int) -> tuple[int, int, int, int]:
    """(left, bottom, width, height) in pixels of what a width x height frame renders: all of it,
    or the render region (Ctrl+B in the camera view) as Blender cuts it, each border times the
    size in single precision and truncated, so the pixels land exactly where Blender puts them."""
    settings = scene.render
    if not settings.use_border:
        return 0, 0, width, height
    left, right = (int(_single(_single(v) * width)) for v in (settings.border_min_x, settings.border_max_x))
    bottom, top = (int(_single(_single(v) * height)) for v in (settings.border_min_y, settings.border_max_y))
    if right <= left or top <= bottom:
        raise EngineError("The render region is empty at this resolution; draw a larger one (Ctrl+B in the camera view) "
                          "or turn Render Region off in the Output properties.")
    return left, bottom, right - left, top - bottom


class INSRenderEngine(bpy.types.RenderEngine):
    bl_idname = "INS"
    bl_label = "INS"
    bl_use_preview = False
    bl_use_postprocess = True
    bl_use_shading_nodes_custom = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._view = None  # viewport state

    # -- final render --------------------------------------------------------------------------

    def render(self, depsgraph):
        scene = depsgraph.scene
        try:
            self._render(scene, depsgraph)
        except (EngineError, worker_launch.WorkerError, InputError) as error:
            self.report({"ERROR"}, f"INS: {error}")
            try:
                self.error_set(str(error))
            except (AttributeError, RuntimeError):
                pass

    def update_render_passes(self, scene=None, renderlayer=None):
        """The passes the engine fills: Combined, Depth when the view layer asks for Z, Mist and Normal."""
        self.register_pass(scene, renderlayer, "Combined", 4, "RGBA", "COLOR")
        if renderlayer.use_pass_z:
            self.register_pass(scene, renderlayer, "Depth", 1, "Z", "VALUE")
        if renderlayer.use_pass_mist:
            self.register_pass(scene, renderlayer, "Mist", 1, "Z", "VALUE")
        if renderlayer.use_pass_normal:
            self.register_pass(scene, renderlayer, "Normal", 3, "XYZ", "VECTOR")

    def _render(self, scene, depsgraph) -> None:
        frame_width, frame_height = int(self.resolution_x), int(self.resolution_y)
        camera = self.camera_override or scene.camera
        c2w, k, orthographic, lens = _camera_view(scene, depsgraph, camera, frame_width, frame_height)
        left, bottom, width, height = render_region(scene, frame_width, frame_height)
        view_layer = depsgraph.view_layer
        with_depth = view_layer is not None and view_layer.use_pass_z
        mist = mist_settings(scene) if view_layer is not None and view_layer.use_pass_mist else None
        with_normal = view_layer is not None and view_layer.use_pass_normal
        # The engine's own field where its Placement puts it, and every other stylized mesh shown.
        hidden = field_hidden(scene, depsgraph)
        fields = frame_fields(scene, depsgraph, hidden)
        if fields is None:  # the field's object is hidden from renders: the world alone, no server needed
            self._write_result(width, height, view_layer, None, empty_passes(width, height, background_colour(scene),
                                                                             with_depth, mist is not None, with_normal))
            self.update_stats("", f"INS: {hidden}")
            return
        # None unless Motion Blur is on and the camera moves (relative to each field's object)
        motion = fields.with_motions(camera_motions(scene, camera, self.frame_set, depsgraph, fields.objects))
        # Only the render region, when one is set: its pixels through the frame's camera.
        cx, cy = k.cx - left, k.cy - (frame_height - bottom - height)
        mix = mix_for_job(scene, fields.job) if fields.own else None
        self.update_stats("", "INS: starting the render server")
        server = get_server(fields.job)
        started = time.monotonic()

        def waiting(what):
            def tick():
                self.update_stats("", f"INS: {what} ({time.monotonic() - started:.0f} s)")
            return tick

        if not server.wait_ready(should_stop=self.test_break, on_wait=waiting("loading the stylized model")):
            return
        self.update_progress(0.1)
        samples = int(scene.ins.render_samples)
        path = server.render(c2w, k.fl_x, k.fl_y, cx, cy, width, height, style_mix=mix, background=background_colour(scene),
                             depth=with_depth, mist=mist, normal=with_normal, orthographic=orthographic, samples=samples,
                             lens=lens, motion=motion, placement=fields.placement, others=fields.others, should_stop=self.test_break,
                             on_wait=waiting(f"rendering {width}x{height}, {samples} samples a pixel"))
        if path is None:
            return
        try:
            size = png_size(path)
            if size != (width, height):
                raise EngineError(f"The INS render server returned a {size[0]}x{size[1]} image for a {width}x{height} render; see the log '{server.worker.stderr_path}'.")
            wanted = (("Depth", "depth", 1, with_depth), ("Mist", "mist", 1, mist is not None), ("Normal", "normal", 3, with_normal))
            passes = {name: read_pass(pass_path(path, suffix), width, height, channels)
                      for name, suffix, channels, asked in wanted if asked}
            self._write_result(width, height, view_layer, path, passes)
        finally:
            for leftover in (path, *(pass_path(path, suffix) for suffix in ("depth", "mist", "normal"))):
                try:
                    os.unlink(leftover)
                except OSError:
                    pass
        self.update_progress(1.0)
        self.update_stats("", f"INS: rendered in {time.monotonic() - started:.1f} s")

    def _write_result(self, width: int, height: int, view_layer, png, passes: dict) -> None:
        """The render result: the Combined pass from `png` (or from `passes`), then the other passes."""
        # (With a render region, the result's corner is the region's.)
        result = self.begin_result(0, 0, width, height, layer=view_layer.name if view_layer is not None else "")
        try:
            if png is not None:  # top-down sRGB PNG -> bottom-up linear render result (Blender converts both)
                result.layers[0].load_from_file(str(png))
            for name, values in passes.items():
                result.layers[0].passes[name].rect.foreach_set(values)
        finally:
            self.end_result(result)

    # -- viewport ------------------------------------------------------------------------------

    def view_update(self, context, depsgraph):
        pass  # view_draw compares the view (camera, size, style mix) itself

    def view_draw(self, context, depsgraph):
        if bpy.app.background:
            return
        if self._view is None:
            self._view = ViewportPreview(self)
        region, rv3d, space, scene = context.region, context.region_data, context.space_data, depsgraph.scene
        camera = (space.camera if space.use_local_camera else None) or scene.camera  # the camera the view looks through
        camera = camera.evaluated_get(depsgraph) if camera is not None else None
        hidden = field_hidden(scene, depsgraph)  # the field's object hidden in this viewport: the others, or the world alone
        border = fields = None
        with self._view.reporting():
            border = render_border(scene, space, rv3d, region.width, region.height, camera)
            fields = frame_fields(scene, depsgraph, hidden)
            if fields is not None:
                lens = depth_of_field(camera) if camera is not None else None  # (viewport_view keeps it in the camera view)
                # moving a field's object redraws with it
                self._view.update(scene, viewport_view(region, rv3d, space.clip_end, border, lens, fields.placement, fields.others),
                                  fields.job, fields.own)
        with self._view.reporting():
            if fields is None and hidden is not None:
                draw_colour(self, scene, background_colour(scene), border or (0, 0, region.width, region.height))
            else:
                draw_image(self, scene, self._view.image(), self._view.shown_border or (0, 0, region.width, region.height))
        self.update_stats("", f"INS: {hidden if fields is None and hidden else self._view.status()}")

    def __del__(self):
        view = getattr(self, "_view", None)
        if view is not None:
            view.free()


CLASSES = (INSRenderEngine,)

# Built-in panels for the INS engine beyond those Blender means for any engine (which list
# BLENDER_RENDER among theirs: the object's data, the camera's lens, Output's format and frame
# range, ...): colour management, Film > Transparent, the passes, the camera's depth of field, the
# world's Surface (its Background colour lies behind the field).
_COMPAT_PANELS = ("RENDER_PT_color_management", "RENDER_PT_color_management_curves",
                  "RENDER_PT_color_management_display_settings", "RENDER_PT_color_management_white_balance",
                  "RENDER_PT_opengl_film",  # Film > Transparent (the world's colour behind the field, or none)
                  "VIEWLAYER_PT_layer_passes",  # the parent of the engine's own "Data" passes panel
                  "DATA_PT_camera_dof", "DATA_PT_camera_dof_aperture",
                  "EEVEE_WORLD_PT_surface")  # the world's node view (any engine's output node)
# What the INS engine does not render, though Blender offers it to any engine.
_NOT_RENDERED = ("freestyle", "stereoscopy", "output_views")
_ADDED_TO: list = []  # the panels register() added the engine to


def _panels_for_ins() -> list:
    generic = [panel for panel in bpy.types.Panel.__subclasses__()
               if "BLENDER_RENDER" in getattr(panel, "COMPAT_ENGINES", ())
               and not any(word in panel.__name__.lower() for word in _NOT_RENDERED)]
    named = [getattr(bpy.types, name, None) for name in _COMPAT_PANELS]
    return generic + [panel for panel in named if panel is not None and hasattr(panel, "COMPAT_ENGINES")]


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    for panel in _panels_for_ins():
        if "INS" not in panel.COMPAT_ENGINES:
            panel.COMPAT_ENGINES.add("INS")
            _ADDED_TO.append(panel)


def unregister() -> None:
    stop_servers()
    while _ADDED_TO:
        _ADDED_TO.pop().COMPAT_ENGINES.discard("INS")
    for cls in reversed(CLASSES):
        if getattr(cls, "is_registered", False):
            bpy.utils.unregister_class(cls)
