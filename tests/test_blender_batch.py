"""batch.py: the headless entry point (argument parsing, bad input, capture -> worker -> import).

Bad input must give one sentence and exit status 2 before anything is rendered or written, with
the scene as it was. The whole chain runs twice: with FAKE_WORKER below (a stdlib-only test
double of `python -m ins_core.worker JOB` that writes a small mesh.npz, texture and result.json,
so capture, polling and import are exercised in a second) and with the real worker (skipped
until ins_core/worker.py exists).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

bpy = pytest.importorskip("bpy")

from ins_blender import background_capture, batch, importer, worker_launch  # noqa: E402
from ins_core.errors import InputError  # noqa: E402
from ins_core.protocol import ErrorEvent, ProgressEvent, ResultEvent, StageEvent, CancelledEvent, decode_event  # noqa: E402

pytestmark = pytest.mark.blender

ROOT = Path(__file__).resolve().parents[1]

FAKE_WORKER = r'''
"""Test double of `python -m ins_core.worker JOB`: events plus a tetrahedron mesh, no training."""
import json, os, struct, sys, zipfile, zlib
job = sys.argv[1]
def emit(**event):
    print(json.dumps(event), flush=True)
def npy(fmt, values, shape):
    header = "{'descr': '%s', 'fortran_order': False, 'shape': %r, }" % ("<" + fmt, shape)
    header += " " * (63 - (10 + len(header)) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + struct.pack("<%d%s" % (len(values), fmt), *values)
spec = json.load(open(os.path.join(job, "job.json")))
open(os.path.join(job, "worker_runs.txt"), "a").write("run\n")
assert os.path.isfile(os.path.join(job, spec["styles"][0])) and os.path.isfile(os.path.join(job, "dataset", "transforms_train.json"))
emit(event="stage", stage="pretrain", total_steps=2)
emit(event="progress", step=1, total_steps=2, loss=0.5, eta_s=1.0)
emit(event="progress", step=2, total_steps=2, loss=0.25, psnr=30.0, eta_s=0.0)
result = os.path.join(job, "result")
os.makedirs(result, exist_ok=True)
v = [0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1]
with zipfile.ZipFile(os.path.join(result, "mesh.npz"), "w") as z:
    z.writestr("vertices.npy", npy("f", v, (4, 3)))
    z.writestr("faces.npy", npy("i", [0, 2, 1, 0, 1, 3, 0, 3, 2, 1, 2, 3], (4, 3)))
    z.writestr("uvs.npy", npy("f", [0, 0, 1, 0, 0, 1, 1, 1], (4, 2)))
    z.writestr("normals.npy", npy("f", [-1, -1, -1, 1, 0, 0, 0, 1, 0, 0, 0, 1], (4, 3)))
chunk = lambda tag, data: struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))
with open(os.path.join(result, "texture.png"), "wb") as f:
    raw = b"".join(b"\0" + bytes((0, 200, 0)) * 4 for _ in range(4))
    f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 4, 4, 8, 2, 0, 0, 0)) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
json.dump({"version": 1, "mode": spec["mode"], "styles": ["style"], "metrics": {}, "timings_s": {},
           "files": {"mesh_npz": "result/mesh.npz", "texture": "result/texture.png"}, "aabb": [0, 0, 0, 1, 1, 1],
           "backbone": {"name": "fake", "pretrained": False, "note": ""}, "created": "2024-01-01T00:00:00+00:00"},
          open(os.path.join(result, "result.json"), "w"))
emit(event="result", path="result/result.json")
'''


@pytest.fixture
def scene(ins_addon):
    return ins_addon


@pytest.fixture
def style(tmp_path) -> Path:
    path = tmp_path / "style.jpg"
    Image.fromarray((np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8)).save(path)
    return path


def add_cube():
    bpy.ops.mesh.primitive_cube_add(size=1.0)
    return bpy.context.object


def scene_state(scene) -> dict:
    state = {name: sorted(b.name for b in getattr(bpy.data, name))
             for name in ("objects", "meshes", "cameras", "images", "materials", "collections")}
    r = scene.render
    state["render"] = (r.engine, r.resolution_x, r.resolution_y, r.resolution_percentage, r.film_transparent, r.filepath)
    state["camera"] = scene.camera.name if scene.camera else None
    state["frame"] = scene.frame_current
    return state


# ---- arguments ------------------------------------------------------------------------------


def test_arguments_after_the_double_dash(monkeypatch):
    monkeypatch.setattr("sys.argv", ["blender", "-b", "scene.blend", "--python-expr", "...", "--",
                                     "--style", "a.jpg", "--style", "b.png", "--mode", "sdf", "--preset", "standard",
                                     "--views", "24", "--out", "/tmp/job", "--device", "gpu", "--outputs", "mesh"])
    args = batch.parse_args()
    assert args.style == ["a.jpg", "b.png"] and args.mode == "sdf" and args.preset == "standard"
    assert args.views == 24 and args.out == "/tmp/job" and args.device == "gpu" and args.outputs == "mesh"
    assert args.hemisphere and args.source is None and not args.resume
    defaults = batch.parse_args(["--style", "a.jpg", "--out", "job", "--full-sphere"])
    assert (defaults.mode, defaults.preset, defaults.outputs, defaults.device) == ("nerf", "preview", "both", "auto")
    assert not defaults.hemisphere


@pytest.mark.parametrize("argv, message", [
    (["--out", "job"], "Bad INS arguments: the following arguments are required: --style"),
    (["--style", "a.jpg", "--out", "job", "--mode", "mesh"], "argument --mode: invalid choice: 'mesh'"),
    (["--style", "a.jpg", "--out", "job", "--views", "0"], "--views is 0; use at least 1"),
    (["--style", "a.jpg", "--out", "job", "--views", "many"], "argument --views: invalid int value: 'many'"),
])
def test_bad_arguments_are_one_sentence(argv, message, capsys):
    with pytest.raises(InputError, match=message.replace("(", r"\(")):
        batch.parse_args(argv)
    assert batch.main(argv, exit=False) == batch.EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert err.startswith("INS: ") and err.count("\n") == 1


# ---- bad input: one sentence, status 2, the scene as it was ---------------------------------


def _run_bad(scene, argv, capsys) -> str:
    before = scene_state(scene)
    assert batch.main(argv, exit=False) == batch.EXIT_BAD_INPUT
    assert scene_state(scene) == before
    out = capsys.readouterr()
    assert out.err.count("\n") == 1 and "Traceback" not in out.err + out.out
    return out.err.strip()


def test_missing_style_image(scene, tmp_path, capsys):
    add_cube()
    missing = tmp_path / "nope.jpg"
    message = _run_bad(scene, ["--style", str(missing), "--out", str(tmp_path / "job")], capsys)
    assert message == f"INS: The style image '{missing}' does not exist; choose an existing image file."
    assert not (tmp_path / "job").exists()


@pytest.mark.parametrize("steps", ["200", "200,0", "a,b", "200,30,5"])
def test_bad_steps(scene, style, tmp_path, capsys, steps):
    add_cube()
    message = _run_bad(scene, ["--style", str(style), "--steps", steps, "--out", str(tmp_path / "job")], capsys)
    assert message == f"INS: --steps is {steps!r}; give two positive whole numbers, pre-training and stylization steps, e.g. 200,30."
    assert not (tmp_path / "job").exists()


@pytest.mark.parametrize("option, field", [("--tv-weight", "tv_weight"), ("--consistency-weight", "consistency_weight")])
def test_a_negative_loss_weight_leaves_no_job_folder(scene, style, tmp_path, capsys, option, field):
    """The override is refused while job.json is written: one sentence, and the folder made for the job goes again."""
    add_cube()
    message = _run_bad(scene, ["--style", str(style), option, "-1", "--out", str(tmp_path / "job")], capsys)
    assert message == f"INS: job.json: field 'overrides.{field}' is -1; use a number >= 0."
    assert not (tmp_path / "job").exists()


def test_steps_stroke_scale_and_loss_weights_become_job_overrides():
    args = batch.parse_args(["--style", "a.png", "--out", "job", "--steps", "200,30", "--stroke-scale", "2", "--palette-weight", "1",
                             "--palette-spread", "0.8", "--consistency-weight", "10", "--tv-weight", "200", "--style-detail", "full"])
    assert args.overrides == {"stroke_scale": 2.0, "palette_weight": 1.0, "palette_spread": 0.8, "consistency_weight": 10.0, "tv_weight": 200.0,
                              "style_detail": "full", "pretrain_steps": 200, "stylize_steps": 30}
    assert batch.parse_args(["--style", "a.png", "--out", "job"]).overrides == {}
    assert batch.parse_args(["--style", "a.png", "--out", "job", "--keep-unseen"]).overrides == {"mesh_keep_unseen": True}
    assert batch.parse_args(["--style", "a.png", "--out", "job", "--smooth", "0"]).overrides == {"mesh_smooth": 0}
    with pytest.raises(InputError, match="--smooth is -2; use 0 \\(no smoothing\\) or more"):
        batch.parse_args(["--style", "a.png", "--out", "job", "--smooth", "-2"])
    assert batch.parse_args(["--style", "a.png", "--out", "job", "--palette-spread", "Auto"]).overrides == {"palette_spread": "auto"}


def test_no_cameras_and_no_rig(scene, style, tmp_path, capsys):
    add_cube()
    message = _run_bad(scene, ["--style", str(style), "--source", "cameras", "--out", str(tmp_path / "job")], capsys)
    assert message == f"INS: Scene '{scene.name}' has no cameras; add cameras around the objects or use the automatic camera rig (source 'auto_rig')."
    message = _run_bad(scene, ["--style", str(style), "--source", "cameras", "--collection", "Rig", "--out", str(tmp_path / "job")], capsys)
    assert "Collection 'Rig' does not exist" in message


def test_nothing_to_capture(scene, style, tmp_path, capsys):
    message = _run_bad(scene, ["--style", str(style), "--out", str(tmp_path / "job")], capsys)
    assert message == f"INS: Scene '{scene.name}' has no visible objects to stylize; add a mesh or make its objects visible in renders."


def test_a_refusal_leaves_an_existing_output_folder_as_it_was(scene, style, tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("the user's")
    _run_bad(scene, ["--style", str(style), "--out", str(out)], capsys)  # nothing to capture
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_an_output_folder_with_a_folder_of_the_users_named_like_a_jobs_is_refused(scene, style, tmp_path, capsys):
    """The job would write into the user's own 'dataset' folder, and remove it if the capture failed."""
    add_cube()
    out = tmp_path / "mine"
    (out / "dataset").mkdir(parents=True)
    (out / "dataset" / "notes.txt").write_text("the user's")
    message = _run_bad(scene, ["--style", str(style), "--out", str(out)], capsys)
    assert message == f"INS: The output folder '{out.resolve()}' already holds a 'dataset' folder that is not an INS job's; choose a new or empty folder."
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == ["dataset", "dataset/notes.txt"]


