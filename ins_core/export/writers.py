"""Mesh file writers: binary glTF 2.0 (.glb), Wavefront OBJ + MTL + PNG, and .npz for the add-on.

Everything here is plain numpy arrays in the project's world frame, Blender's: +Z up, metres.
  * glTF is +Y up, so `write_glb` (and only it) turns (x, y, z) into (x, z, -y) for positions
    and normals; Blender's glTF importer turns it back. It also flips v, since glTF puts the
    UV origin at the image's top-left corner while ours (Blender's, OBJ's) is bottom-left.
  * OBJ and npz keep our coordinates and UVs exactly as they are.
Every file goes to a temporary name in the target folder first and is renamed into place only
once complete, so a crash or a polling reader never sees half a file.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import struct
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
from PIL import Image

from ins_core.errors import InputError, require

GENERATOR = "INS for Blender"
OBJ_NAME, MTL_NAME, TEXTURE_NAME = "mesh.obj", "mesh.mtl", "texture.png"
MATERIAL_NAME = "ins_material"

# glTF enums
_FLOAT, _UINT32 = 5126, 5125
_ARRAY_BUFFER, _ELEMENT_ARRAY_BUFFER = 34962, 34963
_LINEAR, _LINEAR_MIPMAP_LINEAR, _CLAMP_TO_EDGE = 9729, 9987, 33071
_TRIANGLES = 4
_GLB_MAGIC, _CHUNK_JSON, _CHUNK_BIN = 0x46546C67, 0x4E4F534A, 0x004E4942


# --- atomic files ---------------------------------------------------------------------------


def _unwritable(folder: Path, error: OSError) -> InputError:
    reason = error.strerror or type(error).__name__
    return InputError(f"Cannot write to the output folder {folder} ({reason}); choose a folder you can write to.")


def check_writable(folder: str | os.PathLike) -> None:
    """Refuse early (before minutes of work) a folder that cannot be made or written, without
    creating anything: its nearest existing ancestor must be a writable directory."""
    path = Path(folder).absolute()
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if probe.is_dir() and os.access(probe, os.W_OK | os.X_OK):
        return
    reason = "permission denied" if probe.is_dir() else f"{probe} is not a folder"
    raise InputError(f"Cannot write to the output folder {path} ({reason}); choose a folder you can write to.")


@contextlib.contextmanager
def _staged(folder: Path) -> Iterator[dict[str, Path]]:
    """Collect name -> temp path entries written in `folder`; on success rename each temp onto
    its name, on any failure delete them all. OS errors become an InputError naming the folder."""
    staged: dict[str, Path] = {}
    try:
        folder.mkdir(parents=True, exist_ok=True)
        yield staged
        for name, tmp in staged.items():
            os.replace(tmp, folder / name)
    except OSError as error:
        raise _unwritable(folder, error) from error
    finally:
        for tmp in staged.values():
            tmp.unlink(missing_ok=True)


def _stage_bytes(staged: dict[str, Path], folder: Path, name: str, data: bytes) -> None:
    fd, tmp_name = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=folder)
    staged[name] = Path(tmp_name)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def write_files(folder: str | os.PathLike, files: Mapping[str, bytes]) -> dict[str, Path]:
    """Write several files into `folder` all-or-nothing (as far as renames allow); returns paths."""
    target = Path(folder)
    with _staged(target) as staged:
        for name, data in files.items():
            _stage_bytes(staged, target, name, data)
    return {name: target / name for name in files}


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write one file atomically."""
    target = Path(path)
    return write_files(target.parent, {target.name: data})[target.name]


def encode_png(texture: np.ndarray) -> bytes:
    """An [H, W, 3|4] uint8 image as PNG bytes (to embed in a .glb or write beside an .obj)."""
    image = np.ascontiguousarray(texture)
    require(
        image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] in (3, 4),
        f"A texture must be uint8 [H, W, 3|4], not {image.dtype} {image.shape}.",
    )
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


