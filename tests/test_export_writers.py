"""Export, files: glb (Y-up, embedded PNG), obj + mtl + png (Z-up), npz, and atomic writes."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import trimesh
from PIL import Image

from ins_core.errors import InputError
from ins_core.export import cleanup, uv, writers
from test_export_marching_cubes import sphere_mesh

TEXTURE = np.zeros((32, 32, 3), dtype=np.uint8)
TEXTURE[..., 0] = 200
TEXTURE[:16, :, 1] = 120  # top half differs, so a flipped image would show


@pytest.fixture(scope="module")
def mesh():
    """A small unwrapped sphere, stretched so every axis has its own extent (catches axis swaps)."""
    vertices, faces = sphere_mesh(20)
    vertices = vertices * np.array([1.0, 0.7, 0.4], dtype=np.float32) + np.array([0.3, -0.2, 0.5], dtype=np.float32)
    normals = cleanup.vertex_normals(vertices, faces)
    vmapping, faces, uvs = uv.unwrap(vertices, faces, 64)
    return {"vertices": vertices[vmapping], "faces": faces, "uvs": uvs, "normals": normals[vmapping]}


def y_up(points: np.ndarray) -> np.ndarray:
    return np.stack([points[:, 0], points[:, 2], -points[:, 1]], axis=1)


def read_glb(path: Path) -> tuple[dict, bytes]:
    data = path.read_bytes()
    magic, version, length = struct.unpack_from("<III", data, 0)
    assert (magic, version, length) == (0x46546C67, 2, len(data))
    json_length, json_type = struct.unpack_from("<II", data, 12)
    assert json_type == 0x4E4F534A and json_length % 4 == 0
    bin_start = 20 + json_length
    bin_length, bin_type = struct.unpack_from("<II", data, bin_start)
    assert bin_type == 0x004E4942 and bin_length % 4 == 0 and bin_start + 8 + bin_length == len(data)
    return json.loads(data[20:bin_start]), data[bin_start + 8 :]


def test_glb_loads_back_with_the_same_vertices_in_y_up(mesh, tmp_path):
    png = writers.encode_png(TEXTURE)
    path = writers.write_glb(tmp_path / "mesh.glb", mesh["vertices"], mesh["faces"], mesh["uvs"], mesh["normals"], png)
    loaded = trimesh.load(path, process=False, force="mesh")
    assert len(loaded.vertices) == len(mesh["vertices"]) and len(loaded.faces) == len(mesh["faces"])
    expected = y_up(mesh["vertices"])
    assert np.allclose(loaded.bounds, [expected.min(axis=0), expected.max(axis=0)], atol=1e-6)
    assert np.allclose(loaded.vertices, expected, atol=1e-6)
    assert np.allclose(loaded.visual.uv[:, 1], mesh["uvs"][:, 1], atol=1e-6)  # trimesh flips glTF's v back
    image = np.asarray(loaded.visual.material.baseColorTexture.convert("RGB"))
    assert np.array_equal(image, TEXTURE)
    assert loaded.volume > 0  # Y-up conversion is a rotation: faces still point outwards


def test_glb_layout_is_aligned_and_positions_carry_bounds(mesh, tmp_path):
    png = writers.encode_png(TEXTURE)
    path = writers.write_glb(tmp_path / "mesh.glb", mesh["vertices"], mesh["faces"], mesh["uvs"], mesh["normals"], png)
    document, binary = read_glb(path)
    assert document["asset"]["version"] == "2.0"
    assert all(view["byteOffset"] % 4 == 0 for view in document["bufferViews"])
    assert document["buffers"][0]["byteLength"] == len(binary)
    primitive = document["meshes"][0]["primitives"][0]
    assert set(primitive["attributes"]) == {"POSITION", "NORMAL", "TEXCOORD_0"}
    position = document["accessors"][primitive["attributes"]["POSITION"]]
    expected = y_up(mesh["vertices"])
    assert np.allclose(position["min"], expected.min(axis=0)) and np.allclose(position["max"], expected.max(axis=0))
    indices = document["accessors"][primitive["indices"]]
    assert indices["componentType"] == 5125 and indices["count"] == mesh["faces"].size
    material = document["materials"][primitive["material"]]
    image = document["images"][document["textures"][material["pbrMetallicRoughness"]["baseColorTexture"]["index"]]["source"]]
    view = document["bufferViews"][image["bufferView"]]
    assert image["mimeType"] == "image/png"
    assert binary[view["byteOffset"] : view["byteOffset"] + view["byteLength"]] == png


def test_glb_with_vertex_colours_only(mesh, tmp_path):
    colours = np.tile([0.0, 1.0, 0.0], (len(mesh["vertices"]), 1))
    path = writers.write_glb(tmp_path / "c.glb", mesh["vertices"], mesh["faces"], normals=mesh["normals"], vertex_colors=colours)
    document, binary = read_glb(path)
    attributes = document["meshes"][0]["primitives"][0]["attributes"]
    assert "images" not in document and "TEXCOORD_0" not in attributes
    accessor = document["accessors"][attributes["COLOR_0"]]
    view = document["bufferViews"][accessor["bufferView"]]
    assert (accessor["componentType"], accessor["type"], accessor["count"]) == (5126, "VEC3", len(colours))
    stored = np.frombuffer(binary, np.float32, accessor["count"] * 3, view["byteOffset"]).reshape(-1, 3)
    assert np.array_equal(stored, colours.astype(np.float32))


def test_obj_keeps_z_up_and_writes_material_and_texture(mesh, tmp_path):
    png = writers.encode_png(TEXTURE)
    paths = writers.write_obj(tmp_path / "obj", mesh["vertices"], mesh["faces"], mesh["uvs"], mesh["normals"], png)
    assert set(paths) == {"mesh.obj", "mesh.mtl", "texture.png"}
    text = paths["mesh.obj"].read_text()
    assert "+Z up" in text.splitlines()[0] and "mtllib mesh.mtl" in text
    assert "map_Kd texture.png" in paths["mesh.mtl"].read_text()
    assert np.array_equal(np.asarray(Image.open(paths["texture.png"])), TEXTURE)
    loaded = trimesh.load(paths["mesh.obj"], process=False, force="mesh")
    assert len(loaded.vertices) == len(mesh["vertices"]) and len(loaded.faces) == len(mesh["faces"])
    v = mesh["vertices"]
    assert np.allclose(loaded.bounds, [v.min(axis=0), v.max(axis=0)], atol=1e-5)
    assert loaded.volume > 0


def test_obj_with_vertex_colours_and_no_uvs(mesh, tmp_path):
    colours = np.full((len(mesh["vertices"]), 3), 0.25)
    paths = writers.write_obj(tmp_path, mesh["vertices"], mesh["faces"], normals=mesh["normals"], vertex_colors=colours)
    assert set(paths) == {"mesh.obj", "mesh.mtl"}
    text = paths["mesh.obj"].read_text()
    first_vertex = next(line for line in text.splitlines() if line.startswith("v "))
    assert first_vertex.split()[4:] == ["0.25", "0.25", "0.25"]
    assert next(line for line in text.splitlines() if line.startswith("f ")).count("//") == 3
    assert "map_Kd" not in paths["mesh.mtl"].read_text()


def test_npz_holds_the_arrays(mesh, tmp_path):
    path = writers.write_npz(tmp_path / "mesh.npz", mesh["vertices"], mesh["faces"], mesh["uvs"], mesh["normals"])
    with np.load(path, allow_pickle=False) as data:
        assert set(data.files) == {"vertices", "faces", "uvs", "normals", "up_axis"}
        assert np.array_equal(data["vertices"], mesh["vertices"]) and data["vertices"].dtype == np.float32
        assert np.array_equal(data["faces"], mesh["faces"]) and data["faces"].dtype == np.int32
        assert np.array_equal(data["uvs"], mesh["uvs"])
        assert np.allclose(data["normals"], mesh["normals"], atol=1e-6)
        assert str(data["up_axis"]) == "Z"


def test_unwritable_output_folder_is_refused_and_nothing_is_left(mesh, tmp_path):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the output folder should go")
    target = blocker / "result"
    with pytest.raises(InputError, match=f"output folder {target}"):
        writers.check_writable(target)
    with pytest.raises(InputError, match=f"output folder {target}"):
        writers.write_npz(target / "mesh.npz", mesh["vertices"], mesh["faces"])
    with pytest.raises(InputError, match=f"output folder {target}"):
        writers.write_obj(target, mesh["vertices"], mesh["faces"], mesh["uvs"], mesh["normals"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["not_a_folder"]


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root may write anywhere")
def test_read_only_folder_is_refused(mesh, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(InputError, match="locked"):
            writers.write_obj(locked, mesh["vertices"], mesh["faces"])
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o700)


def test_a_failure_mid_write_leaves_neither_temp_files_nor_new_files(mesh, tmp_path, monkeypatch):
    calls = []

    def failing_replace(src, dst):
        calls.append(dst)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(writers.os, "replace", failing_replace)
    with pytest.raises(InputError, match="No space left on device"):
        writers.write_obj(tmp_path, mesh["vertices"], mesh["faces"], mesh["uvs"], mesh["normals"], writers.encode_png(TEXTURE))
    assert calls and list(tmp_path.iterdir()) == []
