"""Under `real-blender gui`: open a .blend whose scene points at a finished INS job, put the
3D viewport in Rendered shading with the INS engine (camera view), open the sidebar on the INS
tab and the Properties editor on View Layer (the engine's passes), and log what the viewport
preview does, so screenshots (`real-blender shot`) can be taken. After INS_ORTHO_AT seconds the
viewport turns to the front orthographic view (Numpad 1), as an artist checking a side does.

    INS_BLEND=/tmp/out.blend INS_SECONDS=240 real-blender gui tests/real_blender/gui_preview.py LOG

Log lines start with "GUI:"; Blender quits after INS_SECONDS.
"""

import os
import time

import bpy

BLEND = os.environ["INS_BLEND"]
SECONDS = float(os.environ.get("INS_SECONDS", "240"))
ORTHO_AT = float(os.environ.get("INS_ORTHO_AT", "1e9"))
SERVERS_MODULE = "bl_ext.user_default.ins_stylize.render_client"  # where the render servers are kept


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
    log("front orthographic view set")


def report() -> float | None:
    import sys

    global ORTHO_AT
    if time.monotonic() - STARTED > ORTHO_AT:
        ORTHO_AT = float("inf")
        front_orthographic()

    client = sys.modules.get(SERVERS_MODULE)
    image = bpy.data.images.get(".INS Viewport")
    size = tuple(image.size) if image is not None else None
    servers = getattr(client, "_SERVERS", None) if client else None
    _, area = view3d()
    kind = "" if area is None else "perspective; " if area.spaces.active.region_3d.is_perspective else "orthographic; "
    log(f"preview image {size}; {kind}servers {list(servers) if isinstance(servers, dict) else servers}")
    if time.monotonic() - STARTED > SECONDS:
        log("quitting")
        bpy.ops.wm.quit_blender()
        return None
    return 5.0


def after_load() -> float | None:
    setup()
    bpy.app.timers.register(report, first_interval=1.0)
    return None


STARTED = time.monotonic()
bpy.ops.wm.open_mainfile(filepath=BLEND)
bpy.app.timers.register(after_load, first_interval=2.0)
