"""The INS render engine, through the real `bpy.ops.render.render()` in background mode.

The render server here is FAKE_SERVER below: a test double of the protocol (stdlib only) that
plays `python -m ins_core.worker JOB --serve`: it says "ready", answers every render command by
writing a PNG of the asked size (top half one colour, bottom half another, so a flipped image
shows) and its Z, Mist and Normal passes when asked (one value above, another below), and logs the commands it got, so the tests
can check the camera, intrinsics, style mix and background the engine sent. The test with the real
server, on a job trained here, is at the end.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

bpy = pytest.importorskip("bpy")
from mathutils import Euler, Vector  # noqa: E402

import ins_blender  # noqa: E402
from ins_blender import render_client, viewport_preview, worker_launch, worker_process  # noqa: E402
from ins_blender.camera_model import camera_intrinsics, camera_to_world  # noqa: E402
from ins_core.job import JobPaths, JobSpec, ResultManifest  # noqa: E402
from ins_core.protocol import NO_DEPTH  # noqa: E402
import render_result  # noqa: E402

pytestmark = pytest.mark.blender

TOP, BOTTOM = (200, 100, 50, 255), (0, 0, 255, 255)

FAKE_SERVER = r'''
"""Test double of `python -m ins_core.worker JOB --serve` (protocol only, no model)."""
import json, os, struct, sys, zlib
job = sys.argv[1]
assert sys.argv[2:] == ["--serve"], sys.argv
TOP, BOTTOM = (200, 100, 50, 255), (0, 0, 255, 255)
def png(path, w, h):
    raw = b"".join(b"\0" + bytes(TOP if y < h // 2 else BOTTOM) * w for y in range(h))
    chunk = lambda tag, data: struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 6, 0, 0, 0)) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
log = open(os.path.join(job, "commands.jsonl"), "a")
print("loading the model (stray text)", flush=True)
print(json.dumps({"event": "ready"}), flush=True)
for line in sys.stdin:
    command = json.loads(line)
    if command["command"] == "quit":
        break
    log.write(json.dumps({**command, "pid": os.getpid()}) + "\n")
    log.flush()
    if command["width"] == 13:  # a request the server refuses (and serves on)
        print(json.dumps({"event": "error", "kind": "bad_input", "message": "Width 13 is unlucky; use another.", "log": "x.txt"}), flush=True)
        continue
    if command.get("depth_out"):  # the Z pass: 2 over the top half, 5 over the bottom, top row first
        w, h = command["width"], command["height"]
        with open(command["depth_out"], "wb") as f:
            f.write(b"".join(struct.pack("<f", 2.0 if y < h // 2 else 5.0) * w for y in range(h)))
    if command.get("mist"):  # the Mist pass: the request's start over the top half, its exponent over the bottom
        w, h, mist = command["width"], command["height"], command["mist"]
        with open(mist["out"], "wb") as f:
            f.write(b"".join(struct.pack("<f", mist["start"] if y < h // 2 else mist["exponent"]) * w for y in range(h)))
    if command.get("normal_out"):  # the Normal pass: +x over the top half, (0, 0.6, -0.8) over the bottom
        w, h = command["width"], command["height"]
        with open(command["normal_out"], "wb") as f:
            f.write(b"".join(struct.pack("<3f", *((1.0, 0.0, 0.0) if y < h // 2 else (0.0, 0.6, -0.8))) * w for y in range(h)))
    png(command["out"], command["width"], command["height"])
    print(json.dumps({"event": "rendered", "request_id": command["request_id"], "path": command["out"]}), flush=True)
'''


@pytest.fixture(scope="module")
def fake_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fake_server")
    (folder / "ins_fake_server.py").write_text(FAKE_SERVER)
    return folder


@pytest.fixture
def scene(monkeypatch, fake_dir):
    monkeypatch.setattr(worker_launch, "WORKER_MODULE", "ins_fake_server")
    monkeypatch.setattr(worker_launch, "EXTRA_PATHS", [str(fake_dir)])
    bpy.ops.wm.read_factory_settings(use_empty=True)
    ins_blender.register()
    scene = bpy.context.scene
    scene.render.engine = "INS"
    scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = 80, 60, 50
    scene.view_settings.view_transform = "Standard"  # the PNG's colours come back exactly...
    scene.render.dither_intensity = 0.0  # ...when saving the result adds no dither noise
    camera = bpy.data.objects.new("Camera", bpy.data.cameras.new("Camera"))
    scene.collection.objects.link(camera)
    camera.location = (3.0, -4.0, 2.0)
    camera.rotation_euler = Euler((math.radians(70), 0.0, math.radians(35)))
    camera.data.shift_x = 0.1
    scene.camera = camera
    yield scene
    servers = list(render_client._SERVERS.values())
    ins_blender.unregister()  # stops the render servers
    for server in servers:
        assert server.worker._proc.poll() is not None


def finished_job(root: Path, n_styles: int = 2) -> JobPaths:
    job = JobPaths(root)
    job.make_dirs()
    styles = [f"styles/{i}.png" for i in range(n_styles)]
    JobSpec(mode="nerf", styles=styles, outputs=["render_engine"]).save(job.job_json)
    ResultManifest(mode="nerf", styles=[str(i) for i in range(n_styles)], aabb=[-1, -1, -1, 1, 1, 1],
                   backbone={"name": "fake", "pretrained": False, "note": ""},
                   files={"checkpoint": "checkpoints/model.pt"}).save(job.result_json)
    return job


def render(tmp_path: Path, name: str = "out.png") -> np.ndarray:
    bpy.ops.render.render()
    path = tmp_path / name
    bpy.data.images["Render Result"].save_render(str(path))
    return np.asarray(Image.open(path).convert("RGBA"))


def commands(job: JobPaths) -> list[dict]:
    return [json.loads(line) for line in (job.root / "commands.jsonl").read_text().splitlines()]


def test_f12_renders_the_camera_through_the_server(scene, tmp_path):
    job = finished_job(tmp_path / "job")
    scene.ins.render_job_dir = str(job.root)
    for weight in (1.0, 3.0):
        scene.ins.styles.add().weight = weight
    pixels = render(tmp_path)
    assert pixels.shape == (30, 40, 4)  # 80x60 at 50 %
    assert (pixels[:15] == TOP).all() and (pixels[15:] == BOTTOM).all()  # not upside down
    (command,) = commands(job)
    camera = scene.camera
    k = camera_intrinsics(camera.data, 40, 30)
    assert (command["width"], command["height"]) == (40, 30)
    assert np.allclose(command["c2w"], camera_to_world(camera.matrix_world), atol=1e-6)
    assert command["fx"] == pytest.approx(k.fl_x) and command["fy"] == pytest.approx(k.fl_y)
    assert command["cx"] == pytest.approx(k.cx) and command["cy"] == pytest.approx(k.cy)
    assert command["cx"] < 20.0  # the camera's shift moved the principal point
    assert command["style_mix"] == pytest.approx([0.25, 0.75])
    assert not Path(command["out"]).exists()  # the engine removes the server's file
    assert command["samples"] == 4  # 2 x 2 rays a pixel unless the scene asks for others
    scene.ins.render_samples = "16"
    render(tmp_path)
    assert commands(job)[-1]["samples"] == 16 and commands(job)[-1]["lens"] is None


def test_f12_sends_the_cameras_depth_of_field(scene, tmp_path):
    """Camera > Depth of Field, as Cycles takes it: the aperture's radius is the focal length in
    metres over twice the f-stop; a Focus Object sets the distance along the camera's axis."""
    job = finished_job(tmp_path / "job")
    scene.ins.render_job_dir = str(job.root)
    dof = scene.camera.data.dof
    dof.use_dof, dof.focus_distance, dof.aperture_fstop = True, 4.5, 1.4
    dof.aperture_blades, dof.aperture_rotation, dof.aperture_ratio = 6, 0.3, 1.5
    render(tmp_path)
    lens = commands(job)[-1]["lens"]
    assert lens == pytest.approx({"focus_distance": 4.5, "aperture_radius": 0.05 / 2.8, "ratio": 1.5, "blades": 6, "rotation": 0.3})
    target = bpy.data.objects.new("Focus", None)
    scene.collection.objects.link(target)
    target.location = scene.camera.matrix_world @ Vector((1.0, 0.5, -7.0))  # 7 along the axis, off it
    dof.focus_object, dof.aperture_blades = target, 2  # two blades: round, as in Cycles
    bpy.context.view_layer.update()
    render(tmp_path)
    lens = commands(job)[-1]["lens"]
    assert lens["focus_distance"] == pytest.approx(7.0, rel=1e-5) and lens["blades"] == 0


