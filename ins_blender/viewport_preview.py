"""The INS engine's viewport preview. view_draw may neither write Blender data (no
FUNC_ALLOW_WRITE: loading an image there fails) nor block, so it only submits requests; a timer
(`poll`) waits for the server's answer, loads the PNG into a hidden image and asks for a redraw,
which draws it. It renders at 1/8 of the region first and refines to 1/4, 1/2 and full size
while the view stays still, then, with the scene's viewport samples above one, anti-aliases the
full size (a frame the server cannot cut short: a view moved meanwhile waits for it). With a
render region (`render_border`) all of that covers the region's pixels alone.
"""

from __future__ import annotations

import math
import os
from contextlib import contextmanager
from pathlib import Path

import bpy
from mathutils import Matrix

from ins_core.errors import InputError
from ins_core.job import JobPaths

from . import worker_launch
from .render_client import EngineError, RenderServer, get_server, mix_for_job, render_job
from .world import background_colour

VIEWPORT_LEVELS = (0.125, 0.25, 0.5, 1.0)


# Rays a pixel the still viewport's depth of field ends at, whatever Viewport Samples say: one ray
# a pixel leaves its blur as noise, as Cycles' first samples do, which Cycles' viewport goes on refining.
DEPTH_OF_FIELD_SAMPLES = 16


def preview_levels(samples: int, depth_of_field: bool = False) -> list[tuple[float, int]]:
    """(scale, rays a pixel) of each refinement: VIEWPORT_LEVELS at one ray a pixel, then, with
    the scene's viewport samples above one, the full size again at that many (smooth edges), and
    through a camera's depth of field at DEPTH_OF_FIELD_SAMPLES at least (a smooth blur)."""
    last = max(samples, DEPTH_OF_FIELD_SAMPLES) if depth_of_field else samples
    return [(scale, 1) for scale in VIEWPORT_LEVELS] + ([(1.0, last)] if last > 1 else [])
VIEWPORT_IMAGE = ".INS Viewport"


def is_orthographic(matrix) -> bool:
    """Whether an OpenGL projection matrix is orthographic (its last row 0, 0, 0, 1; a
    perspective one's is 0, 0, -1, 0)."""
    return abs(matrix[3][3]) > 0.5


def intrinsics_from_projection(matrix, width: int, height: int) -> tuple[float, float, float, float]:
    """(fx, fy, cx, cy) in pixels (principal point from the top-left, rows down) of an OpenGL
    projection matrix drawn into width x height pixels (a viewport's window_matrix): a perspective
    one's focal lengths, an orthographic one's pixels per world unit."""
    fx, fy = 0.5 * width * matrix[0][0], 0.5 * height * matrix[1][1]
    if is_orthographic(matrix):  # the centre's offset is the translation column, not the z column
        return fx, fy, 0.5 * width * (1.0 + matrix[0][3]), 0.5 * height * (1.0 - matrix[1][3])
    cx, cy = 0.5 * width * (1.0 - matrix[0][2]), 0.5 * height * (1.0 + matrix[1][2])
    return fx, fy, cx, cy


POLL_S = 0.05  # how often the timer asks the server for its answer


Rect = tuple[int, int, int, int]  # (left, bottom, width, height) in region pixels, rows up as Blender draws


