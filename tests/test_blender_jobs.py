"""Starting, polling, cancelling and reporting on worker subprocesses: worker_launch, worker_process,
job_run, worker_check and the jobs glue.

The worker here is FAKE_WORKER below: a test double of the protocol (stdlib only) that prints
the events `python -m ins_core.worker JOB` prints, without any training. What it does is chosen
by JOB/fake_mode.txt (ok, slow, stubborn, crash, error). It runs through the same command line
and environment the add-on builds (`worker_launch.worker_argv`, `worker_launch.worker_env`), with
`worker_launch.WORKER_MODULE` pointed at it. The end-to-end run with the real worker is in
test_blender_batch.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

bpy = pytest.importorskip("bpy")

from ins_blender import job_request, job_run, jobs, preferences, properties, worker_check, worker_launch, worker_process  # noqa: E402
from ins_core.job import JobPaths  # noqa: E402

pytestmark = pytest.mark.blender

FAKE_WORKER = r'''
"""Test double of `python -m ins_core.worker JOB` (protocol events only, no training)."""
import json, os, signal, struct, sys, time, zlib
job = sys.argv[1]
mode_file = os.path.join(job, "fake_mode.txt")
mode = open(mode_file).read().strip() if os.path.exists(mode_file) else "ok"
stop = []
signal.signal(signal.SIGTERM, signal.SIG_IGN if mode == "stubborn" else (lambda *a: stop.append(1)))
def emit(**event):
    print(json.dumps(event), flush=True)
def png(path, w=4, h=4, rgba=(255, 0, 0, 255)):
    raw = b"".join(b"\0" + bytes(rgba) * w for _ in range(h))
    chunk = lambda tag, data: struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 6, 0, 0, 0)) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
print("some stray text that is not JSON", flush=True)
if mode == "crash":
    sys.stderr.write("Traceback (most recent call last):\nRuntimeError: boom\n")
    sys.exit(3)
if mode == "error":
    emit(event="error", kind="bad_input", message="The style image 'styles/a.png' is not an image.", log="log.txt")
    sys.exit(2)
os.makedirs(os.path.join(job, "result"), exist_ok=True)
emit(event="stage", stage="pretrain", total_steps=5)
for step in range(1, 6):
    emit(event="progress", step=step, total_steps=5, loss=1.0 / step, psnr=20.0 + step, eta_s=5.0 - step)
png(os.path.join(job, "result", "preview.png"))
emit(event="preview", path="result/preview.png")
emit(event="log", level="info", message="halfway")
while mode in ("slow", "stubborn"):
    if stop or (mode == "slow" and os.path.exists(os.path.join(job, "cancel"))):
        emit(event="cancelled")
        sys.exit(0)
    time.sleep(0.02)
manifest = {"version": 1, "mode": "nerf", "styles": ["a"], "files": {}, "metrics": {}, "timings_s": {},
            "backbone": {"name": "fake", "pretrained": False, "note": ""}, "aabb": [-1, -1, -1, 1, 1, 1],
            "created": "2024-01-01T00:00:00+00:00"}
with open(os.path.join(job, "result", "result.json"), "w") as f:
    json.dump(manifest, f)
emit(event="stage", stage="export", total_steps=1)
emit(event="result", path="result/result.json")
'''

NO_TORCH_WORKER = "import torch  # the worker's first import: fails in a Python without torch\n"


@pytest.fixture(scope="module")
def fake_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fake_worker")
    (folder / "ins_fake_worker.py").write_text(FAKE_WORKER)
    (folder / "ins_fake_torch_worker.py").write_text(NO_TORCH_WORKER)
    return folder


@pytest.fixture
def fake(monkeypatch, fake_dir):
    monkeypatch.setattr(worker_launch, "WORKER_MODULE", "ins_fake_worker")
    monkeypatch.setattr(worker_launch, "EXTRA_PATHS", [str(fake_dir)])
    yield
    jobs.shutdown_all(timeout=2.0)


def make_job(tmp_path: Path, mode: str = "ok") -> JobPaths:
    job = JobPaths(tmp_path / "job")
    job.make_dirs()
    (job.root / "fake_mode.txt").write_text(mode)
    return job


def start(job: JobPaths, python: str | None = None, bundled: bool = True) -> worker_process.WorkerProcess:
    python = python or sys.executable
    return worker_process.WorkerProcess(worker_launch.worker_argv(python, job.root, bundled=bundled), job.root, env=worker_launch.worker_env(bundled), python=python).start()


def gone(pid: int) -> bool:
    """True when no process (not even a zombie) has this pid."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return not Path(f"/proc/{pid}").exists()


