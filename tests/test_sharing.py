"""How the worker shares the machine (thread count, priority) and the throughput file behind the
panel's time estimate: choices, overrides, bad values, and a corrupt or missing file."""

import json
import os
import subprocess
import sys

import pytest

from ins_blender import estimates, presets
from ins_core import sharing, throughput


def test_the_default_leaves_one_core_to_blender_and_lowers_the_priority():
    assert [sharing.default_threads(n) for n in (None, 1, 2, 4, 16)] == [1, 1, 1, 3, 15]
    share = sharing.choose({}, cores=8)
    assert (share.threads, share.nice, share.note) == (7, sharing.DEFAULT_NICE, "")
    assert share.describe() == f"7 torch threads, priority nice {sharing.DEFAULT_NICE}"


def test_environment_overrides_and_bad_values_fall_back_with_one_sentence():
    share = sharing.choose({sharing.THREADS_ENV: "2", sharing.NICE_ENV: "0"}, cores=2)
    assert (share.threads, share.nice, share.note) == (2, 0, "")
    bad = sharing.choose({sharing.THREADS_ENV: "many", sharing.NICE_ENV: "40"}, cores=4)
    assert (bad.threads, bad.nice) == (3, sharing.DEFAULT_NICE)
    assert "INS_WORKER_THREADS='many' ignored" in bad.note and "INS_WORKER_NICE='40' ignored" in bad.note


@pytest.mark.skipif(not hasattr(os, "nice"), reason="no process priority to lower here")
def test_apply_sets_the_threads_and_the_niceness_of_the_process():
    # A child process: niceness cannot be lowered back, and this one must not slow the tests.
    code = ("import json, os, torch; from ins_core import sharing; s = sharing.apply(sharing.choose());"
            "print(json.dumps([s.threads, s.nice, torch.get_num_threads(), os.nice(0)]))")
    env = {**os.environ, sharing.THREADS_ENV: "1", sharing.NICE_ENV: str(os.nice(0) + 3)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True, timeout=120)
    assert json.loads(out.stdout) == [1, os.nice(0) + 3, 1, os.nice(0) + 3]


def test_throughput_records_merge_and_give_an_estimate(tmp_path):
    path = tmp_path / "cache" / "throughput.json"
    assert throughput.load(path) == {}
    key = throughput.key("cpu", "NERF", "preview")
    assert key == "cpu/nerf/preview"
    assert throughput.record(key, {"pretrain_steps_per_s": 5.0, "threads": 1}, path)
    assert throughput.record(key, {"stylize_steps_per_s": 0.5, "other_s": 30.0}, path)
    rec = throughput.load(path)[key]
    assert rec["pretrain_steps_per_s"] == 5.0 and rec["stylize_steps_per_s"] == 0.5 and rec["threads"] == 1
    assert throughput.estimate_s(rec, 1500, 120) == pytest.approx(300 + 240 + 30)
    assert not list(path.parent.glob("*.tmp"))  # written through a temporary file, renamed
    assert throughput.stage_rate(10, 1.0) is None and throughput.stage_rate(100, 20.0) == 5.0


def test_the_stylization_estimate_follows_the_views_size(tmp_path):
    path = tmp_path / "throughput.json"
    throughput.record("cpu/nerf/preview", {"pretrain_steps_per_s": 10.0, "stylize_steps_per_s": 2.0,
                                           "stylize_view_pixels": 64 * 64, "other_s": 30}, path)
    rec = throughput.load(path)["cpu/nerf/preview"]
    assert rec["stylize_view_pixels"] == 4096
    # 1500 / 10 + 120 / 2 + 30 at the measured size; at 128x128 the 60 s of stylization grow by
    # (15 000 + 16 384) / (15 000 + 4 096): the demo's 0.38 -> 0.62 s a step on the 2-core Xeon.
    assert throughput.estimate_s(rec, 1500, 120) == pytest.approx(240)
    assert throughput.estimate_s(rec, 1500, 120, 64 * 64) == pytest.approx(240)
    assert throughput.estimate_s(rec, 1500, 120, 128 * 128) == pytest.approx(180 + 60 * 31384 / 19096)
    assert throughput.estimate_s(rec, 1500, 120, 32 * 32) < 240
    preview = presets.get("preview")
    # The Preview preset's 200 steps: 1500 / 10 + 200 / 2 + 30, the 100 s of stylization grown at 400x400.
    small, large = (estimates.measured_seconds(preview, "nerf", "cpu", path, size) for size in ((64, 64), (400, 400)))
    assert small == pytest.approx(280) and large == pytest.approx(180 + 100 * 175000 / 19096)
    assert estimates.estimate_lines(preview, "nerf", "cpu", path, view_size=(400, 400))[0] == "About 18 min here"
    # A record from before the size was kept (or a bad size) is taken as measured at the size asked for.
    throughput.record("cpu/sdf/preview", {"pretrain_steps_per_s": 10.0, "stylize_steps_per_s": 2.0, "stylize_view_pixels": -5}, path)
    rec = throughput.load(path)["cpu/sdf/preview"]
    assert "stylize_view_pixels" not in rec and throughput.estimate_s(rec, 1500, 120, 400 * 400) == pytest.approx(210)