class View:
    """A viewport's camera: what a render request needs, and a key to notice changes. `border`
    is the render region drawn (None: the whole region); `lens` the camera's depth of field
    (depth_of_field.py; through a camera that has it on); `placement` where the field stands
    (placement.py; None: where it was captured); `others` the other stylized meshes' fields shown
    (shown_fields.py)."""

    def __init__(self, c2w, fx: float, fy: float, cx: float, cy: float, width: int, height: int,
                 orthographic: bool = False, border: Rect | None = None, lens: dict | None = None,
                 placement: list[list[float]] | None = None, others: list[dict] | None = None) -> None:
        self.c2w, self.fx, self.fy, self.cx, self.cy = c2w, fx, fy, cx, cy
        self.width, self.height, self.orthographic, self.lens = width, height, orthographic, lens
        self.border, self.placement, self.others = border or (0, 0, width, height), placement, others or []
        self.key = (tuple(round(v, 5) for row in c2w for v in row), round(fx, 3), round(fy, 3), round(cx, 3),
                    round(cy, 3), width, height, orthographic, self.border,
                    None if lens is None else tuple(sorted((k, round(v, 6)) for k, v in lens.items())),
                    _matrix_key(placement),
                    tuple((other["job"], _matrix_key(other["placement"])) for other in self.others))

    def scaled(self, s: float) -> tuple:
        """Render-request arguments of the border's pixels at `s` times their size: the region's
        camera with its principal point moved to the border's top-left corner."""
        left, bottom, border_width, border_height = self.border
        w, h = max(1, math.ceil(border_width * s)), max(1, math.ceil(border_height * s))
        sx, sy = w / border_width, h / border_height
        top = self.height - bottom - border_height  # the request's rows run down
        return (self.c2w, self.fx * sx, self.fy * sy, (self.cx - left) * sx, (self.cy - top) * sy, w, h)


def _matrix_key(matrix: list[list[float]] | None) -> tuple | None:
    return None if matrix is None else tuple(round(v, 6) for row in matrix for v in row)


def camera_frame_in_region(camera, scene, perspective_matrix, width: int, height: int) -> tuple[float, float, float, float]:
    """(left, bottom, right, top) in region pixels of the camera's frame (its view_frame, shift and
    the scene's aspect included) as a view with `perspective_matrix` draws it (the camera view's
    dashed frame)."""
    xs, ys = [], []
    for corner in camera.data.view_frame(scene=scene):
        clip = perspective_matrix @ (camera.matrix_world @ corner).to_4d()
        xs.append((clip.x / clip.w + 1.0) * 0.5 * width)
        ys.append((clip.y / clip.w + 1.0) * 0.5 * height)
    return min(xs), min(ys), max(xs), max(ys)


def render_border(scene, space, rv3d, width: int, height: int, camera=None) -> Rect | None:
    """The part of a width x height viewport region that renders, as Cycles' viewport does: outside
    the camera view, View > Render Region (Ctrl+B, the view's own); through the camera (`camera`,
    the evaluated scene camera), the scene's Render Region within the camera's frame. None: all."""
    if rv3d.view_perspective == "CAMERA":
        settings = scene.render
        if camera is None or not settings.use_border:
            return None
        x0, y0, x1, y1 = camera_frame_in_region(camera, scene, rv3d.perspective_matrix, width, height)
        box = (x0 + settings.border_min_x * (x1 - x0), y0 + settings.border_min_y * (y1 - y0),
               x0 + settings.border_max_x * (x1 - x0), y0 + settings.border_max_y * (y1 - y0))
    else:
        if not space.use_render_border:
            return None
        box = (space.render_border_min_x * width, space.render_border_min_y * height,
               space.render_border_max_x * width, space.render_border_max_y * height)
    left, bottom = max(0, round(box[0])), max(0, round(box[1]))
    right, top = min(width, round(box[2])), min(height, round(box[3]))
    if right <= left or top <= bottom:
        raise EngineError("The render region lies outside the view; draw another with Ctrl+B or clear it with Ctrl+Alt+B.")
    return left, bottom, right - left, top - bottom


