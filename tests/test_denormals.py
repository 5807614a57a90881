"""Float32 subnormals are flushed to zero in the processes that train and render (a CPU slow path)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import sys, threading, torch
    if sys.argv[1] == "flushed":  # first thing, as the CLI, the worker and the render server do
        from ins_core.device import flush_denormals
        assert flush_denormals()
    tiny = torch.full((1 << 16,), 1e-30)
    if sys.argv[1] == "default":
        print(bool((tiny * 1e-10 != 0).all()))  # a subnormal result, kept
        sys.exit(0)
    assert bool((tiny * 1e-10 == 0).all())
    torch.set_num_threads(2)  # torch's worker threads start now and copy the setting
    assert bool((torch.full((1 << 20,), 1e-30) * 1e-10 == 0).all())
    seen = []
    thread = threading.Thread(target=lambda: seen.append(bool((tiny * 1e-10 == 0).all())))  # a frame worker thread
    thread.start(); thread.join()
    assert seen == [True]
    import numpy
    str(numpy.finfo(numpy.float32))  # its limits were measured before the flush: no warning (-W error)
    print(True)
""")


def test_the_flush_covers_the_threads_started_after_it_and_numpy_warns_of_nothing():
    for mode in ("default", "flushed"):
        done = subprocess.run([sys.executable, "-W", "error", "-c", SCRIPT, mode], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "True" and "Warning" not in done.stderr


def test_the_worker_and_the_cli_flush_them():
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "ins_core"
    for module, function in (("cli.py", "main"), ("worker.py", "main"), ("render_server.py", "serve")):
        tree = ast.parse((root / module).read_text())
        body = next(node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == function)
        calls = {node.func.id for node in ast.walk(body) if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)}
        assert "flush_denormals" in calls, f"{module}:{function}"
