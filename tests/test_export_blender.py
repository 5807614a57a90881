"""Export, round trip into Blender: our Z-up mesh -> glb (Y-up) -> Blender's glTF importer -> Z-up.

Runs the real `bpy` module. The mesh is an off-centre ellipsoid with a different extent on
every axis, so any axis swap or sign error in the conversion shows in the bounds.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

bpy = pytest.importorskip("bpy")

from ins_core.export import export_mesh  # noqa: E402

pytestmark = pytest.mark.blender

BOX = np.array([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])
AXES = torch.tensor([0.8, 0.5, 0.3])
CENTRE = torch.tensor([0.1, -0.2, 0.3])


def ellipsoid_sdf(points: torch.Tensor) -> torch.Tensor:
    """Not an exact distance, but negative inside and zero on the surface, which is all that counts."""
    return ((points - CENTRE) / AXES).norm(dim=-1) - 1.0


def orange(points: torch.Tensor, view_dirs: torch.Tensor) -> torch.Tensor:
    return torch.tensor([1.0, 0.5, 0.0]).expand(len(points), 3)


def _mesh_objects() -> list:
    return [obj for obj in bpy.context.scene.objects if obj.type == "MESH"]


def _world_vertices(obj) -> np.ndarray:
    local = np.empty(len(obj.data.vertices) * 3, dtype=np.float64)
    obj.data.vertices.foreach_get("co", local)
    local = local.reshape(-1, 3)
    matrix = np.array(obj.matrix_world)
    return local @ matrix[:3, :3].T + matrix[:3, 3]


def test_glb_imports_into_blender_with_our_z_up_bounds_uvs_and_texture(tmp_path):
    result = export_mesh(ellipsoid_sdf, orange, BOX, tmp_path, "sdf", resolution=32, texture_size=64)
    with np.load(result.npz) as data:
        ours, uvs, faces = data["vertices"], data["uvs"], data["faces"]

    bpy.ops.wm.read_factory_settings(use_empty=True)
    assert bpy.ops.import_scene.gltf(filepath=str(result.glb)) == {"FINISHED"}
    (obj,) = _mesh_objects()
    world = _world_vertices(obj)
    assert len(world) == len(ours)
    assert np.allclose(world.min(axis=0), ours.min(axis=0), atol=1e-4)
    assert np.allclose(world.max(axis=0), ours.max(axis=0), atol=1e-4)
    assert np.allclose(world, ours, atol=1e-4)  # the importer keeps the vertex order

    # UVs come back in Blender's bottom-left convention, i.e. equal to ours, loop by loop.
    loops = np.empty(len(obj.data.loops), dtype=np.int64)
    obj.data.loops.foreach_get("vertex_index", loops)
    layer = np.empty(len(obj.data.loops) * 2, dtype=np.float64)
    obj.data.uv_layers.active.data.foreach_get("uv", layer)
    assert np.allclose(layer.reshape(-1, 2), uvs[loops], atol=1e-5)
    assert len(obj.data.polygons) == len(faces)

    images = [node.image for node in obj.active_material.node_tree.nodes if node.type == "TEX_IMAGE"]
    assert len(images) == 1 and tuple(images[0].size) == (64, 64)
