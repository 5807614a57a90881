"""The "INS" render engine: renders a finished job's stylized field from any camera.

F12 (and `blender -b file.blend -E INS -f 1`) renders the scene camera at the scene resolution
(resolution percentage and pixel aspect included): the camera's `matrix_world` and pinhole
intrinsics (`capture.camera_intrinsics`, the same maths the capture used) go as a
`RenderCommand` to a long-lived render server (`python -m ins_core.worker JOB --serve`), started
once per job and reused for every frame; the engine waits for the `rendered` event (showing
progress, honouring Esc via `test_break()`), then loads the PNG into the render result
(`RenderLayer.load_from_file`, which turns the top-down PNG rows into Blender's bottom-up ones
and the 8-bit sRGB values into linear light; with the "Standard" view transform the colours come
out exactly as rendered). As Cycles does, it shows the world's colour where the field is empty
unless Film > Transparent is on (`world.py`), and fills the Depth pass when the view layer has Z
on (the distance along the camera's axis, 1e10 where there is no surface), so the result can be
Z-combined with other renders in the compositor.

The style mix is read from the scene's style weights at each frame (they are animatable).
In the viewport (never in background mode) a preview renders at 1/8 of the region size first and
refines to 1/4, 1/2 and full size while the view stays still (`ViewportPreview`).

The job rendered is `scene.ins.render_job_dir`, else the latest job `scene.ins.job_dir`; without a
finished job the engine says so in one sentence and leaves the result empty.
"""

from __future__ import annotations

import array
import math
import os
import shutil
import struct
import sys
import tempfile
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import bpy

from ins_core.errors import InputError
from ins_core.job import JobPaths, JobSpec
from ins_core.protocol import RenderCommand

from . import worker_launch, worker_process
from .capture import camera_intrinsics, camera_to_world
from .world import background_colour

READY_TIMEOUT_S = 600.0  # loading torch and the model
RENDER_TIMEOUT_S = 3600.0
VIEWPORT_LEVELS = (0.125, 0.25, 0.5, 1.0)
VIEWPORT_IMAGE = ".INS Viewport"


class EngineError(Exception):
    """One sentence for the user (no finished job, no camera, server failure)."""


# ---------------------------------------------------------------------------------------------
# Which job, and its render server.
# ---------------------------------------------------------------------------------------------


def render_job(scene) -> JobPaths:
    """The finished job the engine renders for `scene`; EngineError when there is none."""
    settings = getattr(scene, "ins", None)
    text = ""
    if settings is not None:
        text = settings.render_job_dir.strip() or settings.job_dir.strip()
    if not text:
        raise EngineError(f"Scene '{scene.name}' has no finished INS job to render; run Stylize Scene with the 'Neural Render' output, or choose a finished job folder as Render Job in the INS panel.")
    job = JobPaths(Path(bpy.path.abspath(text)))
    if not job.result_json.is_file():
        raise EngineError(f"The INS job '{job.root}' is not finished (no result/result.json); wait for it to finish, or choose a finished job folder as Render Job in the INS panel.")
    try:
        spec = JobSpec.load(job.job_json)
    except InputError as error:
        raise EngineError(str(error)) from None
    if "render_engine" not in spec.outputs:
        raise EngineError(f"The INS job '{job.root.name}' was made without the 'Neural Render' output; run Stylize Scene with 'Neural Render' or 'Both'.")
    return job


def job_style_count(job: JobPaths) -> int:
    try:
        return len(JobSpec.load(job.job_json).styles)
    except InputError:
        return 0


def mix_for_job(scene, job: JobPaths) -> list[float] | None:
    """The scene's (animated) style weights, when they fit the job's styles."""
    from .properties import style_mix

    settings = getattr(scene, "ins", None)
    if settings is None:
        return None
    mix = style_mix(settings)
    if mix is not None and len(mix) != job_style_count(job):
        return None  # the scene's style list changed since the job: use the job's own mix
    return mix