def test_f12_sends_the_cameras_motion_over_the_shutter(scene, tmp_path):
    """Render > Motion Blur: the camera's poses at the shutter's opening, middle and closing (Shutter
    0.5 frames centred on the frame), read by evaluating the scene then, as Cycles does; none with
    Motion Blur off or a camera that holds still."""
    job = finished_job(tmp_path / "job")
    scene.ins.render_job_dir = str(job.root)
    camera = scene.camera
    for frame, x in ((1, 3.0), (3, 5.0)):
        camera.location.x = x
        camera.keyframe_insert("location", frame=frame)
    scene.frame_set(2)
    render(tmp_path)
    assert commands(job)[-1]["motion"] is None  # Motion Blur is off by default
    scene.render.use_motion_blur, scene.render.motion_blur_shutter, scene.render.motion_blur_position = True, 0.5, "CENTER"
    render(tmp_path)
    sent = commands(job)[-1]
    expected = []
    for frame, subframe in ((1, 0.75), (2, 0.0), (2, 0.25)):
        scene.frame_set(frame, subframe=subframe)
        expected.append(camera_to_world(camera.matrix_world))
    scene.frame_set(2)
    assert np.allclose(sent["motion"], expected, atol=1e-5)
    assert np.allclose(sent["motion"][1], sent["c2w"], atol=1e-6) and sent["motion"][0][0][3] < sent["motion"][2][0][3]
    assert scene.frame_current == 2 and scene.frame_subframe == 0.0  # the frame is as it was
    scene.frame_set(7)  # past the last key: the camera holds still
    render(tmp_path)
    assert commands(job)[-1]["motion"] is None


def test_f12_places_the_field_where_its_object_is(scene, tmp_path, capsys):
    """INS > Neural Render > Placement: the object's matrix_world goes as the field's placement (none
    when it leaves the field where it was captured); an unevenly scaled object is refused in one
    sentence, with nothing sent; the object's own motion during the shutter blurs the field."""
    job = finished_job(tmp_path / "job")
    scene.ins.render_job_dir = str(job.root)
    holder = bpy.data.objects.new("Holder", None)
    scene.collection.objects.link(holder)
    scene.ins.field_object = holder
    render(tmp_path)
    assert commands(job)[-1]["placement"] is None  # identity: where it was captured
    holder.location, holder.rotation_euler, holder.scale = (1.0, 2.0, -0.5), Euler((0.3, 0.0, 1.1)), (2.0, 2.0, 2.0)
    bpy.context.view_layer.update()
    render(tmp_path)
    assert np.allclose(commands(job)[-1]["placement"], [list(row) for row in holder.matrix_world], atol=1e-6)
    holder.scale = (2.0, 1.0, 2.0)
    bpy.context.view_layer.update()
    sent = len(commands(job))
    assert "Object 'Holder' places the INS field but is not scaled evenly (its axes are 2, 1, 2 long)" in _render_error(capsys)
    assert len(commands(job)) == sent  # nothing sent
    # A still camera, the field's object sliding: the camera's poses relative to it, where it stands at the frame.
    holder.scale = (1.0, 1.0, 1.0)
    for frame, x in ((1, 0.0), (3, 2.0)):
        holder.location = (x, 0.0, 0.0)
        holder.keyframe_insert("location", frame=frame)
    scene.frame_set(2)
    scene.render.use_motion_blur, scene.render.motion_blur_shutter = True, 1.0
    render(tmp_path)
    sent = commands(job)[-1]
    camera = np.array(camera_to_world(scene.camera.matrix_world))
    assert np.allclose(sent["placement"], [list(row) for row in holder.matrix_world], atol=1e-6)
    shifts = [pose[0][3] - camera[0][3] for pose in sent["motion"]]  # the field moving +x: the camera -x relative to it
    assert shifts[0] > 0.2 and abs(shifts[1]) < 1e-5 and shifts[2] < -0.2
    assert np.allclose(np.array(sent["motion"])[:, :3, :3], camera[:3, :3], atol=1e-6)


def test_the_field_hides_with_its_object(scene, tmp_path):
    """The object placing the field hidden from renders (its camera icon; Show Originals), or
    deleted: F12 renders the world alone, with the passes of an empty frame, and asks no server;
    shown again, the field is back. Hidden in the viewport only (the eye), F12 still draws it."""
    from ins_blender.placement import field_hidden

    job = finished_job(tmp_path / "job")
    scene.ins.render_job_dir = str(job.root)
    scene.world = bpy.data.worlds.new("World")
    scene.world.color = (0.25, 0.5, 0.125)
    if bpy.app.version < (5, 0, 0):
        scene.world.use_nodes = False
    else:
        background = next(node for node in scene.world.node_tree.nodes if node.type == "BACKGROUND")
        background.inputs["Color"].default_value = (0.25, 0.5, 0.125, 1.0)
        background.inputs["Strength"].default_value = 1.0
    layer = bpy.context.view_layer
    layer.use_pass_z = layer.use_pass_mist = layer.use_pass_normal = True
    holder = bpy.data.objects.new("Stylized", None)
    scene.collection.objects.link(holder)
    scene.ins.field_object = holder
    render_passes(tmp_path)
    assert len(commands(job)) == 1  # shown: the field is rendered
    holder.hide_set(True)  # hidden in the viewport only: F12 still renders the field
    render_passes(tmp_path)
    assert len(commands(job)) == 2
    assert "is hidden here" in field_hidden(scene, bpy.context.evaluated_depsgraph_get())  # but the viewport does not
    holder.hide_set(False)
    holder.hide_render = True
    passes = render_passes(tmp_path)
    assert len(commands(job)) == 2  # hidden from renders: nothing asked of the server
    assert np.allclose(passes["Combined"], [0.25, 0.5, 0.125, 1.0], atol=1e-6)  # the world's colour, linear
    assert (passes["Depth"] == NO_DEPTH).all() and (passes["Mist"] == 1.0).all() and (passes["Normal"] == 0.0).all()
    scene.render.film_transparent = True
    assert np.allclose(render_passes(tmp_path)["Combined"], 0.0)  # nothing at all over a transparent film
    holder.hide_render = False
    scene.collection.objects.unlink(holder)  # deleted (the Placement pointer still holds it)
    assert "'Stylized' is no longer in scene" in field_hidden(scene, bpy.context.evaluated_depsgraph_get())
    assert np.allclose(render_passes(tmp_path)["Combined"], 0.0) and len(commands(job)) == 2
    scene.ins.field_object = None  # cleared: the field where it was captured
    render_passes(tmp_path)
    assert len(commands(job)) == 3 and commands(job)[-1]["placement"] is None