def test_unwritable_output_folder(scene, style, tmp_path, capsys):
    add_cube()
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    out = blocker / "job"
    message = _run_bad(scene, ["--style", str(style), "--out", str(out)], capsys)
    assert message.startswith(f"INS: Cannot write to the output folder '{out}' (")
    assert message.endswith("); choose a folder you can write to.")


def test_an_existing_job_and_a_bad_worker_python(scene, style, tmp_path, capsys):
    add_cube()
    job = tmp_path / "job"
    job.mkdir()
    (job / "job.json").write_text("{}")
    message = _run_bad(scene, ["--style", str(style), "--out", str(job)], capsys)
    assert "already holds an INS job; pass --resume to continue it" in message
    message = _run_bad(scene, ["--style", str(style), "--out", str(tmp_path / "new"), "--python", str(tmp_path / "py")], capsys)
    assert f"The worker Python '{tmp_path / 'py'}' does not exist" in message


# ---- the background capture (what Stylize Scene runs in a second Blender) -------------------


def test_capture_main_speaks_the_protocol(scene, tmp_path):
    add_cube()
    before = scene_state(scene)
    out = io.StringIO()
    argv = ["--capture-job", str(tmp_path / "job"), "--scene", scene.name, "--source", "auto_rig", "--views", "3",
            "--resolution", "16", "12", "--samples", "1", "--delete-blend"]
    assert background_capture.capture_main(argv, out=out) == 0
    events = [decode_event(line) for line in out.getvalue().splitlines()]
    assert isinstance(events[0], StageEvent) and [type(e) for e in events[-4:]] == [ProgressEvent] * 3 + [ResultEvent]
    assert events[-1].path == "dataset/transforms_train.json"
    train = json.loads((tmp_path / "job" / "dataset" / "transforms_train.json").read_text())
    assert (train["w"], train["h"]) == (16, 12)
    assert scene_state(scene) == before
    (tmp_path / "job" / "cancel").write_text("")
    out = io.StringIO()
    assert background_capture.capture_main(argv, out=out) == 0
    assert isinstance(decode_event(out.getvalue().splitlines()[-1]), CancelledEvent)
    out = io.StringIO()
    assert background_capture.capture_main([*argv[:2], "--source", "cameras"], out=out) == 2
    error = decode_event(out.getvalue().splitlines()[-1])
    assert isinstance(error, ErrorEvent) and error.kind == "bad_input" and "has no cameras" in error.message


