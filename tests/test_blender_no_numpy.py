"""The add-on in a Blender without numpy (Linux distributions' builds on Python 3.13).

A fresh interpreter with numpy made unimportable registers the add-on and imports a finished
job's mesh.npz (written here with numpy, as the worker writes it).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("bpy")

from test_blender_addon import cube_arrays, imported_packages, write_result  # noqa: E402

pytestmark = pytest.mark.blender

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = r"""
import json, sys
sys.modules["numpy"] = None  # `import numpy` raises ImportError from here on
import bpy
import ins_blender
from ins_blender import importer, npz

bpy.ops.wm.read_factory_settings(use_empty=True)
ins_blender.register()
obj = importer.import_result(bpy.context.scene, sys.argv[1])
mesh = obj.data
uv = [tuple(round(c, 6) for c in d.uv) for d in mesh.uv_layers["UVMap"].data]
loops = [loop.vertex_index for loop in mesh.loops]
nodes = mesh.materials[0].node_tree.nodes
texture = next(n for n in nodes if n.type == "TEX_IMAGE")
print("RESULT " + json.dumps({
    "vertices": len(mesh.vertices), "faces": len(mesh.polygons), "uv": uv, "loops": loops,
    "texture": texture.image.size[:], "linked": texture.outputs["Color"].links[0].to_socket.name,
    "collection": obj.users_collection[0].name, "numpy_loaded": "numpy" in sys.modules and sys.modules["numpy"] is not None,
}))
ins_blender.unregister()
"""


def test_a_result_imports_without_numpy(tmp_path):
    arrays = cube_arrays()
    job = write_result(tmp_path / "job", arrays)
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(job.root)], capture_output=True, text=True,
                          timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(next(line for line in done.stdout.splitlines() if line.startswith("RESULT "))[7:])
    assert (result["vertices"], result["faces"]) == (24, 12)
    expected_uv = arrays["uvs"][np.array(result["loops"])]
    assert np.allclose(np.array(result["uv"]), expected_uv, atol=1e-6)
    assert result["texture"] == [8, 8] and result["linked"] == "Base Color"
    assert result["collection"] == "INS Results" and not result["numpy_loaded"]


def test_the_npz_reader_matches_numpy(tmp_path):
    from ins_blender.npz import NpyError, load_npz

    arrays = {"f32": np.arange(12, dtype=np.float32).reshape(4, 3), "i64": np.arange(6, dtype=np.int64).reshape(2, 3),
              "big": np.arange(6, dtype=">f8").reshape(3, 2), "fortran": np.asfortranarray(np.arange(6, dtype=np.int32).reshape(2, 3)),
              "text": np.array("Z"), "flags": np.array([True, False])}
    for save in (np.savez, np.savez_compressed):
        save(tmp_path / "a.npz", **arrays)
        read = load_npz(tmp_path / "a.npz")
        for name, expected in arrays.items():
            assert read[name].shape == expected.shape
            values = read[name].values
            assert (values == [str(expected)]) if expected.dtype.kind == "U" else list(values) == expected.ravel().tolist()
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(NpyError, match="not an .npz archive"):
        load_npz(tmp_path / "bad.npz")


def test_no_addon_module_imports_numpy():
    """demo.py is the exception: `make demo` runs it in the project's environment, with numpy."""
    import ins_blender

    for path in Path(ins_blender.__file__).parent.glob("*.py"):
        if path.name != "demo.py":
            assert "numpy" not in imported_packages(path), f"{path.name} imports numpy"