def test_every_stylized_mesh_shown_brings_its_field(scene, tmp_path):
    """Two parts of a scene stylized apart, and a copy of a stylized mesh: F12 asks the engine's
    own job's server for its field (where its Placement is) and every other stylized mesh shown,
    each placed by itself; not those hidden from renders, not a mesh-only job's. Placed by an
    Empty, the own job's meshes are the Empty's field alone; the Placement hidden, the others
    still render, through the first one's server."""
    own, other, mesh_only = (finished_job(tmp_path / name) for name in ("own", "other", "mesh_only"))
    spec = JobSpec.load(mesh_only.job_json)
    spec.outputs = ["mesh"]
    spec.save(mesh_only.job_json)
    scene.ins.render_job_dir = str(own.root)

    def stylized(name: str, job: JobPaths, x: float):
        obj = bpy.data.objects.new(name, bpy.data.meshes.new(name))
        obj["ins_job"] = str(job.root)
        obj.location.x = x
        scene.collection.objects.link(obj)
        return obj

    placed = stylized("Own", own, 0.0)
    for name, job, x in (("Own copy", own, 1.5), ("Other", other, -2.0), ("Mesh only", mesh_only, 3.0)):
        stylized(name, job, x)
    hidden = stylized("Other hidden", other, 5.0)
    hidden.hide_render = True
    scene.ins.field_object = placed
    bpy.context.view_layer.update()
    moved = lambda x: [[1.0, 0.0, 0.0, x], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]]  # noqa: E731
    render(tmp_path)
    sent = commands(own)[-1]
    assert sent["placement"] is None  # the own mesh where it was captured
    assert sent["others"] == sorted([{"job": str(own.root.resolve()), "placement": moved(1.5), "style_mix": None, "motion": None},
                                     {"job": str(other.root.resolve()), "placement": moved(-2.0), "style_mix": None, "motion": None}],
                                    key=lambda field: (field["job"], str(field["placement"])))
    assert not (mesh_only.root / "commands.jsonl").exists()
    spec.outputs = ["mesh", "render_engine"]  # the job made again with a neural render: its mesh brings it now
    spec.save(mesh_only.job_json)
    render(tmp_path)
    assert str(mesh_only.root.resolve()) in [field["job"] for field in commands(own)[-1]["others"]]
    spec.outputs = ["mesh"]
    spec.save(mesh_only.job_json)
    render(tmp_path)
    assert str(mesh_only.root.resolve()) not in [field["job"] for field in commands(own)[-1]["others"]]
    holder = bpy.data.objects.new("Holder", None)
    scene.collection.objects.link(holder)
    holder.location.z = 1.0
    scene.ins.field_object = holder  # an Empty places the own field: its meshes are not more copies of it
    bpy.context.view_layer.update()
    render(tmp_path)
    sent = commands(own)[-1]
    assert sent["placement"] == [[1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 1.0, 1.0], [0, 0, 0, 1.0]]
    assert [field["job"] for field in sent["others"]] == [str(other.root.resolve())]
    holder.hide_render = True  # the own field hidden: the other mesh's field alone, through its own server
    sent_before = len(commands(own))
    render(tmp_path)
    assert len(commands(own)) == sent_before
    through_other = commands(other)[-1]
    assert through_other["placement"] == moved(-2.0) and through_other["others"] is None and through_other["style_mix"] is None
    # Motion Blur, the other mesh sliding during the shutter: its field blurs by its own motion, the
    # Empty's (still, as the camera is) not at all.
    holder.hide_render = False
    part = bpy.data.objects["Other"]
    for frame, x in ((1, -3.0), (3, -1.0)):
        part.location.x = x
        part.keyframe_insert("location", frame=frame)
    scene.frame_set(2)
    scene.render.use_motion_blur, scene.render.motion_blur_shutter = True, 1.0
    render(tmp_path)
    sent = commands(own)[-1]
    assert sent["motion"] is None and sent["others"][0]["placement"] == moved(-2.0)
    camera_x = camera_to_world(scene.camera.matrix_world)[0][3]
    shifts = [pose[0][3] - camera_x for pose in sent["others"][0]["motion"]]  # the mesh moving +x: the camera -x relative to it
    assert shifts[0] > 0.2 and abs(shifts[1]) < 1e-5 and shifts[2] < -0.2


def render_passes(tmp_path: Path) -> dict[str, np.ndarray]:
    """F12, the result saved as an uncompressed multilayer EXR and read back: {pass name: [H, W(, C)]}."""
    return render_result.render_passes(bpy, tmp_path)


