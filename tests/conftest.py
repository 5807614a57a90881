import os
import sys
from pathlib import Path

import pytest

# Lets test modules share the analytic scenes in tests/scenes.py.
sys.path.insert(0, str(Path(__file__).parent))

# The Python that runs the worker (torch) in the Blender-side tests: the test interpreter itself,
# or, in a test environment without torch (bpy 5.2.3 on Python 3.13: `make test-blender-313`), the
# project's own environment named by INS_WORKER_PYTHON.
WORKER_PYTHON_ENV = "INS_WORKER_PYTHON"


@pytest.fixture(autouse=True, scope="session")
def _throughput_file(tmp_path_factory):
    """Workers the tests start record their speed in a scratch file, not the user's cache folder
    (the panel's estimate reads that file: ins_core.throughput)."""
    name, previous = "INS_THROUGHPUT_FILE", os.environ.get("INS_THROUGHPUT_FILE")
    os.environ[name] = str(tmp_path_factory.mktemp("throughput") / "throughput.json")
    yield
    if previous is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = previous


@pytest.fixture
def worker_python() -> str:
    return os.environ.get(WORKER_PYTHON_ENV) or sys.executable


@pytest.fixture(autouse=True)
def _worker_python_preference(monkeypatch):
    """With INS_WORKER_PYTHON set, the add-on's Worker Python preference names it, as a user of a
    Blender whose own Python has no torch sets it."""
    path = os.environ.get(WORKER_PYTHON_ENV)
    if path:
        from ins_blender import preferences

        monkeypatch.setattr(preferences._DEFAULTS, "worker_python", path)


@pytest.fixture
def ins_addon():
    """An empty factory-settings scene with the INS add-on registered, unregistered afterwards."""
    bpy = pytest.importorskip("bpy")
    import ins_blender

    bpy.ops.wm.read_factory_settings(use_empty=True)
    ins_blender.register()
    yield bpy.context.scene
    ins_blender.unregister()


@pytest.fixture(scope="module")
def one_torch_thread():
    """The test machine's two cores are shared; two torch threads there run many times slower than one."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