# ---- the whole chain ------------------------------------------------------------------------


@pytest.fixture
def fake_worker(monkeypatch, tmp_path_factory):
    folder = tmp_path_factory.mktemp("fake_worker")
    (folder / "ins_fake_mesh_worker.py").write_text(FAKE_WORKER)
    monkeypatch.setattr(worker_launch, "WORKER_MODULE", "ins_fake_mesh_worker")
    monkeypatch.setattr(worker_launch, "EXTRA_PATHS", [str(folder)])


def tiny_job_argv(style, out) -> list[str]:
    return ["--style", str(style), "--out", str(out), "--source", "auto_rig", "--views", "3",
            "--resolution", "16", "--samples", "1"]


def test_a_portrait_scene_trains_on_its_views_at_their_own_width(scene, style, tmp_path, fake_worker):
    add_cube()
    scene.render.resolution_x, scene.render.resolution_y = 900, 1600
    out = tmp_path / "portrait"
    assert batch.main([*tiny_job_argv(style, out), "--outputs", "mesh"], exit=False) == batch.EXIT_OK
    spec = json.loads((out / "job.json").read_text())
    frame = json.loads((out / "dataset" / "transforms_train.json").read_text())["frames"][0]
    width, height = Image.open(out / "dataset" / frame["file_path"]).size
    assert (width, height) == (9, 16) and spec["overrides"]["train_resolution"] == width