# ---- the plain-Python layer -------------------------------------------------------------------


def test_events_update_the_state(fake, tmp_path):
    job = make_job(tmp_path)
    worker = start(job)
    seen = []
    state = worker.wait(timeout=30, on_events=seen.extend)
    assert state.status == "finished", state.message
    names = [type(e).__name__ for e in seen]
    assert names.count("ProgressEvent") == 5 and "PreviewEvent" in names and names[-1] == "ResultEvent"
    assert state.stage == "export" and state.psnr == 25.0 and state.loss == pytest.approx(0.2)
    assert state.preview == job.root / "result" / "preview.png" and state.preview.is_file()
    assert state.result == job.result_json
    assert state.overall == 1.0
    assert state.returncode == 0 and gone(worker.pid)
    # Stray text is not an event; the worker's stderr goes to its own log in the job.
    assert (job.root / worker_process.STDERR_NAME).is_file()


def test_a_run_shows_every_event_even_those_its_status_update_drains(fake, tmp_path, monkeypatch):
    """JobRun.wait polls the worker twice a turn (wait, then the status update): events that
    arrive in between must reach on_events too (the batch printed no final PSNR under load)."""
    job = make_job(tmp_path)
    run = job_run.JobRun(job.root, sys.executable).start()
    run.worker._proc.wait(timeout=30)
    run.worker._reader.join(timeout=10)  # every event is queued: only update() will drain them
    monkeypatch.setattr(run.worker, "wait_event", lambda timeout: [])
    seen = []
    assert run.wait(timeout=30, on_events=seen.extend) == "finished"
    names = [type(e).__name__ for e in seen]
    assert names.count("ProgressEvent") == 5 and names[-1] == "ResultEvent"


def test_a_run_waits_while_events_come_and_gives_up_on_silence(fake, tmp_path):
    """The hang guard of the batch and the tests: no event for `silence_s` seconds, however long the
    run took before (a busy machine slows a job down; only a hang stops its events)."""
    run = job_run.JobRun(make_job(tmp_path, "slow").root, sys.executable).start()
    began = time.monotonic()
    assert run.wait(silence_s=1.0) == "running"  # it went quiet after "halfway"
    assert 1.0 <= time.monotonic() - began < 20 and run.state.message == "halfway"
    run.request_cancel()
    assert run.wait(timeout=30) == "cancelled"
    assert job_run.JobRun(make_job(tmp_path / "ok").root, sys.executable).start().wait(silence_s=30) == "finished"


def test_poll_never_blocks_and_cancel_leaves_no_process(fake, tmp_path):
    job = make_job(tmp_path, "slow")
    worker = start(job)
    deadline = time.monotonic() + 20
    while worker.state.step < 5 and time.monotonic() < deadline:
        t0 = time.perf_counter()
        worker.poll()
        assert time.perf_counter() - t0 < 0.25  # a poll only drains a queue (the worker never ends)
        time.sleep(0.01)
    assert worker.state.status == "running" and worker.state.step == 5
    assert worker.state.stage_text().startswith("Pre-training 5/5")
    pid = worker.pid
    state = worker.cancel(timeout=10)
    assert state.status == "cancelled" and state.cancelled, state.message
    assert "Resume" in state.message
    assert job.cancel_path.exists()  # the file half of the request (SIGTERM is the other)
    assert gone(pid)