# --- checks -----------------------------------------------------------------------------------


def _check_mesh(
    vertices: np.ndarray,
    faces: np.ndarray,
    uvs: np.ndarray | None,
    normals: np.ndarray | None,
    vertex_colors: np.ndarray | None,
) -> tuple[np.ndarray, ...]:
    """The arrays as float32 / int64 after checking shapes agree (one row per vertex)."""
    v = np.asarray(vertices, dtype=np.float32)
    f = np.asarray(faces, dtype=np.int64)
    require(v.ndim == 2 and v.shape[1] == 3 and len(v) > 0, f"vertices must be [V, 3] with V > 0, not {v.shape}.")
    require(f.ndim == 2 and f.shape[1] == 3 and len(f) > 0, f"faces must be [F, 3] with F > 0, not {f.shape}.")
    require(int(f.min()) >= 0 and int(f.max()) < len(v), "faces refer to vertices that do not exist.")
    arrays = [v, f]
    for name, array, width in (("uvs", uvs, 2), ("normals", normals, 3), ("vertex_colors", vertex_colors, 3)):
        if array is None:
            arrays.append(None)
            continue
        a = np.asarray(array, dtype=np.float32)
        require(a.shape == (len(v), width), f"{name} must be [{len(v)}, {width}] (one row per vertex), not {a.shape}.")
        arrays.append(a)
    return tuple(arrays)


def _unit(normals: np.ndarray) -> np.ndarray:
    length = np.linalg.norm(normals, axis=1, keepdims=True)
    return np.where(length > 0, normals / np.maximum(length, 1e-30), np.array([0.0, 0.0, 1.0], dtype=np.float32))


def z_up_to_y_up(points: np.ndarray) -> np.ndarray:
    """Blender (+Z up) to glTF (+Y up): (x, y, z) -> (x, z, -y); a rotation, so it suits normals too."""
    return np.stack([points[:, 0], points[:, 2], -points[:, 1]], axis=1)


# --- glTF binary ------------------------------------------------------------------------------


