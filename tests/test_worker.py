"""The worker subprocess on a real job directory: events, results, cancel and resume, render server."""

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ins_core import sharing, throughput
from ins_core.data.demo_scene import write_demo_dataset, write_demo_style
from ins_core.job import JobPaths, JobSpec, ResultManifest
from ins_core.protocol import NO_DEPTH, QuitCommand, RenderCommand, decode_event, encode

# The loss network sees the 32 px views at 64 px, not the presets' 256: there the palette match
# after training took 108 s of the job's 186 on a 2-core EPYC (71 s in all at 64).
OVERRIDES = {"pretrain_steps": 100, "stylize_steps": 20, "mesh_resolution": 40, "texture_size": 64, "mesh_faces": 600, "stroke_scale": 2.0, "vgg_size": 64,
             "style_detail": "full", "palette_spread": 0.8}


def make_job(root: Path, **overrides) -> JobPaths:
    paths = JobPaths(root)
    paths.make_dirs()
    write_demo_dataset(paths.dataset_dir, n_train=16, n_test=2, resolution=32)
    write_demo_style(paths.styles_dir / "demo.png", 96)
    JobSpec(mode="nerf", styles=["styles/demo.png"], preset="preview", device="cpu", overrides={**OVERRIDES, **overrides},
            outputs=["mesh", "render_engine"]).save(paths.job_json)
    return paths


def start_worker(job: Path, *extra, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "ins_core.worker", str(job), *extra], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=None if env is None else {**os.environ, **env})


# A hang guard, not a speed test: a worker fails it only by saying nothing for this long. Training
# sends progress several times a second, so a loaded machine slows it without tripping the guard.
SILENCE_S = 300


def _lines(process: subprocess.Popen) -> queue.Queue:
    """The process's stdout lines (None at the end), read by one thread so a silent hang can time out."""
    if not hasattr(process, "lines"):
        process.lines = queue.Queue()

        def pump():
            for line in process.stdout:
                process.lines.put(line)
            process.lines.put(None)

        threading.Thread(target=pump, daemon=True).start()
    return process.lines


def read_events(process: subprocess.Popen, until=None, silence_s: float = SILENCE_S):
    events, lines = [], _lines(process)
    while True:
        try:
            line = lines.get(timeout=silence_s)
        except queue.Empty:
            process.kill()
            raise AssertionError(f"the worker sent nothing for {silence_s:g} s (a hang); last events: {events[-3:]}") from None
        if line is None:
            return events
        event = decode_event(line)
        if event is not None:
            events.append(event)
            if until is not None and until(event):
                return events


@pytest.fixture(scope="module")
def finished_job(tmp_path_factory):
    paths = make_job(tmp_path_factory.mktemp("job") / "job")
    worker = start_worker(paths.root, env={throughput.PATH_ENV: str(paths.root.parent / "throughput.json")})
    events = read_events(worker)
    assert worker.wait(timeout=60) == 0, worker.stderr.read()
    return paths, events


def test_the_worker_logs_its_thread_count_priority_and_speed(finished_job):
    paths, events = finished_job
    chosen = sharing.choose()  # what the worker chose in the same environment
    logs = [e.message for e in events if e.event == "log"]
    assert any(m.startswith(f"Worker: {chosen.describe()}") for m in logs), logs
    text = paths.log_path.read_text()
    assert chosen.describe() in text and "pretrain: 100 steps in" in text and "steps/s" in text
    # Its speed is recorded for the panel's estimate: pre-training steps/s and the time outside training.
    record = throughput.load(paths.root.parent / "throughput.json")[throughput.key("cpu", "nerf", "preview")]
    assert record["pretrain_steps_per_s"] > 0 and record["other_s"] > 0
    assert record["device_kind"] == "cpu"  # whose preset budget the rates timed (an "auto" job's may be a GPU's)
    assert record["threads"] in (chosen.threads, sharing.available_cores())  # all cores once the machine was idle for 10 s
    # The stylization rate goes with the size of the views it ran at (the demo dataset's 32x32).
    assert record["stylize_steps_per_s"] > 0 and record["stylize_view_pixels"] == 32 * 32
    # The palette match after the last step is timed apart and left out of that rate (it goes to
    # the time outside training): the rate's steps fit in the stylization's own seconds.
    timings = ResultManifest.load(paths.root / events[-1].path).timings_s
    steps = next(e.total_steps for e in events if e.event == "stage" and e.stage == "stylize")
    assert timings["palette_match"] > 0
    assert steps / record["stylize_steps_per_s"] <= timings["stylize"] + 0.01