class RenderServer:
    """One `python -m ins_core.worker JOB --serve` process and its requests (thread-safe)."""

    def __init__(self, job: JobPaths, python: str, bundled: bool) -> None:
        self.job = job
        self.python = python
        self.stamp = _result_stamp(job)
        self.worker = worker_process.WorkerProcess(
            worker_launch.worker_argv(python, job.root, serve=True, bundled=bundled), job.root, env=worker_launch.worker_env(bundled),
            stderr_path=job.root / worker_process.SERVER_STDERR_NAME, label="render server", python=python, kind="server",
        )
        self.folder = Path(tempfile.mkdtemp(prefix="ins_render_"))
        self.lock = threading.Lock()

    def start(self) -> "RenderServer":
        try:
            self.worker.start()
        except worker_launch.WorkerError as error:
            raise EngineError(str(error)) from None
        return self

    @property
    def ready(self) -> bool:
        with self.lock:
            self.worker.poll()
        return self.worker.state.ready

    def check_alive(self) -> None:
        state = self.worker.state
        if state.done or not self.worker.alive:
            with self.lock:
                self.worker.poll()
            if state.error is not None or state.done:
                message = state.message or self.worker.crash_report(state.returncode)
            else:
                message = self.worker.crash_report(self.worker._proc.poll())
            _FAILED[str(self.job.root.resolve())] = (time.monotonic(), (self.stamp, self.python), message)
            raise EngineError(message)

    def wait_ready(self, timeout: float = READY_TIMEOUT_S, should_stop=None, on_wait=None) -> bool:
        """True when ready; False when `should_stop()` said stop; EngineError on failure."""
        deadline = time.monotonic() + timeout
        while not self.ready:
            self.check_alive()
            if should_stop is not None and should_stop():
                return False
            if time.monotonic() > deadline:
                raise EngineError(f"The INS render server did not get ready within {timeout:g} s; see the log '{self.worker.stderr_path}'.")
            if on_wait is not None:
                on_wait()
            time.sleep(0.05)
        return True

    def submit(self, c2w, fx, fy, cx, cy, width, height, style_mix=None, background=None, depth=False) -> tuple[str, Path]:
        """Send one render request; its PNG will be the returned path (its Z pass, with `depth`,
        `depth_path(path)`)."""
        request_id = uuid.uuid4().hex[:12]
        out = self.folder / f"{request_id}.png"
        command = RenderCommand(request_id=request_id, c2w=c2w, fx=float(fx), fy=float(fy), cx=float(cx),
                                cy=float(cy), width=int(width), height=int(height), out=str(out),
                                style_mix=style_mix, background=background, depth_out=str(depth_path(out)) if depth else None)
        try:
            self.worker.send(command)
        except worker_launch.WorkerError as error:
            raise EngineError(str(error)) from None
        return request_id, out

    def result(self, request_id: str) -> Path | None:
        with self.lock:
            self.worker.poll()
            return self.worker.state.rendered.pop(request_id, None)

    def render(self, c2w, fx, fy, cx, cy, width, height, style_mix=None, background=None, depth=False, *,
               should_stop=None, on_wait=None, timeout: float = RENDER_TIMEOUT_S) -> Path | None:
        """Blocking render of one view; None when `should_stop()` said stop."""
        request_id, _ = self.submit(c2w, fx, fy, cx, cy, width, height, style_mix, background, depth)
        deadline = time.monotonic() + timeout
        while True:
            path = self.result(request_id)
            if path is not None:
                return path
            self.check_alive()
            if should_stop is not None and should_stop():
                return None
            if time.monotonic() > deadline:
                raise EngineError(f"The INS render server took longer than {timeout:g} s for one frame; see the log '{self.worker.stderr_path}'.")
            if on_wait is not None:
                on_wait()
            time.sleep(0.02)

    def close(self) -> None:
        self.worker.close(timeout=3.0)
        shutil.rmtree(self.folder, ignore_errors=True)


