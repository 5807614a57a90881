import sys
from pathlib import Path

import pytest

# Lets test modules share the analytic scenes in tests/scenes.py.
sys.path.insert(0, str(Path(__file__).parent))


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