def test_a_job_runs_through_every_stage_and_writes_its_result(finished_job):
    paths, events = finished_job
    stages = [e.stage for e in events if e.event == "stage"]
    assert stages == ["pretrain", "stylize", "export"]
    assert events[-1].event == "result"
    manifest = ResultManifest.load(paths.root / events[-1].path)
    assert manifest.mode == "nerf" and manifest.styles == ["demo"]
    assert manifest.backbone["pretrained"] is True  # the ImageNet VGG-16 that the set-up extracted
    mesh = np.load(paths.root / manifest.files["mesh_npz"])
    assert 100 < mesh["faces"].shape[0] <= 600  # decimated to the job's face budget (without it: about 30 k faces)
    assert manifest.metrics["mesh_faces"] == mesh["faces"].shape[0]
    # Reported; at 600 faces nearly every face reaches what some camera saw (0 here, 1 on another
    # CPU: training differs in the last bits), and test_export_visibility and test_fit_cli check
    # what is left out at finer budgets.
    unseen = manifest.metrics["mesh_unseen_faces"]
    assert unseen == int(unseen) and 0 <= unseen <= 0.05 * manifest.metrics["mesh_faces"]
    assert mesh["uvs"].shape == (mesh["vertices"].shape[0], 2)
    assert Image.open(paths.root / manifest.files["texture"]).size == (64, 64)
    assert any(e.event == "log" and "pretrained VGG-16 ImageNet weights" in e.message for e in events)
    stylized = json.loads((paths.checkpoints_dir / "stylized" / "run.json").read_text())
    assert stylized["stylize"]["stroke_scale"] == 2.0 and stylized["stylize"]["style_size"] == 128  # the job's stroke scale reached it (twice the 64 px the loss network sees)
    assert stylized["stylize"]["style_detail"] == "full"  # and its detail (the default is "auto")
    assert stylized["stylize"]["palette_spread"] == 0.8 and stylized["palette_spreads"] == [0.8]  # and its colour spread (the default is auto)
    progress = [e for e in events if e.event == "progress"]
    assert progress and all(0 <= e.step <= e.total_steps for e in progress)
    # Each stage's last step has no time left: the panel shows none, not "about 1 s left", through
    # what follows it (the palette match after the stylization's last step, with its message).
    export = next(i for i, e in enumerate(events) if e.event == "stage" and e.stage == "export")
    training = [e for e in events[:export] if e.event == "progress"]
    assert all((e.eta_s is None) == (e.step == e.total_steps) for e in training), [(e.step, e.eta_s) for e in training]
    last = max(i for i, e in enumerate(events) if e.event == "progress" and e.step == e.total_steps == OVERRIDES["stylize_steps"])
    matching = next(i for i, e in enumerate(events) if e.event == "log" and e.message.startswith("Matching each painting's palette"))
    assert last < matching and not any(e.event == "progress" for e in events[last + 1:matching])
    assert "log.txt" in os.listdir(paths.root)


