"""Under `real-blender gui`: open a .blend whose scene points at a finished INS job, put the
3D viewport in Rendered shading with the INS engine (camera view), open the sidebar on the INS
tab and the Properties editor on View Layer (the engine's passes), and log what the viewport
preview does, so screenshots (`real-blender shot`) can be taken. After INS_CAMERA_BORDER_AT
seconds the scene gets a Render Region (Ctrl+B in the camera view); after INS_ORTHO_AT seconds the
viewport turns to the front orthographic view (Numpad 1), as an artist checking a side does, with
a render region of its own (View > Render Region), and the Properties editor shows the camera's data
(Lens, Depth of Field). After INS_MOVE_AT seconds the imported mesh, which the field follows (INS >
Neural Render > Placement), slides 0.4 along x, as an artist placing it does: the preview renders
again with the field moved. After INS_HIDE_AT seconds the mesh is hidden in the viewport (its eye
icon): the preview shows the world alone where it rendered the field; the log gives that render
region on the screen ("on screen (left, top, width, height)", for check_hidden.py). After
INS_COPY_AT seconds it is shown again with a copy of it (Shift+D) moved left and scaled 0.7: the
preview draws both fields; a second painting is added to the scene's Style Images and the
Properties editor turns to Render, where the INS panel says the Render Job keeps its own style.

    INS_BLEND=/tmp/out.blend INS_SECONDS=240 real-blender gui tests/real_blender/gui_preview.py LOG

Log lines start with "GUI:"; Blender quits after INS_SECONDS. Each log line says which part of the
region renders ("border") and the preview image's size; "GUI: region drawn: yes" when the last
preview of each render region was that region's size; "GUI: field followed: yes" when the field's
columns in the last full-size preview before the move lie to the left of those after it.
"""

import os
import sys
import time

import bpy

BLEND = os.environ["INS_BLEND"]
SECONDS = float(os.environ.get("INS_SECONDS", "240"))
ORTHO_AT = float(os.environ.get("INS_ORTHO_AT", "1e9"))
CAMERA_BORDER_AT = float(os.environ.get("INS_CAMERA_BORDER_AT", "1e9"))
MOVE_AT = float(os.environ.get("INS_MOVE_AT", "1e9"))
MOVE_X = 0.4
HIDE_AT = float(os.environ.get("INS_HIDE_AT", "1e9"))
COPY_AT = float(os.environ.get("INS_COPY_AT", "1e9"))
ADDON = "bl_ext.user_default.ins_stylize"
SERVERS_MODULE = f"{ADDON}.render_client"  # where the render servers are kept
DRAWN = {}  # each render region: whether the preview image last had its size
CENTRES = {}  # "before" / "after" the move: the field's mean column in the last full-size preview


def log(text: str) -> None:
    print(f"GUI: {time.monotonic() - STARTED:6.1f} s  {text}", flush=True)


def view3d():
    for window in bpy.context.window_manager.windows:
        for area in window.screen.areas:
            if area.type == "VIEW_3D":
                return window, area
    return None, None


def setup() -> None:
    scene = bpy.context.scene
    scene.render.engine = "INS"
    window, area = view3d()
    if area is None:
        log("no 3D viewport in this file")
        return
    space = area.spaces.active
    space.shading.type = "RENDERED"
    space.show_region_ui = True
    space.region_3d.view_perspective = "CAMERA"
    space.overlay.show_overlays = True
    for region in area.regions:
        if region.type == "UI":
            try:
                region.active_panel_category = "INS"
            except (AttributeError, TypeError) as error:
                log(f"cannot choose the INS tab ({error})")
    # The Properties editor on View Layer: the engine's Passes > Data (Combined, Z, Mist) should show.
    for other in window.screen.areas:
        if other.type == "PROPERTIES":
            other.spaces.active.context = "VIEW_LAYER"
    # Let the camera frame fill the region.
    with bpy.context.temp_override(window=window, area=area,
                                   region=next(r for r in area.regions if r.type == "WINDOW")):
        bpy.ops.view3d.view_center_camera()
    log(f"viewport {area.width}x{area.height}, engine {scene.render.engine}, job {scene.ins.render_job_dir or scene.ins.job_dir}")


def front_orthographic() -> None:
    """The front view, orthographic (what Numpad 1 gives), framed on the job's scene box."""
    import math

    from mathutils import Euler

    window, area = view3d()
    rv3d = area.spaces.active.region_3d
    rv3d.view_perspective = "ORTHO"
    rv3d.view_rotation = Euler((math.radians(90), 0.0, 0.0)).to_quaternion()  # looking along +y
    rv3d.view_location, rv3d.view_distance = (0.0, 0.0, 0.3), 3.0
    space = area.spaces.active
    space.use_render_border = True
    space.render_border_min_x, space.render_border_max_x = 0.3, 0.8
    space.render_border_min_y, space.render_border_max_y = 0.2, 0.7
    # The Properties editor on the camera's data: its Lens and Depth of Field panels show for the engine.
    bpy.context.view_layer.objects.active = bpy.context.scene.camera
    for other in window.screen.areas:
        if other.type == "PROPERTIES":
            other.spaces.active.context = "DATA"
    log("front orthographic view set, with a render region of its own; Properties on the camera's data")


def camera_border() -> None:
    settings = bpy.context.scene.render
    settings.use_border = True
    settings.border_min_x, settings.border_max_x = 0.2, 0.7
    settings.border_min_y, settings.border_max_y = 0.15, 0.85
    log("the scene's render region set")