@pytest.mark.parametrize("crop", [False, True])
def test_a_render_region_renders_its_pixels_only_where_blender_puts_them(scene, tmp_path, crop):
    """Ctrl+B: the server is asked for the region alone, through the frame's camera (the principal
    point moved by the region's corner), and Blender lays it exactly there (awkward borders: the
    region's edges are cut in single precision)."""
    job = finished_job(tmp_path / "job")
    scene.ins.render_job_dir = str(job.root)
    scene.render.film_transparent = True
    settings = scene.render
    settings.use_border, settings.use_crop_to_border = True, crop
    settings.border_min_x, settings.border_max_x, settings.border_min_y, settings.border_max_y = 0.213, 0.6, 0.29, 0.97
    pixels = render(tmp_path)
    command = commands(job)[-1]
    k = camera_intrinsics(scene.camera.data, 40, 30)
    left, top = round(k.cx - command["cx"]), round(k.cy - command["cy"])
    assert (command["cx"], command["cy"]) == pytest.approx((k.cx - left, k.cy - top))  # whole pixels
    width, height = command["width"], command["height"]
    assert 0 < width < 40 and 0 < height < 30 and command["fx"] == pytest.approx(k.fl_x)
    if crop:  # the image is the region
        assert pixels.shape == (height, width, 4)
        region = pixels
    else:  # the frame, the region's pixels where the server's rays went, nothing elsewhere
        assert pixels.shape == (30, 40, 4)
        filled_rows, filled_cols = np.nonzero(pixels[..., 3].max(axis=1))[0], np.nonzero(pixels[..., 3].max(axis=0))[0]
        assert (filled_rows[0], filled_rows[-1] + 1, filled_cols[0], filled_cols[-1] + 1) == (top, top + height, left, left + width)
        region = pixels[top:top + height, left:left + width]
    assert (region[:height // 2] == TOP).all() and (region[height // 2:] == BOTTOM).all()  # the server's image, upright


def test_f12_renders_an_orthographic_camera_with_parallel_rays_and_refuses_a_panoramic_one(scene, tmp_path, capsys):
    job = finished_job(tmp_path / "job")
    scene.ins.render_job_dir = str(job.root)
    camera = scene.camera
    render(tmp_path)
    assert commands(job)[-1]["orthographic"] is False
    camera.data.type, camera.data.ortho_scale = "ORTHO", 8.0
    render(tmp_path)
    command = commands(job)[-1]
    assert command["orthographic"] is True
    assert command["fx"] == pytest.approx(40 / 8.0) and command["fy"] == pytest.approx(40 / 8.0)  # pixels per unit
    assert command["cx"] == pytest.approx(20.0 - 0.1 * 40)  # the shift, in units of the wider side
    camera.data.type = "PANO"
    assert "Camera 'Camera' is panoramic; the INS engine renders perspective and orthographic cameras" in _render_error(capsys)
    assert len(commands(job)) == 2  # nothing sent


def pass_on_request(scene, tmp_path, name: str, request_field: str, switch: str):
    """F12 of a finished job over a transparent film: without the pass `name` (and the server not
    asked for it: the command's `request_field` empty) until the view layer's `switch` is on; then
    (the job, the passes) with it."""
    job = finished_job(tmp_path / "job")
    scene.ins.render_job_dir = str(job.root)
    scene.render.film_transparent = True
    assert name not in render_passes(tmp_path)
    assert commands(job)[-1][request_field] is None
    setattr(bpy.context.view_layer, switch, True)
    passes = render_passes(tmp_path)
    assert name in passes
    return job, passes


def test_the_depth_pass_comes_from_the_server_when_the_view_layer_asks(scene, tmp_path):
    job, passes = pass_on_request(scene, tmp_path, "Depth", "depth_out", "use_pass_z")
    assert passes["Depth"].shape == (30, 40)
    assert (passes["Depth"][:15] == 2.0).all() and (passes["Depth"][15:] == 5.0).all()  # not upside down
    assert np.allclose(passes["Combined"][:15, :, 3], 1.0) and passes["Combined"][:15, :, 0].max() > 0.5  # the image too
    depth_file = Path(commands(job)[-1]["depth_out"])
    assert depth_file.suffix == ".depth" and not depth_file.exists()  # the engine removes the server's files


def test_the_mist_pass_comes_from_the_server_with_the_worlds_mist_settings(scene, tmp_path):
    job, _ = pass_on_request(scene, tmp_path, "Mist", "mist", "use_pass_mist")
    assert commands(job)[-1]["mist"]["start"] == 0.0 and commands(job)[-1]["mist"]["depth"] == 100.0  # no world: Cycles' own
    scene.world = bpy.data.worlds.new("World")
    mist = scene.world.mist_settings
    mist.start, mist.depth, mist.falloff = 0.75, 12.0, "INVERSE_QUADRATIC"
    passes = render_passes(tmp_path)
    request = commands(job)[-1]["mist"]
    assert (request["start"], request["depth"], request["exponent"]) == (0.75, 12.0, 0.5)
    assert passes["Mist"].shape == (30, 40)
    assert (passes["Mist"][:15] == 0.75).all() and (passes["Mist"][15:] == 0.5).all()  # not upside down
    assert "Depth" not in passes and commands(job)[-1]["depth_out"] is None  # only what the view layer asks for
    assert not Path(request["out"]).exists()  # the engine removes the server's files


def test_the_normal_pass_comes_from_the_server_when_the_view_layer_asks(scene, tmp_path):
    job, passes = pass_on_request(scene, tmp_path, "Normal", "normal_out", "use_pass_normal")
    assert passes["Normal"].shape == (30, 40, 3)
    assert (passes["Normal"][:15] == [1.0, 0.0, 0.0]).all()  # not upside down, the channels in order
    assert np.allclose(passes["Normal"][15:], [0.0, 0.6, -0.8])
    assert "Depth" not in passes and "Mist" not in passes  # only what the view layer asks for
    assert not Path(commands(job)[-1]["normal_out"]).exists()  # the engine removes the server's files


def test_the_world_colour_lies_behind_the_field_unless_film_is_transparent(scene, tmp_path):
    job = finished_job(tmp_path / "job")
    scene.ins.render_job_dir = str(job.root)
    scene.render.film_transparent = False
    scene.world = None
    render(tmp_path)
    assert commands(job)[-1]["background"] == [0.0, 0.0, 0.0]  # no world: black, as in Cycles
    world = scene.world = bpy.data.worlds.new("World")
    world.color = (0.3, 0.2, 0.1)
    if bpy.app.version < (5, 0, 0):  # Blender 5 gives every world its nodes
        world.use_nodes = True
    background = next(node for node in world.node_tree.nodes if node.type == "BACKGROUND")
    background.inputs["Color"].default_value = (0.2, 0.4, 0.8, 1.0)
    background.inputs["Strength"].default_value = 0.5
    render(tmp_path)
    assert commands(job)[-1]["background"] == pytest.approx([0.1, 0.2, 0.4])
    sky = world.node_tree.nodes.new("ShaderNodeTexSky")
    world.node_tree.links.new(sky.outputs["Color"], background.inputs["Color"])
    render(tmp_path)
    assert commands(job)[-1]["background"] == pytest.approx([0.3, 0.2, 0.1])  # a texture: the world's viewport colour
    scene.render.film_transparent = True
    render(tmp_path)
    assert commands(job)[-1]["background"] is None


def test_one_server_serves_every_frame_and_the_style_mix_animates(scene, tmp_path):
    job = finished_job(tmp_path / "job")
    scene.ins.job_dir = str(job.root)  # no render job chosen: the latest job
    a, b = scene.ins.styles.add(), scene.ins.styles.add()
    for frame, (wa, wb) in ((1, (1.0, 0.0)), (3, (0.0, 1.0))):
        a.weight, b.weight = wa, wb
        a.keyframe_insert("weight", frame=frame)
        b.keyframe_insert("weight", frame=frame)
    mixes = []
    for frame in (1, 2, 3):
        scene.frame_set(frame)
        render(tmp_path, f"frame{frame}.png")
    sent = commands(job)
    assert len({c["pid"] for c in sent}) == 1  # started once, reused
    mixes = [c["style_mix"] for c in sent]
    assert mixes[0] == pytest.approx([1.0, 0.0]) and mixes[2] == pytest.approx([0.0, 1.0])
    assert 0.0 < mixes[1][0] < 1.0 and sum(mixes[1]) == pytest.approx(1.0)


def test_a_rerun_job_gets_a_fresh_server(scene, tmp_path):
    job = finished_job(tmp_path / "job")
    scene.ins.render_job_dir = str(job.root)
    render(tmp_path)
    first = render_client._SERVERS[str(job.root.resolve())]
    time.sleep(0.01)
    os.utime(job.result_json, (time.time() + 5, time.time() + 5))  # the job finished again
    render(tmp_path)
    assert first.worker._proc.poll() is not None  # the old one was stopped
    assert len({c["pid"] for c in commands(job)}) == 2


def test_viewport_intrinsics_match_the_camera_intrinsics(scene):
    # The viewport preview reads its pinhole from the region's projection matrix; through a
    # camera that matrix is the camera's own, so both routes must give the same intrinsics.
    camera = scene.camera
    camera.data.shift_y = -0.05
    for kind in ("PERSP", "ORTHO"):
        camera.data.type = kind
        depsgraph = bpy.context.evaluated_depsgraph_get()
        depsgraph.update()
        for width, height in ((40, 30), (30, 40)):
            projection = camera.calc_matrix_camera(depsgraph, x=width, y=height)
            k = camera_intrinsics(camera.data, width, height)
            assert viewport_preview.is_orthographic(projection) == (kind == "ORTHO")
            assert viewport_preview.intrinsics_from_projection(projection, width, height) == pytest.approx((k.fl_x, k.fl_y, k.cx, k.cy), rel=1e-5)


def test_an_orthographic_viewport_looks_from_half_the_clip_end_behind_its_eye(scene):
    """Blender draws an orthographic view (Numpad 5, the front, side and top views) with what lies
    within half its clip end on either side of the eye; through an orthographic camera, only what
    lies in front of the camera, as a render does."""
    camera = scene.camera
    camera.data.type, camera.data.ortho_scale = "ORTHO", 6.0
    depsgraph = bpy.context.evaluated_depsgraph_get()
    depsgraph.update()
    region = SimpleNamespace(width=40, height=30)
    eye = camera.matrix_world.inverted()
    rv3d = SimpleNamespace(window_matrix=camera.calc_matrix_camera(depsgraph, x=40, y=30), view_matrix=eye, view_perspective="ORTHO")
    view = viewport_preview.viewport_view(region, rv3d, clip_end=100.0)
    assert view.orthographic and view.fx == pytest.approx(40 / 6.0)
    backwards = camera.matrix_world.col[2].xyz
    assert np.allclose(np.asarray(view.c2w)[:3, 3], camera.matrix_world.translation + 50.0 * backwards, atol=1e-4)
    rv3d.view_perspective = "CAMERA"
    assert np.allclose(viewport_preview.viewport_view(region, rv3d, clip_end=100.0).c2w, camera.matrix_world, atol=1e-6)
    camera.data.type = "PERSP"
    depsgraph.update()
    rv3d.window_matrix, rv3d.view_perspective = camera.calc_matrix_camera(depsgraph, x=40, y=30), "PERSP"
    view = viewport_preview.viewport_view(region, rv3d, clip_end=100.0)
    assert not view.orthographic and np.allclose(view.c2w, camera.matrix_world, atol=1e-6)


def test_the_viewports_render_region_is_the_views_own_or_the_scenes_in_the_camera_view(scene):
    """As Cycles' viewport: outside the camera view, View > Render Region (fractions of the region);
    through the camera, the scene's Render Region as fractions of the camera's frame, wherever the
    view has zoomed or panned that frame."""
    space = SimpleNamespace(use_render_border=True, render_border_min_x=0.25, render_border_max_x=0.5,
                            render_border_min_y=0.1, render_border_max_y=1.2)
    free_view = SimpleNamespace(view_perspective="PERSP")
    assert viewport_preview.render_border(scene, space, free_view, 160, 120) == (40, 12, 40, 108)  # clipped at the top
    space.render_border_min_x = space.render_border_max_x = 0.5
    with pytest.raises(render_client.EngineError, match="render region lies outside the view"):
        viewport_preview.render_border(scene, space, free_view, 160, 120)
    space.use_render_border = False
    assert viewport_preview.render_border(scene, space, free_view, 160, 120) is None

    # Through the camera: its frame fills a region of the scene's aspect (80x60 at 50 %) under the
    # camera's own projection (the shift included), and half of it, centred, zoomed out twice.
    camera = scene.camera
    scene.render.use_border = True
    scene.render.border_min_x, scene.render.border_max_x = 0.2, 0.7
    scene.render.border_min_y, scene.render.border_max_y = 0.25, 0.75
    depsgraph = bpy.context.evaluated_depsgraph_get()
    projection = camera.calc_matrix_camera(depsgraph, x=160, y=120)
    camera_view = SimpleNamespace(view_perspective="CAMERA", perspective_matrix=projection @ camera.matrix_world.inverted())
    assert viewport_preview.camera_frame_in_region(camera, scene, camera_view.perspective_matrix, 160, 120) == pytest.approx((0, 0, 160, 120), abs=1e-3)
    assert viewport_preview.render_border(scene, space, camera_view, 160, 120, camera) == (32, 30, 80, 60)
    zoomed_out = projection.copy()
    zoomed_out[0] *= 0.5
    zoomed_out[1] *= 0.5
    camera_view.perspective_matrix = zoomed_out @ camera.matrix_world.inverted()
    assert viewport_preview.render_border(scene, space, camera_view, 160, 120, camera) == (56, 45, 40, 30)
    scene.render.use_border = False
    assert viewport_preview.render_border(scene, space, camera_view, 160, 120, camera) is None


def test_the_viewport_preview_renders_only_the_render_region(scene, tmp_path, monkeypatch):
    """The requests cover the border's pixels alone, through the region's camera with its principal
    point moved to the border's corner (rows counted down from the top), at every refinement."""
    viewport = PreviewOfJob(scene, tmp_path, monkeypatch)
    c2w = [[1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 1.0, 5.0], [0, 0, 0, 1.0]]
    border = (40, 8, 64, 48)  # left, bottom, width, height; its top row is region row 88 - 8 - 48 = 32
    viewport.settle(viewport_preview.View(c2w, 100.0, 90.0, 80.0, 44.0, 160, 88, border=border))
    sent = commands(viewport.job)
    assert [(c["width"], c["height"]) for c in sent] == [(8, 6), (16, 12), (32, 24), (64, 48)]
    full = sent[-1]
    assert (full["fx"], full["fy"], full["cx"], full["cy"]) == pytest.approx((100.0, 90.0, 80.0 - 40, 44.0 - 32))
    eighth = sent[0]
    assert (eighth["fx"], eighth["cx"], eighth["cy"]) == pytest.approx((100.0 / 8, 40.0 / 8, 12.0 / 8))
    assert viewport.preview.shown == (64, 48) and viewport.preview.shown_border == border  # drawn over the border alone


def test_the_viewport_preview_renders_again_when_the_fields_object_moves(scene, tmp_path, monkeypatch):
    """A settled preview asks again, from the eighth size up, once the field's placement changes
    (what view_draw reads from INS > Neural Render > Placement), and sends it with every request."""
    viewport = PreviewOfJob(scene, tmp_path, monkeypatch)
    c2w = [[1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 1.0, 5.0], [0, 0, 0, 1.0]]
    viewport.settle(viewport_preview.View(c2w, 100.0, 100.0, 80.0, 44.0, 160, 88))
    settled = len(commands(viewport.job))
    moved = [[1.0, 0, 0, 0.5], [0, 1.0, 0, 0], [0, 0, 1.0, 0], [0, 0, 0, 1.0]]
    viewport.settle(viewport_preview.View(c2w, 100.0, 100.0, 80.0, 44.0, 160, 88, placement=moved))
    again = commands(viewport.job)[settled:]
    assert [(c["width"], c["height"]) for c in again] == [(20, 11), (40, 22), (80, 44), (160, 88)]
    assert all(c["placement"] == moved for c in again)
    assert all(c["placement"] is None for c in commands(viewport.job)[:settled])
    # Another stylized mesh shown (or moved): from the eighth size again, its field sent with each request.
    settled = len(commands(viewport.job))
    others = [{"job": str(tmp_path / "other"), "placement": moved, "style_mix": None, "motion": None}]
    viewport.settle(viewport_preview.View(c2w, 100.0, 100.0, 80.0, 44.0, 160, 88, placement=moved, others=others))
    again = commands(viewport.job)[settled:]
    assert len(again) == 4 and all(c["others"] == others for c in again)


def test_the_viewport_through_the_camera_renders_its_depth_of_field(scene, tmp_path, monkeypatch):
    """As Cycles' viewport: through the camera the preview is rendered with the camera's lens; in a
    free view it is not (the lens is the camera's, not the view's)."""
    viewport = PreviewOfJob(scene, tmp_path, monkeypatch)
    camera = scene.camera
    depsgraph = bpy.context.evaluated_depsgraph_get()
    region = SimpleNamespace(width=40, height=30)
    rv3d = SimpleNamespace(window_matrix=camera.calc_matrix_camera(depsgraph, x=40, y=30), view_matrix=camera.matrix_world.inverted(),
                           view_perspective="PERSP")
    lens = {"focus_distance": 3.0, "aperture_radius": 0.05, "ratio": 1.0, "blades": 0, "rotation": 0.0}
    assert viewport_preview.viewport_view(region, rv3d, 100.0, lens=lens).lens is None
    rv3d.view_perspective = "CAMERA"
    viewport.settle(viewport_preview.viewport_view(region, rv3d, 100.0, lens=lens))
    # the blur ends smooth, at 16 rays a pixel, though Viewport Samples say 1
    assert [(c["lens"], c["samples"]) for c in commands(viewport.job)] == [(lens, 1)] * len(viewport_preview.VIEWPORT_LEVELS) + [(lens, 16)]
    sharper = viewport_preview.viewport_view(region, rv3d, 100.0, lens={**lens, "aperture_radius": 0.01})
    viewport.preview.update(scene, sharper)  # another aperture: a new view, refined again from the coarsest
    assert viewport.preview.status() == "refining 5x4"


class FakeViewportEngine:
    def __init__(self):
        self.redraws = 0

    def tag_redraw(self):
        self.redraws += 1


def run_timer(function, timeout: float = 60.0) -> None:
    """What Blender's timers do with `function`: call it again after the interval it returns."""
    deadline = time.monotonic() + timeout
    while (interval := function()) is not None:
        assert time.monotonic() < deadline, "the timer never stopped"
        time.sleep(interval)


class PreviewOfJob:
    """A ViewportPreview of a finished job (the scene's latest), its timers caught to be run here."""

    def __init__(self, scene, tmp_path, monkeypatch) -> None:
        self.scene, self.job = scene, finished_job(tmp_path / "job")
        scene.ins.job_dir = str(self.job.root)
        self.timers = []
        monkeypatch.setattr(viewport_preview, "schedule", lambda function, delay: self.timers.append(function))
        self.engine = FakeViewportEngine()  # kept here: the preview holds it weakly
        self.preview = viewport_preview.ViewportPreview(self.engine)

    def settle(self, view) -> list[str]:
        """Draw `view`, then run the timers and redraw until nothing polls: the statuses shown on the way."""
        self.preview.update(self.scene, view)
        statuses = []
        while self.timers:
            assert len(statuses) < 20, "the preview never settled"
            run_timer(self.timers.pop())
            self.preview.update(self.scene, view)
            statuses.append(self.preview.status())
        return statuses


def test_the_viewport_preview_appears_low_res_first_and_refines(scene, tmp_path, monkeypatch):
    """view_draw may neither write Blender data nor wait: it only submits a request; a timer takes
    the server's answer, loads it into a hidden image and asks for a redraw, which draws it and
    submits the next, finer level."""
    job = finished_job(tmp_path / "job")
    scene.ins.job_dir = str(job.root)
    timers = []
    monkeypatch.setattr(viewport_preview, "schedule", lambda function, delay: timers.append(function))
    fake = FakeViewportEngine()
    preview = viewport_preview.ViewportPreview(fake)
    c2w = [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 5.0], [0.0, 0.0, 0.0, 1.0]]
    view = viewport_preview.View(c2w, 100.0, 100.0, 80.0, 44.0, 160, 88)
    images = sorted(bpy.data.images.keys())
    started = time.monotonic()
    preview.update(scene, view)  # what view_draw does: starts the server, does not wait for it
    assert time.monotonic() - started < 1.0 and sorted(bpy.data.images.keys()) == images
    assert preview.status() in ("loading the stylized model...", "refining 20x11")
    shown = []
    for _ in range(len(viewport_preview.VIEWPORT_LEVELS) + 1):
        assert len(timers) == 1  # one poller at a time
        redraws = fake.redraws
        run_timer(timers.pop())
        assert fake.redraws > redraws  # the timer asked for the redraw that shows its news
        if preview.shown and preview.shown not in shown:
            shown.append(preview.shown)
            image = bpy.data.images[viewport_preview.VIEWPORT_IMAGE]
            assert tuple(image.size) == preview.shown and image.packed_file is not None
            assert preview.image() == image and preview.status() == f"{preview.shown[0]}x{preview.shown[1]}"
        preview.update(scene, view)  # the redraw: submits the next level
        if preview.level == len(viewport_preview.VIEWPORT_LEVELS):
            break
    assert shown == [(20, 11), (40, 22), (80, 44), (160, 88)] and not timers  # done: nothing polls
    sent = commands(job)
    assert [(c["width"], c["height"]) for c in sent] == shown
    assert sent[0]["fx"] == pytest.approx(100.0 / 8) and sent[-1]["cx"] == pytest.approx(80.0)
    assert {command["samples"] for command in sent} == {1}  # the preview is quick: one ray a pixel
    # A new view starts again from the coarsest level.
    preview.update(scene, viewport_preview.View(c2w, 120.0, 120.0, 80.0, 44.0, 160, 88))
    assert preview.status() == "refining 20x11"
    run_timer(timers.pop())
    assert preview.shown == (20, 11)


def test_viewport_samples_add_an_anti_aliased_full_size_last(scene, tmp_path, monkeypatch):
    scene.ins.viewport_samples = "9"
    viewport = PreviewOfJob(scene, tmp_path, monkeypatch)
    view = viewport_preview.View([[1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 1.0, 5.0], [0, 0, 0, 1.0]], 100.0, 100.0, 80.0, 44.0, 160, 88)
    statuses = viewport.settle(view)
    sent = commands(viewport.job)
    assert [(c["width"], c["height"], c["samples"]) for c in sent] == [(20, 11, 1), (40, 22, 1), (80, 44, 1), (160, 88, 1), (160, 88, 9)]
    assert "refining 160x88, 9 samples a pixel" in statuses and statuses[-1] == "160x88"
    scene.ins.viewport_samples = "4"  # another count: refined again from the coarsest
    viewport.preview.update(scene, view)
    assert viewport.preview.status() == "refining 20x11"


def test_the_viewport_preview_shows_a_server_failure(scene, tmp_path, monkeypatch):
    job = finished_job(tmp_path / "job")
    scene.ins.job_dir = str(job.root)
    monkeypatch.setattr(worker_launch, "WORKER_MODULE", "ins_no_such_server_module")
    timers = []
    monkeypatch.setattr(viewport_preview, "schedule", lambda function, delay: timers.append(function))
    fake = FakeViewportEngine()
    preview = viewport_preview.ViewportPreview(fake)
    preview.update(scene, viewport_preview.View([[1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 1.0, 5.0], [0, 0, 0, 1.0]], 50.0, 50.0, 20.0, 20.0, 40, 40))
    run_timer(timers.pop())
    assert fake.redraws and "cannot import" in preview.status() and worker_process.SERVER_STDERR_NAME in preview.status()
    assert not timers  # it stopped polling


def test_an_image_that_does_not_load_is_shown_as_an_error(scene, tmp_path, monkeypatch):
    """Blender drops a timer that raises: the poller reports instead, or the preview would wait forever."""
    job = finished_job(tmp_path / "job")
    scene.ins.job_dir = str(job.root)
    timers = []
    monkeypatch.setattr(viewport_preview, "schedule", lambda function, delay: timers.append(function))

    def broken(path):
        raise RuntimeError("Error: Cannot read the image")

    monkeypatch.setattr(viewport_preview, "load_viewport_image", broken)
    fake = FakeViewportEngine()  # alive as long as its viewport: the preview holds it weakly
    preview = viewport_preview.ViewportPreview(fake)
    view = viewport_preview.View([[1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 1.0, 5.0], [0, 0, 0, 1.0]], 50.0, 50.0, 20.0, 20.0, 40, 40)
    for _ in range(2):  # the server gets ready, then the answer comes
        preview.update(scene, view)
        run_timer(timers.pop())
    assert preview.status() == "viewport: RuntimeError: Error: Cannot read the image" and preview.pending is None


def _render_error(capsys) -> str:
    try:
        bpy.ops.render.render()
    except RuntimeError as error:
        return str(error)
    return capsys.readouterr().out + capsys.readouterr().err


def test_no_finished_job_gives_a_clear_error(scene, tmp_path, capsys):
    message = _render_error(capsys)
    assert f"Scene '{scene.name}' has no finished INS job to render" in message
    job = JobPaths(tmp_path / "unfinished")
    job.make_dirs()
    scene.ins.render_job_dir = str(job.root)
    assert "is not finished (no result/result.json)" in _render_error(capsys)
    mesh_only = finished_job(tmp_path / "mesh_only")
    spec = JobSpec.load(mesh_only.job_json)
    spec.outputs = ["mesh"]
    spec.save(mesh_only.job_json)
    scene.ins.render_job_dir = str(mesh_only.root)
    assert "without the 'Neural Render' output" in _render_error(capsys)
    assert not render_client._SERVERS  # nothing was started


def test_a_server_that_dies_gives_a_clear_error(scene, tmp_path, capsys, monkeypatch):
    job = finished_job(tmp_path / "job")
    scene.ins.render_job_dir = str(job.root)
    monkeypatch.setattr(worker_launch, "WORKER_MODULE", "ins_no_such_server_module")
    message = _render_error(capsys)
    assert "cannot import 'ins_no_such_server_module'" in message or "stopped unexpectedly" in message
    assert str(job.root / worker_process.SERVER_STDERR_NAME) in message
    # A failed server is not restarted at every redraw: the next render gets the same sentence.
    assert _render_error(capsys) == message
    assert (job.root / worker_process.SERVER_STDERR_NAME).read_text().count("render server started") == 1


SILENT_SERVER = r"""
import json, sys
print(json.dumps({"event": "ready"}), flush=True)
for line in sys.stdin:  # takes every request and answers none
    pass
"""


def test_a_frame_the_server_refuses_ends_at_once_with_its_sentence(scene, tmp_path, capsys):
    """The server answers a request it cannot render with an error event and serves on: the F12
    ends at once with its sentence (it used to wait for the render timeout, an hour), and the next
    frame renders."""
    job = finished_job(tmp_path / "job")
    scene.ins.render_job_dir = str(job.root)
    scene.render.resolution_x, scene.render.resolution_percentage = 26, 50  # 13 pixels wide
    started = time.monotonic()
    assert "The INS render server refused the frame: Width 13 is unlucky; use another." in _render_error(capsys)
    assert time.monotonic() - started < 60  # (the server's start included; not the hour's timeout)
    scene.render.resolution_x = 80
    assert render(tmp_path).shape == (30, 40, 4)


def test_a_frame_the_server_never_answers_ends_by_the_timeout_or_a_stop(scene, fake_dir, tmp_path, monkeypatch):
    (fake_dir / "ins_silent_server.py").write_text(SILENT_SERVER)
    monkeypatch.setattr(worker_launch, "WORKER_MODULE", "ins_silent_server")
    server = render_client.get_server(finished_job(tmp_path / "job"))
    assert server.wait_ready(timeout=60)
    waits = []
    with pytest.raises(render_client.EngineError, match=r"took longer than 0.3 s for one frame; see the log '.*render_server_stderr.txt'"):
        server.render([[1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 1.0, 5.0], [0, 0, 0, 1.0]], 10, 10, 4, 4, 8, 8,
                      timeout=0.3, on_wait=lambda: waits.append(1))
    assert waits  # the caller heard of the wait meanwhile (Blender's status line)
    stops = iter([False, False, True])
    assert server.render([[1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 1.0, 5.0], [0, 0, 0, 1.0]], 10, 10, 4, 4, 8, 8,
                         should_stop=lambda: next(stops)) is None  # Esc: no frame, no error


OWN_RENDER = r"""
import json, sys
import numpy as np, torch
from ins_core.data.lens import ThinLens
from ins_core.render.frame import render_frame
from ins_core.train.loading import open_run
job, views, out = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
trained = open_run(job + "/checkpoints/stylized", "cpu", load_data=False)
rgba = [render_frame(trained.model, torch.tensor(view["c2w"], dtype=torch.float32), torch.tensor(view["k"]), 32, 32,
                     orthographic=view["orthographic"], samples=view["samples"],
                     lens=ThinLens(**view["lens"]) if view.get("lens") else None,
                     motion=torch.tensor(view["motion"]) if view.get("motion") else None).rgba for view in views]
np.save(out, (torch.stack(rgba).clamp(0, 1).numpy() * 255).round().astype(np.float64))
"""


@pytest.mark.slow
def test_f12_with_the_real_render_server(monkeypatch, tmp_path, worker_python):
    from ins_blender.batch import run_batch
    from ins_blender.world import background_colour

    monkeypatch.setattr(worker_launch, "EXTRA_PATHS", [])
    bpy.ops.wm.read_factory_settings(use_empty=True)
    ins_blender.register()
    try:
        scene = bpy.context.scene
        bpy.ops.mesh.primitive_cube_add(size=1.0)
        style = tmp_path / "style.png"
        Image.fromarray((np.random.default_rng(1).random((64, 64, 3)) * 255).astype(np.uint8)).save(style)
        result = run_batch(scene, [style], "nerf", "preview", tmp_path / "job", source="auto_rig", n_views=8,
                           resolution=32, samples=4, device="cpu", outputs=("render_engine",),
                           overrides={"pretrain_steps": 30, "stylize_steps": 10, "vgg_size": 64}, silence_s=300)  # a hang guard
        assert result.status == "finished"
        scene.ins.render_job_dir = str(result.job_dir)
        scene.render.engine = "INS"
        scene.render.resolution_x = scene.render.resolution_y = 32
        scene.render.resolution_percentage = 100
        camera = bpy.data.objects.new("Camera", bpy.data.cameras.new("Camera"))
        scene.collection.objects.link(camera)
        camera.location = (2.5, -2.5, 2.0)
        camera.rotation_euler = (Vector((0, 0, 0)) - camera.location).to_track_quat("-Z", "Y").to_euler()
        scene.camera = camera
        scene.view_settings.view_transform = "Standard"  # no tone mapping between the two images
        scene.render.film_transparent = True
        scene.ins.render_samples = "1"  # one ray a pixel, at its centre (16 at the end)
        pixels = render(tmp_path)
        assert pixels.shape == (32, 32, 4)
        assert pixels[..., 3].max() > 0  # the cube shows

        # The same camera rendered by the worker's own code, in the worker's Python; and the camera
        # made orthographic, with its own intrinsics (pixels per unit) and parallel rays.
        k = camera_intrinsics(camera.data, 32, 32)
        camera.data.type, camera.data.ortho_scale = "ORTHO", 2.5
        k_ortho = camera_intrinsics(camera.data, 32, 32)
        camera.data.type = "PERSP"
        c2w = [list(row) for row in camera_to_world(camera.matrix_world)]
        # The camera keyed where it is at frame 1 and 0.4 to the side at frame 2: its poses over a
        # half-frame shutter centred on frame 1, as the engine reads them with Motion Blur on.
        camera.keyframe_insert("location", frame=1)
        camera.location.x += 0.4
        camera.keyframe_insert("location", frame=2)
        motion = []
        for frame, subframe in ((0, 0.75), (1, 0.0), (1, 0.25)):
            scene.frame_set(frame, subframe=subframe)
            motion.append([list(row) for row in camera_to_world(camera.matrix_world)])
        scene.frame_set(1)
        # The field placed by an Empty (moved, turned, 1.3 times as large): the worker's own picture from
        # the camera taken into the field's frame the other way.
        holder = bpy.data.objects.new("Holder", None)
        scene.collection.objects.link(holder)
        holder.location, holder.rotation_euler, holder.scale = (0.3, -0.2, 0.1), (0.0, 0.2, 0.6), (1.3, 1.3, 1.3)
        bpy.context.view_layer.update()
        in_field = [list(row) for row in camera_to_world(holder.matrix_world.inverted() @ camera.matrix_world)]
        views = [{"c2w": c2w, "k": [k.fl_x, k.fl_y, k.cx, k.cy], "orthographic": False, "samples": 1},
                 {"c2w": c2w, "k": [k_ortho.fl_x, k_ortho.fl_y, k_ortho.cx, k_ortho.cy], "orthographic": True, "samples": 1},
                 {"c2w": c2w, "k": [k.fl_x, k.fl_y, k.cx, k.cy], "orthographic": False, "samples": 16},
                 {"c2w": c2w, "k": [k.fl_x, k.fl_y, k.cx, k.cy], "orthographic": False, "samples": 16,
                  "lens": {"focus_distance": 1.0, "aperture_radius": 0.1, "ratio": 1.0, "blades": 0, "rotation": 0.0}},
                 {"c2w": c2w, "k": [k.fl_x, k.fl_y, k.cx, k.cy], "orthographic": False, "samples": 16, "motion": motion},
                 {"c2w": in_field, "k": [k.fl_x, k.fl_y, k.cx, k.cy], "orthographic": False, "samples": 16}]
        subprocess.run([worker_python, "-c", OWN_RENDER, str(result.job_dir), json.dumps(views), str(tmp_path / "own.npy")],
                       check=True, timeout=300)
        own, own_orthographic, own_sampled, own_defocused, own_moving, own_placed = np.load(tmp_path / "own.npy")
        assert np.abs(own[..., 3] - pixels[..., 3]).max() <= 2
        # Premultiplied colours agree (the field is still soft after so few steps: few pixels are opaque).
        premultiplied = lambda rgba: rgba[..., :3] * rgba[..., 3:] / 255.0  # noqa: E731
        assert np.abs(premultiplied(own) - premultiplied(pixels.astype(np.float64))).mean() < 2.0

        # Film > Transparent off and the Z pass on: the world's colour where the field is empty,
        # and depth exactly where the field is at least half opaque.
        scene.render.film_transparent = False
        bpy.context.view_layer.use_pass_z = True
        scene.world = bpy.data.worlds.new("World")
        world = background_colour(scene)
        assert world is not None and max(world) > 0.01
        passes = render_passes(tmp_path)
        assert np.allclose(passes["Combined"][..., 3], 1.0)
        assert np.abs(passes["Combined"][own[..., 3] == 0][:, :3] - world).max() < 0.003
        depth, alpha = passes["Depth"], own[..., 3]
        assert (depth[alpha < 124] == NO_DEPTH).all()  # (the two renderers' alpha differ by up to 2 levels)
        # Where there is a surface, it lies within the job's box (the field is soft after so few steps).
        low, high = np.reshape(ResultManifest.load(JobPaths(result.job_dir).result_json).aabb, (2, 3))
        to_camera = camera.matrix_world.inverted()
        axial = [-(to_camera @ Vector((x, y, z))).z for x in (low[0], high[0]) for y in (low[1], high[1]) for z in (low[2], high[2])]
        assert (alpha > 131).any() and (min(axial) - 0.01 < depth[alpha > 131]).all() and (depth[alpha > 131] < max(axial) + 0.01).all()

        # The Mist pass: 1 where the field is empty; where it is opaque, the world's linear mist by
        # the distance from the camera (the Z pass along each pixel's ray), as Cycles makes it.
        bpy.context.view_layer.use_pass_mist = True
        scene.world.mist_settings.start, scene.world.mist_settings.depth, scene.world.mist_settings.falloff = 3.0, 2.0, "LINEAR"
        passes = render_passes(tmp_path)
        mist, depth = passes["Mist"], passes["Depth"]
        assert (mist[alpha == 0] > 0.998).all()  # (8-bit alpha 0: under 1/510 opaque)
        v, u = np.mgrid[0:32, 0:32] + 0.5
        ray_per_axis = np.sqrt(1 + ((u - k.cx) / k.fl_x) ** 2 + ((v - k.cy) / k.fl_y) ** 2)
        opaque = alpha > 250
        expected = np.clip((depth * ray_per_axis - 3.0) / 2.0, 0.0, 1.0)
        assert opaque.sum() >= 3 and np.abs(mist[opaque] - expected[opaque]).max() < 0.03
        assert mist[opaque].max() - mist[opaque].min() > 0.05  # the mist grows with the distance

        # The Normal pass: where the field is opaque, unit normals in world space turned toward the
        # camera; none where it is empty; and they turn over the cube (its faces and soft edges).
        bpy.context.view_layer.use_pass_normal = True
        normals = render_passes(tmp_path)["Normal"]
        length = np.linalg.norm(normals, axis=-1)
        assert (length[alpha == 0] < 0.003).all() and (np.abs(length[opaque] - 1.0) < 0.03).all()
        camera_rays = np.stack([(u - k.cx) / k.fl_x, -(v - k.cy) / k.fl_y, -np.ones_like(u)], axis=-1)
        world_rays = camera_rays @ np.asarray(camera.matrix_world.to_3x3()).T
        assert ((normals * world_rays).sum(-1) <= 1e-5).all()
        assert normals[opaque].std(axis=0).max() > 0.2

        # The camera made orthographic: the worker's own picture of it, not the perspective one.
        camera.data.type = "ORTHO"
        scene.render.film_transparent = True
        orthographic = render_passes(tmp_path)["Combined"][..., 3] * 255  # (the result is saved as an EXR now)
        assert orthographic.max() > 0 and np.abs(own_orthographic[..., 3] - orthographic).max() <= 2.5
        assert np.abs(orthographic - pixels[..., 3]).mean() > 5

        # 16 rays a pixel: the worker's own anti-aliased picture (not the one ray's).
        camera.data.type = "PERSP"
        scene.ins.render_samples = "16"
        sampled = render_passes(tmp_path)["Combined"][..., 3] * 255
        assert np.abs(own_sampled[..., 3] - sampled).max() <= 2.5
        assert np.abs(own_sampled[..., 3] - own[..., 3]).max() > 5

        # Depth of field (focused at 1, in front of the cube, with a 10 cm aperture: f/0.25 at 50 mm):
        # the worker's own defocused picture.
        camera.data.dof.use_dof, camera.data.dof.focus_distance, camera.data.dof.aperture_fstop = True, 1.0, 0.25
        defocused = render_passes(tmp_path)["Combined"][..., 3] * 255
        assert np.abs(own_defocused[..., 3] - defocused).max() <= 2.5
        assert np.abs(own_defocused[..., 3] - own_sampled[..., 3]).mean() > 2

        # Motion blur: the worker's own picture of the camera sliding during the shutter.
        camera.data.dof.use_dof = False
        scene.render.use_motion_blur, scene.render.motion_blur_shutter, scene.render.motion_blur_position = True, 0.5, "CENTER"
        moving = render_passes(tmp_path)["Combined"][..., 3] * 255
        assert np.abs(own_moving[..., 3] - moving).max() <= 2.5
        assert np.abs(own_moving[..., 3] - own_sampled[..., 3]).mean() > 1

        # The field following the Empty (INS > Neural Render > Placement): the worker's picture from
        # the camera taken the other way.
        scene.render.use_motion_blur = False
        scene.ins.field_object = holder
        placed = render_passes(tmp_path)["Combined"][..., 3] * 255
        assert np.abs(own_placed[..., 3] - placed).max() <= 2.5
        assert np.abs(placed - sampled).mean() > 5
    finally:
        ins_blender.unregister()