class _GlbBuffer:
    """The BIN chunk being built, with its bufferViews and accessors."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.length = 0
        self.views: list[dict] = []
        self.accessors: list[dict] = []

    def view(self, data: bytes, target: int | None = None) -> int:
        entry = {"buffer": 0, "byteOffset": self.length, "byteLength": len(data)}
        if target is not None:
            entry["target"] = target
        padding = b"\0" * (-len(data) % 4)  # every view starts on a 4-byte boundary
        self.parts += [data, padding]
        self.length += len(data) + len(padding)
        self.views.append(entry)
        return len(self.views) - 1

    def accessor(self, array: np.ndarray, kind: str, target: int, bounds: bool = False) -> int:
        component = _UINT32 if array.dtype == np.uint32 else _FLOAT
        entry = {
            "bufferView": self.view(np.ascontiguousarray(array).tobytes(), target),
            "componentType": component,
            "count": int(array.shape[0]) if kind != "SCALAR" else int(array.size),
            "type": kind,
        }
        if bounds:  # required for POSITION
            entry["min"] = [float(x) for x in array.min(axis=0)]
            entry["max"] = [float(x) for x in array.max(axis=0)]
        self.accessors.append(entry)
        return len(self.accessors) - 1

    def data(self) -> bytes:
        return b"".join(self.parts)


def glb_bytes(
    vertices: np.ndarray,
    faces: np.ndarray,
    uvs: np.ndarray | None = None,
    normals: np.ndarray | None = None,
    texture_png: bytes | None = None,
    vertex_colors: np.ndarray | None = None,
) -> bytes:
    """The .glb file contents for one mesh with one material (see `write_glb`)."""
    v, f, uv, n, colours = _check_mesh(vertices, faces, uvs, normals, vertex_colors)
    require(texture_png is None or uv is not None, "A texture needs UVs; unwrap the mesh first or drop the texture.")
    buffer = _GlbBuffer()
    attributes = {"POSITION": buffer.accessor(z_up_to_y_up(v).astype(np.float32), "VEC3", _ARRAY_BUFFER, bounds=True)}
    if n is not None:
        attributes["NORMAL"] = buffer.accessor(_unit(z_up_to_y_up(n)).astype(np.float32), "VEC3", _ARRAY_BUFFER)
    if uv is not None:
        flipped = np.stack([uv[:, 0], 1.0 - uv[:, 1]], axis=1).astype(np.float32)  # glTF's v runs down
        attributes["TEXCOORD_0"] = buffer.accessor(flipped, "VEC2", _ARRAY_BUFFER)
    if colours is not None:
        attributes["COLOR_0"] = buffer.accessor(np.clip(colours, 0.0, 1.0), "VEC3", _ARRAY_BUFFER)
    indices = buffer.accessor(f.astype(np.uint32).reshape(-1), "SCALAR", _ELEMENT_ARRAY_BUFFER)

    # Baked colour already holds the look, so the material is plain: not metallic, fully rough.
    pbr: dict = {"baseColorFactor": [1.0, 1.0, 1.0, 1.0], "metallicFactor": 0.0, "roughnessFactor": 1.0}
    document: dict = {
        "asset": {"version": "2.0", "generator": GENERATOR},
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": [{"mesh": 0, "name": "INS result"}],
        "meshes": [{"name": "INS result", "primitives": [
            {"attributes": attributes, "indices": indices, "material": 0, "mode": _TRIANGLES}
        ]}],
        "materials": [{"name": MATERIAL_NAME, "pbrMetallicRoughness": pbr}],
    }
    if texture_png is not None:
        document["images"] = [{"bufferView": buffer.view(texture_png), "mimeType": "image/png", "name": "texture"}]
        document["samplers"] = [
            {"magFilter": _LINEAR, "minFilter": _LINEAR_MIPMAP_LINEAR, "wrapS": _CLAMP_TO_EDGE, "wrapT": _CLAMP_TO_EDGE}
        ]
        document["textures"] = [{"source": 0, "sampler": 0}]
        pbr["baseColorTexture"] = {"index": 0, "texCoord": 0}
    binary = buffer.data()
    document["accessors"], document["bufferViews"] = buffer.accessors, buffer.views
    document["buffers"] = [{"byteLength": len(binary)}]

    text = json.dumps(document, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 4)  # the JSON chunk pads with spaces, the BIN chunk with zeros
    total = 12 + 8 + len(text) + 8 + len(binary)
    return b"".join([
        struct.pack("<III", _GLB_MAGIC, 2, total),
        struct.pack("<II", len(text), _CHUNK_JSON), text,
        struct.pack("<II", len(binary), _CHUNK_BIN), binary,
    ])


def write_glb(
    path: str | os.PathLike,
    vertices: np.ndarray,
    faces: np.ndarray,
    uvs: np.ndarray | None = None,
    normals: np.ndarray | None = None,
    texture_png: bytes | None = None,
    vertex_colors: np.ndarray | None = None,
) -> Path:
    """Write a binary glTF 2.0 file: one mesh, one material whose base colour is the embedded PNG
    texture (and/or COLOR_0 vertex colours). Converts Blender's Z-up to glTF's Y-up (see above)."""
    return write_bytes(path, glb_bytes(vertices, faces, uvs, normals, texture_png, vertex_colors))


# --- OBJ ----------------------------------------------------------------------------------------


def _rows(prefix: str, array: np.ndarray, number: str) -> str:
    """Lines "prefix a b c" for each row, formatted in one go (much faster than a Python loop);
    `number` is the format of one field, which may take several columns ("%d/%d/%d")."""
    if len(array) == 0:
        return ""
    line = prefix + (" " + number) * (array.shape[1] // number.count("%")) + "\n"
    return (line * len(array)) % tuple(array.reshape(-1).tolist())


def obj_text(
    vertices: np.ndarray,
    faces: np.ndarray,
    uvs: np.ndarray | None,
    normals: np.ndarray | None,
    vertex_colors: np.ndarray | None,
    with_texture: bool,
) -> tuple[str, str]:
    """The (mesh.obj, mesh.mtl) texts."""
    v, f, uv, n, colours = _check_mesh(vertices, faces, uvs, normals, vertex_colors)
    header = (
        f"# {GENERATOR} export. Axes are Blender's: +Z up, -Y forward (not OBJ's usual +Y up);\n"
        "# in Blender import with Up Axis: Z and Forward Axis: Y to keep them. Units: metres.\n"
    )
    positions = v if colours is None else np.concatenate([v, np.clip(colours, 0.0, 1.0)], axis=1)
    parts = [header, f"mtllib {MTL_NAME}\no INS_result\n", _rows("v", positions, "%.6g")]
    if uv is not None:
        parts.append(_rows("vt", uv, "%.6g"))
    if n is not None:
        parts.append(_rows("vn", _unit(n), "%.4f"))
    # Every attribute has one row per vertex, so a corner uses the same index for each.
    corner = {(True, True): "%d/%d/%d", (True, False): "%d/%d", (False, True): "%d//%d", (False, False): "%d"}
    pattern = corner[(uv is not None, n is not None)]
    repeats = pattern.count("%d")
    one_based = np.repeat(f + 1, repeats, axis=1)
    parts += [f"usemtl {MATERIAL_NAME}\ns 1\n", _rows("f", one_based, pattern)]
    material = [f"# {GENERATOR} material\nnewmtl {MATERIAL_NAME}\nKa 1 1 1\nKd 1 1 1\nKs 0 0 0\nd 1\nillum 1\n"]
    if with_texture:
        material.append(f"map_Kd {TEXTURE_NAME}\n")
    return "".join(parts), "".join(material)


def write_obj(
    folder: str | os.PathLike,
    vertices: np.ndarray,
    faces: np.ndarray,
    uvs: np.ndarray | None = None,
    normals: np.ndarray | None = None,
    texture_png: bytes | None = None,
    vertex_colors: np.ndarray | None = None,
) -> dict[str, Path]:
    """Write mesh.obj + mesh.mtl (+ texture.png when given) into `folder`, coordinates as they are
    (Z up); vertex colours, when given, go in the common "v x y z r g b" extension."""
    require(texture_png is None or uvs is not None, "A texture needs UVs; unwrap the mesh first or drop the texture.")
    obj, mtl = obj_text(vertices, faces, uvs, normals, vertex_colors, texture_png is not None)
    files = {OBJ_NAME: obj.encode("ascii"), MTL_NAME: mtl.encode("ascii")}
    if texture_png is not None:
        files[TEXTURE_NAME] = texture_png
    return write_files(folder, files)


# --- npz ----------------------------------------------------------------------------------------


def write_npz(
    path: str | os.PathLike,
    vertices: np.ndarray,
    faces: np.ndarray,
    uvs: np.ndarray | None = None,
    normals: np.ndarray | None = None,
    vertex_colors: np.ndarray | None = None,
) -> Path:
    """Write the arrays for the Blender importer (no pickles: plain numeric and string arrays).

    Keys: vertices [V, 3] float32 (Z up), faces [F, 3] int32, and when present uvs [V, 2]
    (origin bottom-left), normals [V, 3], vertex_colors [V, 3] in [0, 1]; plus up_axis "Z".
    """
    v, f, uv, n, colours = _check_mesh(vertices, faces, uvs, normals, vertex_colors)
    arrays = {"vertices": v, "faces": f.astype(np.int32), "up_axis": np.array("Z")}
    for name, array in (("uvs", uv), ("normals", None if n is None else _unit(n)), ("vertex_colors", colours)):
        if array is not None:
            arrays[name] = array.astype(np.float32)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return write_bytes(path, buffer.getvalue())