@pytest.mark.parametrize("text", ["", "{not json", "[1, 2]", '{"version": 99, "records": {}}', b"\xff\xfe".decode("latin-1"),
                                  '{"version": 1, "records": {"cpu/nerf/preview": {"pretrain_steps_per_s": "fast"}}}',
                                  '{"version": 1, "records": {"cpu/nerf/preview": {"pretrain_steps_per_s": -1, "stylize_steps_per_s": NaN}}}'])
def test_a_corrupt_throughput_file_means_not_measured_yet(tmp_path, text):
    path = tmp_path / "throughput.json"
    path.write_text(text, encoding="latin-1")
    assert throughput.load(path) == {}
    lines = estimates.estimate_lines(presets.get("preview"), "nerf", "cpu", path)
    assert lines == [*presets.get("preview").estimate_lines(), "Not measured here yet"]
    assert throughput.record("cpu/nerf/preview", {"pretrain_steps_per_s": 4.0}, path)  # overwritten, not stuck
    assert throughput.load(path)["cpu/nerf/preview"]["pretrain_steps_per_s"] == 4.0


def test_the_panel_estimate_uses_this_machines_rates(tmp_path):
    path = tmp_path / "throughput.json"
    preview = presets.get("preview")
    throughput.record("cpu/nerf/preview", {"pretrain_steps_per_s": 2.0, "stylize_steps_per_s": 0.4, "other_s": 60}, path)
    # 1500 / 2 + 200 / 0.4 + 60 = 1310 s
    assert estimates.measured_seconds(preview, "nerf", "cpu", path) == pytest.approx(1310)
    assert estimates.estimate_lines(preview, "nerf", "cpu", path) == ["About 22 min here", "(measured on this machine)"]
    # Another device or mode has no record yet; a record with one stage only gives no estimate.
    assert estimates.estimate_lines(preview, "sdf", "cpu", path)[-1] == "Not measured here yet"
    throughput.record("cuda/nerf/preview", {"pretrain_steps_per_s": 50.0}, path)
    assert estimates.measured_seconds(preview, "nerf", "cuda", path) is None
    throughput.record("cpu/nerf/preview", {"pretrain_steps_per_s": 30.0, "stylize_steps_per_s": 10.0, "other_s": 10}, path)
    assert estimates.estimate_lines(preview, "nerf", "cpu", path)[0] == "About 80 s here"  # 50 + 20 + 10 s; re-read when it changes
    assert all(len(line) <= 28 for line in estimates.estimate_lines(preview, "nerf", "cpu", path))


def test_a_gpu_estimate_counts_the_gpus_longer_preset(tmp_path):
    path = tmp_path / "throughput.json"
    preview = presets.get("preview")
    gpu = preview.budget("gpu")
    rates = {"pretrain_steps_per_s": 100.0, "stylize_steps_per_s": 20.0, "other_s": 10}
    throughput.record("cuda/nerf/preview", rates, path)
    expected = gpu["pretrain_steps"] / 100 + gpu["stylize_steps"] / 20 + 10  # 2000 / 100 + 400 / 20 + 10 = 50 s
    assert estimates.measured_seconds(preview, "nerf", "cuda", path) == pytest.approx(expected)
    # An "auto" job's record says which device the worker found; without that it was a CPU's.
    throughput.record("auto/nerf/preview", {**rates, "device_kind": "gpu"}, path)
    assert estimates.measured_seconds(preview, "nerf", "auto", path) == pytest.approx(expected)
    throughput.record("auto/nerf/preview", {"device_kind": "tpu"}, path)  # not a kind: dropped on load
    cpu = preview.budget("cpu")
    assert "device_kind" not in throughput.load(path)["auto/nerf/preview"]
    assert estimates.measured_seconds(preview, "nerf", "auto", path) == pytest.approx(cpu["pretrain_steps"] / 100 + cpu["stylize_steps"] / 20 + 10)