def test_batch_runs_capture_worker_and_import(scene, style, tmp_path, fake_worker, capsys):
    add_cube()
    out = tmp_path / "job"
    argv = [*tiny_job_argv(style, out), "--outputs", "mesh", "--save", str(tmp_path / "result.blend")]
    assert batch.main(argv, exit=False) == batch.EXIT_OK
    printed = capsys.readouterr().out
    assert "INS:   view 3/3" in printed and "INS: Pre-training (2 steps)" in printed and "PSNR 30.00 dB" in printed
    spec = json.loads((out / "job.json").read_text())
    assert spec["outputs"] == ["mesh"] and spec["overrides"]["train_resolution"] == 16
    obj = bpy.data.collections[importer.COLLECTION].objects["INS job"]
    assert len(obj.data.vertices) == 4 and len(obj.data.polygons) == 4
    assert (tmp_path / "result.blend").is_file()
    # The same job again is refused; --resume on the finished job neither captures nor runs the
    # worker (no second export): it only imports the result again.
    assert batch.main(argv, exit=False) == batch.EXIT_BAD_INPUT
    assert batch.main([*argv, "--resume", "--shading", "captured"], exit=False) == batch.EXIT_OK
    assert (out / "worker_runs.txt").read_text() == "run\n"
    assert "is finished; importing its result without running it again" in capsys.readouterr().out
    first, again = sorted(bpy.data.collections[importer.COLLECTION].objects, key=lambda o: o.name)
    shaders = lambda o: {n.type for n in o.data.materials[0].node_tree.nodes} & {"EMISSION", "LIGHT_PATH"}  # noqa: E731
    assert shaders(first) == set() and shaders(again) == {"EMISSION", "LIGHT_PATH"}  # lit by default, then as captured


