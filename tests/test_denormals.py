"""Frames are drawn with float32 subnormals flushed to zero (a CPU slow path), and only frames:
the flag is per thread and cleared again, since scipy's cKDTree crashes under it."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap

import numpy as np
import torch
from scipy.spatial import cKDTree

from ins_core.data.cameras import Intrinsics, look_at
from ins_core.device import subnormals_flushed
from ins_core.render.views import render_view
from ins_core.train.scene_models import SdfModel


def flushes() -> bool:
    """Whether this thread turns a subnormal result into zero."""
    return bool((torch.tensor([1e-30]) * 1e-10 == 0).all())


def test_a_frame_is_drawn_with_subnormals_flushed_on_every_thread_and_the_flag_is_cleared_after(monkeypatch):
    torch.manual_seed(0)
    model = SdfModel(torch.tensor([[-0.5] * 3, [0.5] * 3]), {"n_levels": 4, "log2_table_size": 10, "max_resolution": 32}, n_samples=16).eval()
    seen = []
    own_render = model.render
    monkeypatch.setattr(model, "render", lambda o, d, b: seen.append(flushes()) or own_render(o, d, b))
    c2w = look_at(torch.tensor([1.5, 0.5, 0.8]), torch.zeros(3))
    intrinsics = Intrinsics.from_fov(math.radians(40), 16, 16).as_tensor()
    assert not flushes()  # torch's default
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for workers in (1, 2):  # the calling thread, then the frame worker threads
            render_view(model, c2w, intrinsics, 16, 16, fast=False, workers=workers, chunk=64)
    finally:
        torch.set_num_threads(threads)
    assert len(seen) >= 8 and all(seen)
    assert not flushes()  # cleared on the way out
    points = np.random.default_rng(0).random((500, 3))
    assert cKDTree(points).query(points)[0].max() == 0.0  # what the flag would crash still runs


def test_numpy_does_not_warn_of_its_limits_inside_the_block():
    script = textwrap.dedent("""
        import numpy
        from ins_core.device import subnormals_flushed
        with subnormals_flushed():
            print(str(numpy.finfo(numpy.float32)).count("smallest_subnormal"))
    """)
    done = subprocess.run([sys.executable, "-W", "error", "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "1" and "Warning" not in done.stderr


def test_the_flag_is_cleared_when_the_block_fails():
    try:
        with subnormals_flushed():
            assert flushes()
            raise RuntimeError("a frame that fails")
    except RuntimeError:
        pass
    assert not flushes()