class FakeMachine:
    """A clock and CPU-time counters that a test advances: `others` cores busy besides the worker."""

    def __init__(self):
        self.now, self.machine, self.own = 0.0, 0.0, 0.0

    def advance(self, seconds: float, others: float, own: float = 1.0) -> None:
        self.now += seconds
        self.own += own * seconds
        self.machine += (own + others) * seconds

    def adaptive(self, cores: int = 2, **kwargs) -> sharing.Adaptive:
        return sharing.Adaptive(cores=cores, machine_s=lambda: self.machine, own_s=lambda: self.own,
                                clock=lambda: self.now, **kwargs)


def test_adaptive_threads_take_the_last_core_only_while_the_rest_of_the_machine_is_idle():
    fake = FakeMachine()
    adaptive = fake.adaptive()
    assert adaptive.enabled and adaptive.threads == 1  # modest until a calm spell
    changes = []
    for _ in range(6):  # 12 s with nothing else running
        fake.advance(2.0, others=0.05)
        changes.append(adaptive.step())
    assert changes == [None, None, None, None, 2, None] and adaptive.threads == 2
    fake.advance(2.0, others=0.9, own=1.1)  # a render starts: one core back at once
    assert adaptive.step() == 1 and adaptive.others == pytest.approx(0.9)
    fake.advance(1.0, others=0.0)
    assert adaptive.step() is None  # sampled only every interval_s
    fake.advance(4.0, others=0.0)
    assert adaptive.step() is None and adaptive.threads == 1  # the render may come back: wait for a calm spell
    fake.advance(8.0, others=0.0)
    assert adaptive.step() == 2


def test_adaptive_threads_stay_put_when_fixed_on_one_core_or_without_machine_figures():
    fake = FakeMachine()
    for adaptive in (fake.adaptive(enabled=False), fake.adaptive(cores=1),
                     sharing.Adaptive(cores=4, machine_s=lambda: None)):
        fake.advance(30.0, others=0.0)
        assert not adaptive.enabled and adaptive.step() is None
    assert fake.adaptive(cores=8).threads == 7


def test_the_capture_time_joins_the_workers_record(tmp_path):
    from ins_core.job import JobSpec

    path = tmp_path / "throughput.json"
    job_json = tmp_path / "job.json"
    JobSpec(mode="sdf", styles=["styles/a.png"], preset="high", device="cpu").save(job_json)
    assert throughput.record_capture(job_json, 42.04, path)  # the add-on, before the worker runs
    assert throughput.load(path) == {"cpu/sdf/high": {"capture_s": 42.0, "updated": throughput.load(path)["cpu/sdf/high"]["updated"]}}
    throughput.record("cpu/sdf/high", {"pretrain_steps_per_s": 10.0, "stylize_steps_per_s": 1.0, "other_s": 8.0}, path)
    high = presets.get("high")
    steps = high.budget("cpu")
    assert estimates.measured_seconds(high, "sdf", "cpu", path) == pytest.approx(steps["pretrain_steps"] / 10 + steps["stylize_steps"] + 8 + 42)
    job_json.write_text("{broken")
    assert not throughput.record_capture(job_json, 1.0, path)


def test_the_worker_follows_the_machine_whenever_it_asks_whether_to_stop(tmp_path, monkeypatch):
    """The worker's `should_stop`, asked between training steps and through the palette match after
    them (a minute on a CPU without a step), moves the torch thread count with the rest of the
    machine, then says whether the job was cancelled."""
    import io
    import signal

    import torch

    from ins_core.worker import Events, JobRunner
    from test_worker import make_job

    paths = make_job(tmp_path / "job")
    devnull = open(os.devnull)
    monkeypatch.setattr(sys, "stdin", devnull)  # no parent's pipe to watch
    handler, threads = signal.getsignal(signal.SIGTERM), torch.get_num_threads()
    try:
        runner = JobRunner(paths.root, Events(io.StringIO()))
        fake = FakeMachine()
        runner.share, runner.adaptive = sharing.Share(1, sharing.DEFAULT_NICE), fake.adaptive()
        torch.set_num_threads(1)
        for _ in range(6):  # 12 s with nothing else running
            fake.advance(2.0, others=0.0)
            assert runner.should_stop() is False
        assert torch.get_num_threads() == 2 and runner.share.threads == 2
        fake.advance(2.0, others=0.9, own=1.1)  # a render starts: its core back at once
        assert runner.should_stop() is False and torch.get_num_threads() == 1
        paths.cancel_path.write_text("")
        assert runner.should_stop() is True
    finally:
        signal.signal(signal.SIGTERM, handler)
        torch.set_num_threads(threads)
        devnull.close()