def on_the_placement(what: str, change) -> None:
    """`change(obj, window, area)` to the field's Placement object, as an artist would do it, the
    viewport redrawn and the sentence `change` returns logged."""
    obj = bpy.context.scene.ins.field_object
    window, area = view3d()
    if obj is None or area is None:
        log(f"no Placement object to {what}")
        return
    said = change(obj, window, area)
    area.tag_redraw()
    log(said)


def move(obj, window, area) -> str:
    obj.location.x += MOVE_X
    return f"'{obj.name}' (the field's Placement) moved {MOVE_X} along x"


def hide(obj, window, area) -> str:
    obj.hide_set(True)
    region = next(r for r in area.regions if r.type == "WINDOW")
    border = border_now(area)
    left, bottom, width, height = border if isinstance(border, tuple) else (0, 0, region.width, region.height)
    top = window.height - (region.y + bottom + height)
    return f"'{obj.name}' hidden in the viewport; its render region on screen ({region.x + left}, {top}, {width}, {height})"


def show_with_a_copy(obj, window, area) -> str:
    obj.hide_set(False)
    copy = obj.copy()  # as Shift+D: the object's custom properties (its job) come along
    copy.data = obj.data.copy()
    for collection in obj.users_collection:
        collection.objects.link(copy)
    copy.location.x -= 0.6
    copy.scale = (0.7, 0.7, 0.7)
    # A second painting in the scene's list (for a next job): the Render Job keeps its one style,
    # which the Render Properties' INS panel says under the Style Weights.
    scene = bpy.context.scene
    scene.ins.styles.add().filepath = scene.ins.styles[0].filepath
    for other in window.screen.areas:
        if other.type == "PROPERTIES":
            other.spaces.active.context = "RENDER"
    note = sys.modules[f"{ADDON}.render_client"].style_weights_note(scene)
    return f"'{obj.name}' shown again, with a copy '{copy.name}' moved 0.6 left and scaled 0.7; a second style listed: {note}"


def field_centre(image) -> float | None:
    """The mean column (0..1) of the pixels that differ from the image's corner (the world's colour)."""
    width, height = image.size
    pixels = image.pixels[:]
    corner = pixels[:3]
    columns = [i % width for i in range(width * height)
               if max(abs(pixels[4 * i + c] - corner[c]) for c in range(3)) > 0.05]
    return sum(columns) / len(columns) / width if columns else None


def border_now(area) -> tuple | None:
    """The part of the viewport that renders, by the extension's own render_border."""
    preview = sys.modules.get(f"{ADDON}.viewport_preview")
    if preview is None:
        return None
    region = next(r for r in area.regions if r.type == "WINDOW")
    space, scene = area.spaces.active, bpy.context.scene
    try:
        return preview.render_border(scene, space, space.region_3d, region.width, region.height, scene.camera)
    except Exception as error:  # noqa: BLE001 - logged, the check reads the log
        return f"error: {error}"


def report() -> float | None:
    global ORTHO_AT, CAMERA_BORDER_AT, MOVE_AT, HIDE_AT, COPY_AT
    if time.monotonic() - STARTED > CAMERA_BORDER_AT:
        CAMERA_BORDER_AT = float("inf")
        camera_border()
    if time.monotonic() - STARTED > ORTHO_AT:
        ORTHO_AT = float("inf")
        front_orthographic()
    moved = MOVE_AT == float("inf")
    if time.monotonic() - STARTED > MOVE_AT:
        MOVE_AT = float("inf")
        on_the_placement("move", move)
    if time.monotonic() - STARTED > HIDE_AT:
        HIDE_AT = float("inf")
        on_the_placement("hide", hide)
    if time.monotonic() - STARTED > COPY_AT:
        COPY_AT = float("inf")
        on_the_placement("copy", show_with_a_copy)

    client = sys.modules.get(SERVERS_MODULE)
    image = bpy.data.images.get(".INS Viewport")
    size = tuple(image.size) if image is not None else None
    servers = getattr(client, "_SERVERS", None) if client else None
    _, area = view3d()
    kind = "" if area is None else "perspective; " if area.spaces.active.region_3d.is_perspective else "orthographic; "
    border = None if area is None else border_now(area)
    if isinstance(border, tuple):
        DRAWN[border] = size == border[2:]
        # The front view's full size, with the one field (the copy would pull its columns left).
        if size == border[2:] and ORTHO_AT_START + 5 < time.monotonic() - STARTED < COPY_AT_START:
            CENTRES["after" if moved else "before"] = field_centre(image)
    log(f"preview image {size}; {kind}border {border}; servers {list(servers) if isinstance(servers, dict) else servers}")
    if time.monotonic() - STARTED > SECONDS:
        log(f"region drawn: {'yes' if len(DRAWN) == 2 and all(DRAWN.values()) else 'no'} {DRAWN}")
        before, after = CENTRES.get("before"), CENTRES.get("after")
        followed = before is not None and after is not None and after > before + 0.02
        log(f"field followed: {'yes' if followed else 'no'} (the field's mean column {before} before the move, {after} after)")
        log("quitting")
        bpy.ops.wm.quit_blender()
        return None
    return 5.0


def after_load() -> float | None:
    setup()
    bpy.app.timers.register(report, first_interval=1.0)
    return None


ORTHO_AT_START, COPY_AT_START = ORTHO_AT, COPY_AT
STARTED = time.monotonic()
bpy.ops.wm.open_mainfile(filepath=BLEND)
bpy.app.timers.register(after_load, first_interval=2.0)