def viewport_view(region, rv3d, clip_end: float, border: Rect | None = None, lens: dict | None = None,
                  placement: list[list[float]] | None = None, others: list[dict] | None = None) -> View:
    """The View of a 3D viewport region whose View > Clip End is `clip_end`, drawing only `border`
    (render_border) when one is given, through `lens` (the camera's depth of field, in the camera
    view) when one is given, of the field where `placement` puts it (and the `others` beside it). An orthographic view (Numpad 5, or the front, side and top
    views) shows what lies up to half the clip end on either side of its eye, so its rays start that
    far behind it; through a camera they start at the camera, as a camera's do in a render."""
    width, height = region.width, region.height
    fx, fy, cx, cy = intrinsics_from_projection(rv3d.window_matrix, width, height)
    c2w = rv3d.view_matrix.inverted()
    orthographic = is_orthographic(rv3d.window_matrix)
    if orthographic and rv3d.view_perspective != "CAMERA":
        c2w = c2w @ Matrix.Translation((0.0, 0.0, 0.5 * clip_end))
    return View([list(row) for row in c2w], fx, fy, cx, cy, width, height, orthographic, border,
                lens if rv3d.view_perspective == "CAMERA" else None, placement, others)


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
        self.level = 0  # the next preview_levels entry to request
        self.pending: tuple[str, tuple[int, int], tuple, int, Rect] | None = None  # request id, size, key, samples, border
        self.server: RenderServer | None = None
        self.shown: tuple[int, int] | None = None  # size of the image on screen
        self.shown_border: Rect | None = None  # where in the region it is drawn
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

    def update(self, scene, view: View, job: JobPaths | None = None, own: bool = True) -> None:
        """From view_draw: notice a new view, submit the next request to `job`'s server (the
        scene's own job by default; with the scene's style weights when `own`); never waits,
        never writes Blender data."""
        self.error = ""
        job = job or render_job(scene)
        mix = mix_for_job(scene, job) if own else None
        background = background_colour(scene)
        server = get_server(job)
        if server is not self.server:  # a new server (the job was re-run) never answers the old requests
            self.server, self.pending, self.key = server, None, None
        levels = preview_levels(int(scene.ins.viewport_samples), view.lens is not None)
        key = (view.key, tuple(mix or ()), None if background is None else tuple(round(c, 4) for c in background), tuple(levels))
        if key != self.key:
            self.key, self.level = key, 0  # a request in flight for the old view is awaited
        if server.ready and self.pending is None and self.level < len(levels):
            scale, samples = levels[self.level]
            args = view.scaled(scale)
            request_id, _ = server.submit(*args, style_mix=mix, background=background, orthographic=view.orthographic,
                                          samples=samples, lens=view.lens, placement=view.placement, others=view.others)
            self.pending = (request_id, args[-2:], self.key, samples, view.border)
        if not server.ready or self.pending is not None:
            self._poll_soon()

    def status(self) -> str:
        if self.error:
            return self.error
        if self.server is not None and not self.server.ready:
            return "loading the stylized model..."
        if self.pending is not None:
            (width, height), samples = self.pending[1], self.pending[3]
            return f"refining {width}x{height}" + (f", {samples} samples a pixel" if samples > 1 else "")
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
        request_id, size, key, _, border = self.pending
        path = server.result(request_id)
        if path is None:
            server.check_alive()
            return False
        self.pending = None
        try:
            if key == self.key or self.image_name is None:  # an image of the old view beats none
                self.image_name = load_viewport_image(path)
                self.shown, self.shown_border = size, border
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


def draw_image(engine, scene, image, border: Rect) -> None:
    """Draw `image` over `border` (region pixels): Blender's GPU texture of it (sRGB decoded to
    linear, straight alpha) through the display-space shader, as the render-engine template does. No numpy."""
    if image is None:
        return
    import gpu

    _draw_texture(engine, scene, gpu.texture.from_image(image), border)


def draw_colour(engine, scene, colour: list[float] | None, border: Rect) -> None:
    """Fill `border` with one linear RGB colour (the world's, where the field is hidden); nothing for
    None (Film > Transparent: the viewport's own background shows, as with Cycles)."""
    if colour is None:
        return
    import gpu

    pixel = gpu.types.Buffer("FLOAT", 4, [*colour, 1.0])
    _draw_texture(engine, scene, gpu.types.GPUTexture((1, 1), format="RGBA16F", data=pixel), border)


def _draw_texture(engine, scene, texture, border: Rect) -> None:
    """`texture` stretched over `border` through the display-space shader (gpu only exists with a window)."""
    import gpu
    from gpu_extras.presets import draw_texture_2d

    left, bottom, width, height = border
    gpu.state.blend_set("ALPHA")
    engine.bind_display_space_shader(scene)
    draw_texture_2d(texture, (left, bottom), width, height)
    engine.unbind_display_space_shader()
    gpu.state.blend_set("NONE")