def test_a_worker_that_ignores_cancel_is_killed(fake, tmp_path):
    job = make_job(tmp_path, "stubborn")
    worker = start(job)
    while worker.state.step < 5:
        worker.wait_event(1.0)
    worker.request_cancel(grace=0.5)
    assert worker.state.status == "cancelling"
    state = worker.wait(timeout=15)
    assert state.status == "cancelled" and not state.cancelled  # killed, not a clean stop
    assert state.returncode is not None and state.returncode < 0
    assert gone(worker.pid)


def test_a_crash_names_the_log(fake, tmp_path):
    job = make_job(tmp_path, "crash")
    worker = start(job)
    state = worker.wait(timeout=30)
    assert state.status == "failed"
    log = job.root / worker_process.STDERR_NAME
    assert f"'{log}'" in state.message and "exit status 3" in state.message and "boom" in state.message
    assert "boom" in log.read_text()


def test_an_error_event_is_reported_with_the_log(fake, tmp_path):
    job = make_job(tmp_path, "error")
    state = start(job).wait(timeout=30)
    assert state.status == "failed"
    assert state.message == f"The style image 'styles/a.png' is not an image; see the log '{job.log_path}'."


def test_a_missing_python_is_reported_before_anything_runs(tmp_path):
    with pytest.raises(worker_launch.WorkerError, match="does not exist; choose a Python with torch in Preferences"):
        worker_launch.resolve_python(str(tmp_path / "no" / "python3"))
    job = make_job(tmp_path)
    worker = worker_process.WorkerProcess([str(tmp_path / "no" / "python3"), "-m", "x", str(job.root)], job.root)
    with pytest.raises(worker_launch.WorkerError, match="does not exist"):
        worker.start()
    assert worker.pid is None
    check = worker_check.check_worker(str(tmp_path / "no" / "python3"))
    assert not check.ok and "does not exist" in check.message


def _python_without_torch() -> str:
    python = "/usr/bin/python3"
    if not os.path.exists(python):
        pytest.skip("no system Python at /usr/bin/python3 to play a Python without torch")
    if subprocess.run([python, "-c", "import torch"], capture_output=True).returncode == 0:
        pytest.skip("/usr/bin/python3 has torch; it cannot play a Python without torch")
    return python


def test_a_python_without_torch_gets_a_clear_report(monkeypatch, fake_dir, tmp_path):
    python = _python_without_torch()
    resolved, bundled = worker_launch.resolve_python(python)
    assert not bundled  # an external Python: only ins_core's folder goes on its path
    monkeypatch.setattr(worker_launch, "WORKER_MODULE", "ins_fake_torch_worker")
    monkeypatch.setattr(worker_launch, "EXTRA_PATHS", [str(fake_dir)])
    job = make_job(tmp_path)
    state = start(job, resolved, bundled).wait(timeout=30)
    assert state.status == "failed"
    assert state.message.startswith(f"The worker Python '{python}' has no torch; install torch into it")
    assert "Preferences" in state.message and worker_process.STDERR_NAME in state.message
    check = worker_check.check_worker(python, timeout=60)
    assert not check.ok and "has no torch" in check.message and "Preferences" in check.message


@pytest.mark.parametrize("where, version, advice", [
    # The full zip bundles torch for this Blender: it is the light zip, or a broken install.
    ("windows-x64", (3, 13), "Blender's own Python has no torch: install the INS extension build that bundles "
                             "torch (the full windows-x64 zip; if it is installed, reinstall it), or set Preferences"),
    ("macos-arm64", (3, 13), "(the full macos-arm64 zip; if it is installed, reinstall it)"),
    ("linux-x64", (3, 11), "(the full linux-x64 zip; if it is installed, reinstall it)"),
    # Blender 5.1+ (and Debian's 4.3) on Linux: no zip bundles torch for Python 3.13.
    ("linux-x64", (3, 13), "Blender's own Python is 3.13, and the INS extension bundles torch on linux-x64 only "
                           "for Python 3.11 (Blender 4.2 - 5.0); set Preferences"),
    ("macos-x64", (3, 11), "The INS extension bundles torch for no Blender on macos-x64; set Preferences"),
])
def test_blenders_own_python_without_torch_gets_advice_that_fits_it(monkeypatch, where, version, advice):
    """Blender's own Python without torch: a full zip helps only where it bundles torch for that
    platform and Python; otherwise, a Worker Python. Check Worker says so."""
    output = 'INS_CHECK {"python": "3.x", "error": "torch", "detail": "ModuleNotFoundError"}\n'
    monkeypatch.setattr(worker_launch, "blender_platform", lambda: where)
    advice_for = worker_launch.bundled_torch_advice
    monkeypatch.setattr(worker_check, "bundled_torch_advice", lambda: advice_for(version))  # Blender's Python: `version`
    monkeypatch.setattr(worker_check.subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a, 0, output.encode(), b""))
    check = worker_check.check_worker("")
    assert not check.ok and advice in check.message and "Worker Python to a Python that has torch" in check.message