def _result_stamp(job: JobPaths) -> float:
    try:
        return job.result_json.stat().st_mtime
    except OSError:
        return 0.0


_SERVERS: dict[str, RenderServer] = {}
_SERVERS_LOCK = threading.Lock()
# A server that just failed is not restarted on every viewport redraw: the same job with the
# same Python gets the same answer for RETRY_AFTER_S seconds.
_FAILED: dict[str, tuple[float, tuple, str]] = {}
RETRY_AFTER_S = 10.0


def get_server(job: JobPaths) -> RenderServer:
    """The running server for `job` (started when missing, dead or the job was re-run)."""
    from . import preferences

    try:
        python, bundled = preferences.worker_python()
    except worker_launch.WorkerError as error:
        raise EngineError(str(error)) from None
    key = str(job.root.resolve())
    with _SERVERS_LOCK:
        server = _SERVERS.get(key)
        if server is not None and (not server.worker.alive or server.stamp != _result_stamp(job) or server.python != python):
            _SERVERS.pop(key, None)
            server.close()
            server = None
        if server is None:
            failed = _FAILED.get(key)
            if failed is not None and failed[1] == (_result_stamp(job), python) and time.monotonic() - failed[0] < RETRY_AFTER_S:
                raise EngineError(failed[2])
            _FAILED.pop(key, None)
            server = RenderServer(job, python, bundled).start()
            _SERVERS[key] = server
        return server


def stop_servers() -> None:
    with _SERVERS_LOCK:
        servers = list(_SERVERS.values())
        _SERVERS.clear()
        _FAILED.clear()
    for server in servers:
        try:
            server.close()
        except Exception:  # noqa: BLE001 - stopping one must not keep the others running
            pass


def depth_path(image: Path) -> Path:
    """Where the server writes the Z pass of the render whose image is `image`."""
    return image.with_suffix(".depth")