def test_render_server_answers_render_requests(finished_job, tmp_path):
    paths, _ = finished_job
    server = start_worker(paths.root, "--serve")
    assert read_events(server, until=lambda e: e.event == "ready")[-1].event == "ready"
    c2w = json.loads((paths.dataset_dir / "transforms_test.json").read_text())["frames"][0]["transform_matrix"]
    out = tmp_path / "frame.png"
    command = RenderCommand(request_id="f1", c2w=c2w, fx=40.0, fy=40.0, cx=24.0, cy=16.0, width=48, height=32, out=str(out), style_mix=[1.0])
    server.stdin.write(encode(command) + "\n")
    server.stdin.flush()
    rendered = read_events(server, until=lambda e: e.event in ("rendered", "error"))[-1]
    assert rendered.event == "rendered" and rendered.request_id == "f1"
    image = Image.open(out)
    assert image.size == (48, 32) and image.mode == "RGBA"
    plain = np.asarray(image).astype(int)
    assert plain[..., 3].max() == 255  # the scene is in view

    # Film > Transparent off: over the world's (linear) colour, opaque; and the Z pass beside it.
    world, depth_file, mist_file, normal_file = [0.2, 0.4, 0.8], tmp_path / "frame.depth", tmp_path / "frame.mist", tmp_path / "frame.normal"
    mist_request = {"start": 0.0, "depth": 100.0, "exponent": 1.0, "out": str(mist_file)}
    command = RenderCommand(request_id="f2", c2w=c2w, fx=40.0, fy=40.0, cx=24.0, cy=16.0, width=48, height=32, out=str(out),
                            style_mix=[1.0], background=world, depth_out=str(depth_file), mist=mist_request,
                            normal_out=str(normal_file))
    server.stdin.write(encode(command) + "\n")
    server.stdin.flush()
    assert read_events(server, until=lambda e: e.event in ("rendered", "error"))[-1].event == "rendered"
    over = np.asarray(Image.open(out)).astype(int)
    assert (over[..., 3] == 255).all()
    empty, solid = plain[..., 3] == 0, plain[..., 3] == 255
    assert empty.any() and solid.any()
    assert (np.abs(over[empty][:, :3] - [124, 170, 231]) <= 1).all()  # the world colour, sRGB-encoded
    assert (np.abs(over[solid][:, :3] - plain[solid][:, :3]) <= 1).all()
    depth = np.fromfile(depth_file, "<f4").reshape(32, 48)
    assert (depth[plain[..., 3] < 100] == NO_DEPTH).all()
    camera_distance = np.linalg.norm(np.asarray(c2w)[:3, 3])
    assert (depth[solid] > 0).all() and (depth[solid] < camera_distance + 1.0).all()
    mist = np.fromfile(mist_file, "<f4").reshape(32, 48)  # linear over 100 units: a hundredth of the distance
    assert (mist[empty] > 0.998).all() and (mist[solid] > 0.005).all() and (mist[solid] < (camera_distance + 1.0) / 100).all()
    normals = np.fromfile(normal_file, "<f4").reshape(32, 48, 3)  # x, y, z a pixel
    length = np.linalg.norm(normals, axis=-1)
    assert (length[empty] < 0.003).all() and (np.abs(length[solid] - 1.0) < 0.01).all()
    # Another job's field in the same frame (a copy of this one, moved aside: two objects), over
    # the world's colour; a job that is not there: one sentence naming it, and the server serves on.
    other = tmp_path / "other_job"
    shutil.copytree(paths.root, other)
    aside = [[1.0, 0, 0, 0.6], [0, 1.0, 0, 0], [0, 0, 1.0, 0], [0, 0, 0, 1.0]]
    for request_id, others in (("f2b", [{"job": str(other), "placement": aside, "style_mix": None, "motion": None}]),
                               ("f2c", [{"job": str(tmp_path / "gone"), "placement": None, "style_mix": None, "motion": None}])):
        command = RenderCommand(request_id=request_id, c2w=c2w, fx=40.0, fy=40.0, cx=24.0, cy=16.0, width=48, height=32,
                                out=str(tmp_path / "both.png"), style_mix=[1.0], background=world, depth_out=str(depth_file),
                                others=others)
        server.stdin.write(encode(command) + "\n")
        server.stdin.flush()
        answer = read_events(server, until=lambda e: e.event in ("rendered", "error"))[-1]
        if request_id == "f2b":
            assert answer.event == "rendered"
            both = np.asarray(Image.open(tmp_path / "both.png")).astype(int)
            both_depth = np.fromfile(depth_file, "<f4").reshape(32, 48)
            assert (both_depth <= depth).all() and (both_depth < NO_DEPTH).sum() > (depth < NO_DEPTH).sum() + 10  # more surface
            unchanged = solid & (both_depth == depth)  # where this job's own field is opaque and nearest
            assert unchanged.sum() > 10 and (np.abs(both[unchanged][:, :3] - over[unchanged][:, :3]) <= 1).all()
        else:
            assert answer.event == "error" and str(tmp_path / "gone") in answer.message and "has no result" in answer.message
    # A placement that is no move, turn and one scale: one sentence, and the server serves on.
    stretched = [[1.0, 0, 0, 0], [0, 2.0, 0, 0], [0, 0, 1.0, 0], [0, 0, 0, 1.0]]
    command = RenderCommand(request_id="f3", c2w=c2w, fx=40.0, fy=40.0, cx=24.0, cy=16.0, width=48, height=32, out=str(out),
                            placement=stretched)
    server.stdin.write(encode(command) + "\n")
    server.stdin.flush()
    refused = read_events(server, until=lambda e: e.event in ("rendered", "error"))[-1]
    assert refused.event == "error" and "three equal Scale values" in refused.message
    server.stdin.write(encode(QuitCommand()) + "\n")
    server.stdin.flush()
    assert server.wait(timeout=30) == 0