# ---- the registered command: blender -b scene.blend --command ins_stylize ... -----------------


def test_the_command_is_registered_with_the_addon(monkeypatch):
    import ins_blender

    bpy.ops.wm.read_factory_settings(use_empty=True)
    calls = []
    monkeypatch.setattr(bpy.utils, "register_cli_command", lambda name, fn: calls.append((name, fn)) or "handle")
    monkeypatch.setattr(bpy.utils, "unregister_cli_command", lambda handle: calls.append(("off", handle)))
    ins_blender.register()
    ins_blender.register()  # re-registers: Blender disables a command id registered twice
    ins_blender.unregister()
    assert calls == [("ins_stylize", batch.cli_command), ("off", "handle")] * 2


def test_the_command_fails_with_a_status_and_one_sentence(scene, tmp_path, capsys):
    add_cube()
    missing = tmp_path / "nope.jpg"
    assert batch.cli_command(["--style", str(missing), "--out", str(tmp_path / "job")]) == batch.EXIT_BAD_INPUT
    assert capsys.readouterr().err == f"INS: The style image '{missing}' does not exist; choose an existing image file.\n"
    assert batch.cli_command(["--help"]) == batch.EXIT_OK
    assert "--command ins_stylize" in capsys.readouterr().out


def test_a_failing_worker_gives_status_1(scene, style, tmp_path, monkeypatch, capsys):
    folder = tmp_path / "broken_worker"
    folder.mkdir()
    (folder / "ins_broken_worker.py").write_text("import sys; print('worker blew up', file=sys.stderr); sys.exit(3)\n")
    monkeypatch.setattr(worker_launch, "WORKER_MODULE", "ins_broken_worker")
    monkeypatch.setattr(worker_launch, "EXTRA_PATHS", [str(folder)])
    add_cube()
    assert batch.cli_command(tiny_job_argv(style, tmp_path / "job")) == batch.EXIT_FAILED
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "The worker stopped unexpectedly with exit status 3 (worker blew up)" in err


def test_the_saved_blend_renders_with_the_ins_engine_as_it_is(scene, style, tmp_path, fake_worker):
    from ins_blender import render_client

    add_cube()
    out, saved = tmp_path / "job", tmp_path / "result.blend"
    assert batch.cli_command([*tiny_job_argv(style, out), "--save", str(saved)]) == batch.EXIT_OK
    bpy.ops.wm.open_mainfile(filepath=str(saved))
    settings = bpy.context.scene.ins
    assert (settings.job_dir, settings.render_job_dir, settings.status) == (str(out), str(out), "FINISHED")
    assert render_client.render_job(bpy.context.scene).root == out  # what `-E INS -f 1` renders
    # The panel lists the job's own copy of the style (the scene had none), with its weight.
    assert [(Path(item.filepath).parent, item.weight) for item in settings.styles] == [(out / "styles", 1.0)]
    assert Path(settings.styles[0].filepath).is_file()


SLOW_WORKER = r'''
"""Test double of a worker in the middle of a long stage: checkpoints and stops on SIGTERM."""
import json, os, signal, sys, time
job = sys.argv[1]
stop = []
signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
open(os.path.join(job, "worker.pid"), "w").write(str(os.getpid()))
print(json.dumps({"event": "stage", "stage": "pretrain", "total_steps": 1000}), flush=True)
for _ in range(1200):
    if stop or os.path.exists(os.path.join(job, "cancel")):
        open(os.path.join(job, "checkpointed"), "w").write("yes")
        print(json.dumps({"event": "cancelled"}), flush=True)
        sys.exit(0)
    time.sleep(0.05)
'''