def read_depth(path: Path, width: int, height: int) -> array.array:
    """The server's Z pass (float32 little-endian, top row first) as Blender's pass wants it:
    bottom row first. No numpy (some Blender builds have none)."""
    values = array.array("f")
    try:
        with open(path, "rb") as f:
            values.fromfile(f, width * height)
    except (OSError, EOFError) as error:
        raise EngineError(f"The INS render server's depth pass '{path}' cannot be read ({getattr(error, 'strerror', None) or error}).") from None
    if sys.byteorder == "big":
        values.byteswap()
    rows = array.array("f")
    for row in range(height - 1, -1, -1):
        rows.extend(values[row * width:(row + 1) * width])
    return rows


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from a PNG header; EngineError when it is not a PNG."""
    try:
        with open(path, "rb") as f:
            head = f.read(24)
    except OSError as error:
        raise EngineError(f"The INS render server's image '{path}' cannot be read ({error.strerror or error}).") from None
    if len(head) < 24 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        raise EngineError(f"The INS render server wrote '{path}', which is not a PNG image.")
    return struct.unpack(">II", head[16:24])


# ---------------------------------------------------------------------------------------------
# The engine.
# ---------------------------------------------------------------------------------------------


def intrinsics_from_projection(matrix, width: int, height: int) -> tuple[float, float, float, float]:
    """(fx, fy, cx, cy) in pixels (principal point from the top-left, rows down) of an OpenGL
    perspective projection matrix drawn into width x height pixels (a viewport's window_matrix)."""
    fx, fy = 0.5 * width * matrix[0][0], 0.5 * height * matrix[1][1]
    cx, cy = 0.5 * width * (1.0 - matrix[0][2]), 0.5 * height * (1.0 + matrix[1][2])
    return fx, fy, cx, cy


def _camera_view(scene, depsgraph, camera_object, width: int, height: int):
    if camera_object is None:
        raise EngineError(f"Scene '{scene.name}' has no active camera; set the scene camera in the Scene properties.")
    evaluated = camera_object.evaluated_get(depsgraph) if depsgraph is not None else camera_object
    if evaluated.data.type != "PERSP":
        raise EngineError(f"Camera '{camera_object.name}' is not a perspective camera; the INS engine renders perspective cameras only.")
    k = camera_intrinsics(evaluated.data, width, height, scene.render.pixel_aspect_x, scene.render.pixel_aspect_y)
    return camera_to_world(evaluated.matrix_world), k


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
        """The passes the engine fills: Combined, and Depth when the view layer asks for Z."""
        self.register_pass(scene, renderlayer, "Combined", 4, "RGBA", "COLOR")
        if renderlayer.use_pass_z:
            self.register_pass(scene, renderlayer, "Depth", 1, "Z", "VALUE")

    def _render(self, scene, depsgraph) -> None:
        width, height = int(self.resolution_x), int(self.resolution_y)
        camera = self.camera_override or scene.camera
        c2w, k = _camera_view(scene, depsgraph, camera, width, height)
        job = render_job(scene)
        mix = mix_for_job(scene, job)
        view_layer = depsgraph.view_layer
        with_depth = view_layer is not None and view_layer.use_pass_z
        self.update_stats("", "INS: starting the render server")
        server = get_server(job)
        started = time.monotonic()

        def waiting(what):
            def tick():
                self.update_stats("", f"INS: {what} ({time.monotonic() - started:.0f} s)")
            return tick

        if not server.wait_ready(should_stop=self.test_break, on_wait=waiting("loading the stylized model")):
            return
        self.update_progress(0.1)
        path = server.render(c2w, k.fl_x, k.fl_y, k.cx, k.cy, width, height, mix, background_colour(scene), with_depth,
                             should_stop=self.test_break, on_wait=waiting(f"rendering {width}x{height}"))
        if path is None:
            return
        try:
            size = png_size(path)
            if size != (width, height):
                raise EngineError(f"The INS render server returned a {size[0]}x{size[1]} image for a {width}x{height} render; see the log '{server.worker.stderr_path}'.")
            depth = read_depth(depth_path(path), width, height) if with_depth else None
            result = self.begin_result(0, 0, width, height, layer=view_layer.name if view_layer is not None else "")
            try:
                # Top-down sRGB PNG -> bottom-up linear render result (Blender converts both).
                result.layers[0].load_from_file(str(path))
                if depth is not None:
                    result.layers[0].passes["Depth"].rect.foreach_set(depth)
            finally:
                self.end_result(result)
        finally:
            for leftover in (path, depth_path(path)):
                try:
                    os.unlink(leftover)
                except OSError:
                    pass
        self.update_progress(1.0)
        self.update_stats("", f"INS: rendered in {time.monotonic() - started:.1f} s")

    # -- viewport ------------------------------------------------------------------------------

    def view_update(self, context, depsgraph):
        pass  # view_draw compares the view (camera, size, style mix) itself

    def view_draw(self, context, depsgraph):
        if bpy.app.background:
            return
        if self._view is None:
            self._view = ViewportPreview(self)
        region, scene = context.region, depsgraph.scene
        with self._view.reporting():
            self._view.update(scene, viewport_view(region, context.region_data))
        with self._view.reporting():
            _draw_image(self, scene, self._view.image(), region.width, region.height)
        self.update_stats("", f"INS: {self._view.status()}")

    def __del__(self):
        view = getattr(self, "_view", None)
        if view is not None:
            view.free()


# ---------------------------------------------------------------------------------------------
# The viewport preview. view_draw may neither write Blender data (no FUNC_ALLOW_WRITE: loading an
# image there fails) nor block, so it only submits requests; a timer (`poll`) waits for the
# server's answer, loads the PNG into a hidden image and asks for a redraw, which draws it.
# ---------------------------------------------------------------------------------------------

POLL_S = 0.05


class View:
    """A viewport's camera: what a render request needs, and a key to notice changes."""

    def __init__(self, c2w, fx: float, fy: float, cx: float, cy: float, width: int, height: int) -> None:
        self.c2w, self.fx, self.fy, self.cx, self.cy = c2w, fx, fy, cx, cy
        self.width, self.height = width, height
        self.key = (tuple(round(v, 5) for row in c2w for v in row), round(fx, 3), round(fy, 3), round(cx, 3),
                    round(cy, 3), width, height)

    def scaled(self, s: float) -> tuple:
        """Render-request arguments at `s` times the region size."""
        w, h = max(1, math.ceil(self.width * s)), max(1, math.ceil(self.height * s))
        return (self.c2w, self.fx * w / self.width, self.fy * h / self.height, self.cx * w / self.width,
                self.cy * h / self.height, w, h)


def viewport_view(region, rv3d) -> View:
    """The View of a 3D viewport region (EngineError for an orthographic view)."""
    if not rv3d.is_perspective:
        raise EngineError("The INS viewport preview needs a perspective view; press Numpad 5 to switch.")
    width, height = region.width, region.height
    fx, fy, cx, cy = intrinsics_from_projection(rv3d.window_matrix, width, height)
    return View([list(row) for row in rv3d.view_matrix.inverted()], fx, fy, cx, cy, width, height)


class ViewportPreview:
    """Progressive preview of one viewport: 1/8 of the region first, refined to full size while
    the view stays still. At most one request is in flight (the server answers in order)."""

    def __init__(self, engine) -> None:
        try:
            import weakref

            self._engine = weakref.ref(engine)
        except TypeError:  # no weak references to this object: hold it until free()
            self._engine = lambda engine=engine: engine
        self.key = None  # the view (and style mix) being refined
        self.level = 0  # the next VIEWPORT_LEVELS entry to request
        self.pending: tuple[str, tuple[int, int], tuple] | None = None  # request id, size, key
        self.server: RenderServer | None = None
        self.shown: tuple[int, int] | None = None  # size of the image on screen
        self.image_name: str | None = None
        self.error = ""
        self.polling = False
        self.freed = False

    def free(self) -> None:
        self.freed = True

    @contextmanager
    def reporting(self):
        """An exception becomes the overlay's text: drawing must never take the viewport down."""
        try:
            yield
        except (EngineError, worker_launch.WorkerError, InputError) as error:
            self.error = str(error)
        except Exception as error:  # noqa: BLE001 - shown to the user, not raised into Blender's draw
            self.error = f"viewport: {type(error).__name__}: {error}"

    def update(self, scene, view: View) -> None:
        """From view_draw: notice a new view, submit the next request; never waits, never
        writes Blender data."""
        self.error = ""
        job = render_job(scene)
        mix = mix_for_job(scene, job)
        background = background_colour(scene)
        server = get_server(job)
        if server is not self.server:  # a new server (the job was re-run) never answers the old requests
            self.server, self.pending, self.key = server, None, None
        key = (view.key, tuple(mix or ()), None if background is None else tuple(round(c, 4) for c in background))
        if key != self.key:
            self.key, self.level = key, 0  # a request in flight for the old view is awaited
        if server.ready and self.pending is None and self.level < len(VIEWPORT_LEVELS):
            args = view.scaled(VIEWPORT_LEVELS[self.level])
            request_id, _ = server.submit(*args, mix, background)
            self.pending = (request_id, args[-2:], self.key)
        if not server.ready or self.pending is not None:
            self._poll_soon()

    def status(self) -> str:
        if self.error:
            return self.error
        if self.server is not None and not self.server.ready:
            return "loading the stylized model..."
        if self.pending is not None:
            return f"refining {self.pending[1][0]}x{self.pending[1][1]}"
        return f"{self.shown[0]}x{self.shown[1]}" if self.shown else ""

    def image(self):
        return bpy.data.images.get(self.image_name) if self.image_name else None

    def _poll_soon(self) -> None:
        if not self.polling:
            self.polling = True
            schedule(self.poll, POLL_S)

    def poll(self) -> float | None:
        """Timer: take the server's answer, load it, ask for a redraw; the next interval or None."""
        engine = self._engine()
        if self.freed or engine is None or self.server is None:
            self.polling = False
            return None
        changed = True
        with self.reporting():  # a timer that raises is dropped: the preview would wait forever
            changed = self._take_result(self.server)
        if self.error:
            self.pending = None  # abandoned; the next draw asks again
        if changed:
            try:
                engine.tag_redraw()
            except ReferenceError:  # the engine is gone (viewport closed)
                self.freed = True
        waiting = self.pending is not None or (not self.error and not self.server.ready)
        if self.freed or not waiting:
            self.polling = False
            return None
        return POLL_S

    def _take_result(self, server: RenderServer) -> bool:
        """True when something changed on screen: the server got ready or an image arrived."""
        if not server.ready:
            server.check_alive()
            return server.ready
        if self.pending is None:
            return True  # ready: draw again to submit the first request
        request_id, size, key = self.pending
        path = server.result(request_id)
        if path is None:
            server.check_alive()
            return False
        self.pending = None
        try:
            if key == self.key or self.image_name is None:  # an image of the old view beats none
                self.image_name = load_viewport_image(path)
                self.shown = size
            if key == self.key:
                self.level += 1
        finally:
            try:
                os.unlink(path)
            except OSError:
                pass
        return True


def schedule(function, delay: float) -> None:
    """Run `function` from Blender's timers (where Blender data may be written); tests replace it."""
    bpy.app.timers.register(function, first_interval=delay)


def load_viewport_image(path: Path) -> str:
    """The server's PNG as the hidden image VIEWPORT_IMAGE, packed so the file can go."""
    old = bpy.data.images.get(VIEWPORT_IMAGE)
    if old is not None:
        bpy.data.images.remove(old)
    image = bpy.data.images.load(str(path), check_existing=False)
    image.name = VIEWPORT_IMAGE
    image.pack()
    return image.name


def _draw_image(engine, scene, image, width: int, height: int) -> None:
    """Draw `image` over the region: Blender's GPU texture of it (sRGB decoded to linear, straight
    alpha) through the display-space shader, as the render-engine template does. No numpy."""
    if image is None:
        return
    import gpu
    from gpu_extras.presets import draw_texture_2d

    texture = gpu.texture.from_image(image)
    gpu.state.blend_set("ALPHA")
    engine.bind_display_space_shader(scene)
    draw_texture_2d(texture, (0, 0), width, height)
    engine.unbind_display_space_shader()
    gpu.state.blend_set("NONE")


CLASSES = (INSRenderEngine,)

# Built-in panels that make sense for the INS engine (colour management, dimensions are global).
_COMPAT_PANELS = ("RENDER_PT_color_management", "RENDER_PT_color_management_curves",
                  "RENDER_PT_color_management_display_settings", "RENDER_PT_color_management_white_balance",
                  "RENDER_PT_opengl_film",  # Film > Transparent (the world's colour behind the field, or none)
                  "VIEWLAYER_PT_layer_passes")  # the parent of the engine's own "Data" passes panel


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    for name in _COMPAT_PANELS:
        panel = getattr(bpy.types, name, None)
        if panel is not None and hasattr(panel, "COMPAT_ENGINES"):
            panel.COMPAT_ENGINES.add("INS")


def unregister() -> None:
    stop_servers()
    for name in _COMPAT_PANELS:
        panel = getattr(bpy.types, name, None)
        if panel is not None and hasattr(panel, "COMPAT_ENGINES"):
            panel.COMPAT_ENGINES.discard("INS")
    for cls in reversed(CLASSES):
        if getattr(cls, "is_registered", False):
            bpy.utils.unregister_class(cls)