def test_cancel_keeps_a_checkpoint_and_a_rerun_resumes(tmp_path):
    steps = 80
    paths = make_job(tmp_path / "job", pretrain_steps=steps)
    # Also: the environment fixes the thread count and priority (a bad value is named, not fatal).
    worker = start_worker(paths.root, env={sharing.THREADS_ENV: "1", sharing.NICE_ENV: "x"})
    logs = read_events(worker, until=lambda e: e.event == "progress" and e.step >= 20)
    messages = [e.message for e in logs if e.event == "log"]
    assert f"Worker: 1 torch thread, priority nice {max(os.nice(0), sharing.DEFAULT_NICE)}." in messages, messages
    assert any("INS_WORKER_NICE='x' ignored" in m for m in messages)
    worker.send_signal(signal.SIGTERM)
    events = read_events(worker)
    assert worker.wait(timeout=60) == 0
    assert events[-1].event == "cancelled"
    run = json.loads((paths.checkpoints_dir / "content" / "run.json").read_text())
    stopped_at = run["step"]
    assert 20 <= stopped_at < steps and (paths.checkpoints_dir / "content" / "checkpoints" / "last.pt").is_file()
    with pytest.raises(ProcessLookupError):
        os.kill(worker.pid, 0)  # no process left behind

    (paths.root / "cancel").write_text("")  # the cancel file works too, before any step
    worker = start_worker(paths.root)
    assert read_events(worker)[-1].event == "cancelled"
    worker.wait(timeout=60)
    (paths.root / "cancel").unlink()

    # Run again: pre-training goes on from its checkpoint to its end and stylization begins (a job
    # run to its result is finished_job's); stopped there, it is cancelled as cleanly.
    worker = start_worker(paths.root)
    events = read_events(worker, until=lambda e: e.event == "stage" and e.stage == "stylize")
    first = next(e for e in events if e.event == "progress")
    assert first.step > stopped_at  # resumed, not restarted
    assert any(e.event == "progress" and e.step == steps for e in events)  # and pre-trained to its end
    worker.send_signal(signal.SIGTERM)
    assert read_events(worker)[-1].event == "cancelled" and worker.wait(timeout=60) == 0


def test_bad_job_gives_a_bad_input_event_and_status_2(tmp_path):
    paths = make_job(tmp_path / "job")
    (paths.styles_dir / "demo.png").unlink()
    worker = start_worker(paths.root)
    events = read_events(worker)
    assert worker.wait(timeout=60) == 2
    assert events[-1].event == "error" and events[-1].kind == "bad_input" and "demo.png" in events[-1].message