def test_this_machines_platform_is_named_as_blender_names_it():
    assert worker_launch.blender_platform() in {"linux-x64", "linux-arm64", "windows-x64", "windows-arm64", "macos-arm64",
                                       "macos-x64"}


def test_the_add_on_knows_which_full_zips_bundle_torch():
    """BUNDLED_TORCH_PYTHONS matches what build_addon.py puts in the full zips: every platform of
    the manifest, every Python the build knows, less Python 3.13 on Linux (no CPU torch on PyPI)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import build_addon

    manifest = build_addon.tomllib.loads(build_addon.SOURCE_MANIFEST.read_text(encoding="utf-8"))
    assert set(worker_launch.BUNDLED_TORCH_PYTHONS) == set(manifest["platforms"])
    assert set(worker_launch.PYTHON_BLENDERS) == set(build_addon.PYTHON_BLENDERS)
    for where, pythons in worker_launch.BUNDLED_TORCH_PYTHONS.items():
        expected = [p for p in build_addon.PYTHON_BLENDERS if p == (3, 11) or build_addon.PLATFORMS[where].torch_from_pypi]
        assert list(pythons) == expected, where
        assert all(build_addon.worker_pins(where, p) for p in pythons)


PROBE_WORKER = r"""
import json, sys
import torch, ins_core
print(json.dumps({"torch": torch.__version__, "ins_core": ins_core.__file__, "job": sys.argv[1]}), flush=True)
"""


def test_an_external_pythons_own_torch_wins_over_the_bundled_one(monkeypatch, fake_dir, tmp_path):
    """The GPU path: a user's Python with its own (CUDA) torch, while the extension's folder also
    holds the bundled CPU torch. A real second interpreter (a fresh venv of another Python) with a
    package named torch in its site-packages plays the user's; the extension folder gets one too."""
    import subprocess

    candidates = sorted(Path.home().glob(".pyenv/versions/3.1[23]*/bin/python3")) + [Path("/usr/bin/python3")]
    runs = [c for c in candidates if c.is_file() and subprocess.run([str(c), "-c", "import venv"], capture_output=True).returncode == 0]
    if not runs:
        pytest.skip("no second Python to play the user's external Python")
    base = str(runs[0])
    venv = tmp_path / "user_venv"
    subprocess.run([base, "-m", "venv", "--without-pip", str(venv)], check=True, capture_output=True, timeout=120)
    python = str(venv / "bin" / "python")
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    (Path(site) / "torch").mkdir(parents=True)
    (Path(site) / "torch" / "__init__.py").write_text("__version__ = 'users-cuda-build'\n")
    extension = tmp_path / "extension"  # what a full zip unpacks: ins_core beside the bundled wheels
    (extension / "torch").mkdir(parents=True)
    (extension / "torch" / "__init__.py").write_text("__version__ = 'bundled-cpu-build'\n")
    (extension / "ins_core").symlink_to(Path(worker_launch.ins_core_root()) / "ins_core")
    (fake_dir / "ins_probe_worker.py").write_text(PROBE_WORKER)
    monkeypatch.setattr(worker_launch, "ins_core_root", lambda: str(extension))
    monkeypatch.setattr(worker_launch, "WORKER_MODULE", "ins_probe_worker")
    monkeypatch.setattr(worker_launch, "EXTRA_PATHS", [str(fake_dir)])

    resolved, bundled = worker_launch.resolve_python(python)
    assert not bundled
    job = make_job(tmp_path)
    # cwd as WorkerProcess sets it: `python -c` puts the working folder first on sys.path
    result = subprocess.run(worker_launch.worker_argv(resolved, job.root, bundled=False), env=worker_launch.worker_env(False),
                            cwd=job.root, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["torch"] == "users-cuda-build"  # not the bundled CPU build
    assert seen["ins_core"].startswith(str(extension))  # ins_core still comes from the extension
    assert seen["job"] == str(job.root.resolve())
    # And with Blender's own Python, the bundled torch is the one the worker gets.
    own = subprocess.run(worker_launch.worker_argv(sys.executable, job.root, bundled=True), env=worker_launch.worker_env(True), cwd=job.root,
                         capture_output=True, text=True, timeout=60)
    assert json.loads(own.stdout.strip().splitlines()[-1])["torch"] == "bundled-cpu-build", own.stderr


def test_check_worker_reports_torch_and_cuda(worker_python):
    check = worker_check.check_worker(worker_python, timeout=120)  # the test venv's Python, or INS_WORKER_PYTHON
    assert check.ok, check.message
    torch_says = subprocess.run([worker_python, "-c", "import torch; print(torch.__version__, torch.cuda.is_available())"],
                                capture_output=True, text=True, timeout=120, check=True).stdout.split()
    assert [check.torch_version, str(check.cuda)] == torch_says
    assert check.message.startswith("Worker OK: Python 3.11") and f"torch {check.torch_version}" in check.message


def test_shutdown_stops_every_worker(fake, tmp_path):
    job = make_job(tmp_path, "slow")
    worker = start(job)
    while worker.state.step < 5:
        worker.wait_event(1.0)
    worker_process.shutdown_all(timeout=5.0)  # what quitting Blender runs (atexit)
    assert gone(worker.pid)


# ---- the Blender glue ---------------------------------------------------------------------


@pytest.fixture
def addon(ins_addon):
    return ins_addon


def scene_state(scene) -> dict:
    state = {name: sorted(b.name for b in getattr(bpy.data, name))
             for name in ("objects", "meshes", "cameras", "images", "materials", "collections", "scenes")}
    render = scene.render
    state["render"] = (render.engine, render.resolution_x, render.resolution_y, render.resolution_percentage,
                       render.film_transparent, render.filepath, scene.cycles.samples)
    state["camera"] = scene.camera.name if scene.camera else None
    state["frame"] = scene.frame_current
    state["transforms"] = {o.name: tuple(map(tuple, o.matrix_world)) for o in bpy.data.objects}
    return state


def style_file(tmp_path: Path) -> Path:
    path = tmp_path / "style.png"
    Image.fromarray((np.random.default_rng(0).random((16, 16, 3)) * 255).astype(np.uint8)).save(path)
    return path


def test_the_timer_copies_the_state_into_the_scene(fake, addon, tmp_path):
    scene = addon
    job = make_job(tmp_path)
    run = job_run.JobRun(job.root, sys.executable).start()
    jobs.add_run(scene, run)
    assert scene.ins.status == "RUNNING" and scene.ins.job_dir == str(job.root)
    deadline = time.monotonic() + 30
    while jobs.active_run(scene) is not None and time.monotonic() < deadline:
        assert jobs._timer() in (jobs.TIMER_INTERVAL_S, None)  # what bpy.app.timers calls
        time.sleep(0.05)
    assert scene.ins.status == "FINISHED", scene.ins.message
    assert scene.ins.progress == 1.0 and scene.ins.render_job_dir == str(job.root)
    assert scene.ins.preview_image == jobs.PREVIEW_IMAGE
    preview = bpy.data.images[jobs.PREVIEW_IMAGE]
    assert tuple(preview.size) == (4, 4) and preview.users == 0  # not saved with the file
    assert jobs._timer() is None  # nothing left to watch: the timer unregisters itself


def test_stylize_with_a_missing_worker_python_leaves_the_scene_as_it_was(addon, monkeypatch, tmp_path):
    scene = addon
    bpy.ops.mesh.primitive_cube_add()
    bpy.ops.ins.add_style(filepath=str(style_file(tmp_path)))
    scene.ins.output_dir = str(tmp_path / "jobs")
    monkeypatch.setattr(preferences._DEFAULTS, "worker_python", str(tmp_path / "missing" / "python3"))
    before = scene_state(scene)
    with pytest.raises(RuntimeError, match="does not exist; choose a Python with torch in Preferences"):
        bpy.ops.ins.stylize_scene()
    assert scene_state(scene) == before
    assert scene.ins.status == "IDLE"
    assert not (tmp_path / "jobs").exists() or not any((tmp_path / "jobs").iterdir())


def test_stylize_scene_runs_capture_and_worker(fake, addon, tmp_path):
    scene = addon
    bpy.ops.mesh.primitive_cube_add()
    bpy.ops.ins.add_style(filepath=str(style_file(tmp_path)))
    s = scene.ins
    s.output_dir, s.outputs, s.capture_source = str(tmp_path / "jobs"), "RENDER_ENGINE", "AUTO_RIG"
    s.n_views, s.capture_resolution, s.capture_samples = 3, 16, 1
    s.stroke_scale, s.palette_weight, s.palette_spread_auto, s.palette_spread, s.style_detail = 1.5, 1.0, False, 0.8, "FULL"
    s.keep_unseen, s.mesh_smoothing = True, 7
    before = scene_state(scene)
    assert bpy.ops.ins.stylize_scene() == {"FINISHED"}
    assert s.status == "FINISHED", s.message
    job = JobPaths(s.job_dir)
    spec = json.loads(job.job_json.read_text())
    assert spec["styles"] == ["styles/00_style.png"] and (job.root / spec["styles"][0]).is_file()
    assert spec["outputs"] == ["render_engine"] and spec["preset"] == "preview"
    assert spec["overrides"]["train_resolution"] == 16 and spec["overrides"]["stroke_scale"] == 1.5
    assert spec["overrides"]["palette_weight"] == 1.0 and spec["overrides"]["style_detail"] == "full"
    assert spec["overrides"]["palette_spread"] == pytest.approx(0.8)
    assert spec["overrides"]["mesh_keep_unseen"] is True and spec["overrides"]["mesh_smooth"] == 7
    train = json.loads((job.dataset_dir / "transforms_train.json").read_text())
    assert len(train["frames"]) + len(json.loads((job.dataset_dir / "transforms_test.json").read_text())["frames"]) == 3
    assert s.render_job_dir == str(job.root)
    after = scene_state(scene)
    after["images"] = [n for n in after["images"] if n != jobs.PREVIEW_IMAGE]
    assert after == before  # only the preview image is new; the user's scene is as it was


def test_a_reopened_file_does_not_show_a_dead_job_as_running(addon):
    scene = addon
    scene.ins.status, scene.ins.eta_text = "RUNNING", "about 3 min left"
    jobs._load_post()
    assert scene.ins.status == "CANCELLED" and scene.ins.eta_text == ""
    assert "press Resume" in scene.ins.message


def test_the_panels_stroke_scale_palette_weight_and_detail_start_at_the_cores_defaults(addon, tmp_path):
    """The N-panel always sends its values, so its defaults are the defaults an artist gets."""
    pytest.importorskip("torch")  # the core's settings; the Python 3.13 venv has the add-on only
    from ins_core.stylize_options import STYLE_DETAILS
    from ins_core.train.stylize_settings import StylizeSettings

    core = StylizeSettings()
    assert addon.ins.palette_weight == pytest.approx(core.palette_weight) and core.palette_weight > 0
    assert addon.ins.stroke_scale == pytest.approx(core.stroke_scale)
    assert addon.ins.palette_spread_auto and core.palette_spread == "auto"
    bpy.ops.ins.add_style(filepath=str(style_file(tmp_path)))
    assert job_request.request_from_scene(bpy.context).overrides["palette_spread"] == "auto"  # what the worker is sent
    assert addon.ins.style_detail.lower() == core.style_detail
    assert {key.lower() for key, _, _ in properties.DETAILS} == set(STYLE_DETAILS)