@pytest.mark.parametrize("signum, status", [("SIGTERM", 143), ("SIGINT", 130)])
def test_a_signal_cancels_the_worker_and_waits_for_it(scene, style, tmp_path, monkeypatch, capsys, signum, status):
    """Blender's Ctrl-C and a SIGTERM reach Blender, not the worker (its own process group): the
    command forwards a cancel, waits for the worker to checkpoint and exit, then fails."""
    import os
    import signal
    import threading
    import time

    folder = tmp_path / "slow_worker"
    folder.mkdir()
    (folder / "ins_slow_worker.py").write_text(SLOW_WORKER)
    monkeypatch.setattr(worker_launch, "WORKER_MODULE", "ins_slow_worker")
    monkeypatch.setattr(worker_launch, "EXTRA_PATHS", [str(folder)])
    add_cube()
    out = tmp_path / "job"

    def send_when_running():
        deadline = time.monotonic() + 120
        while not (out / "worker.pid").is_file() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
        os.kill(os.getpid(), getattr(signal, signum))

    sender = threading.Thread(target=send_when_running, daemon=True)
    sender.start()
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    assert batch.cli_command(tiny_job_argv(style, out)) == status
    sender.join()
    pid = int((out / "worker.pid").read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # exited and reaped: no worker left behind
    assert (out / "checkpointed").is_file()  # it was cancelled (checkpoint), not killed
    assert "continue it with --resume" in capsys.readouterr().err
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before


@pytest.mark.slow
@pytest.mark.skipif(not (ROOT / "ins_core" / "worker.py").exists(),
                    reason="needs the real worker (python -m ins_core.worker JOB), which the lead is writing")
def test_batch_end_to_end_with_the_real_worker(scene, style, tmp_path):
    add_cube()
    result = batch.run_batch(scene, [style], "nerf", "preview", tmp_path / "job", source="auto_rig", n_views=8,
                             resolution=32, samples=4, device="cpu", outputs=("mesh", "render_engine"),
                             overrides={"pretrain_steps": 30, "stylize_steps": 10, "mesh_resolution": 32,
                                        "texture_size": 64, "vgg_size": 64}, silence_s=300)  # a hang guard, not a speed test
    assert result.status == "finished" and result.object_name
    obj = bpy.data.objects[result.object_name]
    assert obj.name in bpy.data.collections[importer.COLLECTION].objects
    assert scene.ins.field_object == obj  # the job the saved .blend renders: its field follows the mesh
    assert len(obj.data.polygons) > 0
    texture = next(n for n in obj.data.materials[0].node_tree.nodes if n.type == "TEX_IMAGE")
    assert tuple(texture.image.size) == (64, 64)
    assert "checkpoint" in result.manifest.files


def test_the_background_capture_command(scene, style, tmp_path):
    """What Stylize Scene starts in a second Blender: a saved copy + --python-expr + arguments.

    There is no Blender executable here, so a Python with the bpy module plays it: it opens the
    copy and runs the same expression with the same arguments after `--`.
    """
    import subprocess
    import sys

    from ins_blender import job_request

    add_cube()
    before = scene_state(scene)
    request = job_request.Request(scene=scene, styles=[job_request.StyleSource(path=style)], source="auto_rig",
                                  n_views=3, resolution=(16, 12), samples=1, output_root=tmp_path / "jobs")
    job = job_request.create_job(request)
    argv = job_request.capture_subprocess_argv(request, job)
    blend = job.root / job_request.CAPTURE_BLEND
    assert argv[1:4] == ["-b", "--factory-startup", str(blend)] and blend.is_file()
    assert bpy.data.filepath == "" and scene_state(scene) == before  # a copy: the session is unchanged
    expr, rest = argv[argv.index("--python-expr") + 1], argv[argv.index("--") + 1:]
    script = (f"import bpy, sys; bpy.ops.wm.open_mainfile(filepath={str(blend)!r}); "
              f"sys.argv = ['blender', '--', *{rest!r}]; exec({expr!r})")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    events = [e for e in (decode_event(line) for line in done.stdout.decode().splitlines() if line.startswith("{")) if e]
    assert isinstance(events[-1], ResultEvent) and sum(isinstance(e, ProgressEvent) for e in events) == 3
    assert (job.dataset_dir / "transforms_train.json").is_file()
    assert not blend.exists()  # the copy is removed once the views are rendered
