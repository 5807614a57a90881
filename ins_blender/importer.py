"""A finished job's mesh and baked texture -> a new Blender object and material.

Reads JOB/result/result.json (`ResultManifest`), loads `files["mesh_npz"]` (vertices float32 [V,3]
in Blender world units and axes, faces int32 [F,3], uvs float32 [V,2] with the origin bottom-left,
normals float32 [V,3], optional vertex_colors float32 [V,3]) and `files["texture"]` (PNG), and
adds a mesh object with a Principled BSDF material (Base Color from an Image Texture node, or from
the vertex colours) to the "INS Results" collection (created and linked to the scene if missing).
The object sits at the world origin with an identity transform: the vertices are world positions
of the captured objects already.

Only new datablocks are created (mesh, object, material, image, maybe the collection); nothing
the user had is changed. Everything is validated before the first datablock is created, so a bad
file leaves the file as it was. Call it from an operator with {'REGISTER', 'UNDO'} (Import Result)
so one undo step removes it all.
"""

from __future__ import annotations

from pathlib import Path

import bpy
import numpy as np

from ins_core.errors import InputError
from ins_core.job import JobPaths, ResultManifest

COLLECTION = "INS Results"


def load_manifest(job_dir) -> ResultManifest:
    job = JobPaths(Path(bpy.path.abspath(str(job_dir))))
    if not job.result_json.is_file():
        raise InputError(f"The job '{job.root}' has no result yet ({job.result_json} is missing); wait for it to finish or run Stylize Scene.")
    return ResultManifest.load(job.result_json)


def read_mesh(path: Path) -> dict[str, np.ndarray]:
    """The npz arrays, checked (shapes, dtypes, index range); InputError naming the file."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except FileNotFoundError:
        raise InputError(f"The mesh file '{path}' is missing; re-run the job's export.") from None
    except (OSError, ValueError) as error:
        raise InputError(f"The mesh file '{path}' cannot be read ({error}); re-run the job's export.") from None

    def need(name: str, columns: int, kind: str, optional: bool = False):
        if name not in arrays:
            if optional:
                return None
            raise InputError(f"The mesh file '{path}' has no '{name}' array; re-run the job's export.")
        a = arrays[name]
        if a.ndim != 2 or a.shape[1] != columns or a.dtype.kind not in kind:
            raise InputError(f"The mesh file '{path}': '{name}' has shape {a.shape} ({a.dtype}); expected [N, {columns}] numbers.")
        return a

    vertices = need("vertices", 3, "f").astype(np.float32)
    faces = need("faces", 3, "iu").astype(np.int64)
    uvs = need("uvs", 2, "f", optional=True)
    normals = need("normals", 3, "f", optional=True)
    colors = need("vertex_colors", 3, "f", optional=True)
    n = len(vertices)
    if n == 0 or len(faces) == 0:
        raise InputError(f"The mesh file '{path}' is empty (the stylized field has no surface); try SDF mode or a larger scene box.")
    if faces.min() < 0 or faces.max() >= n:
        raise InputError(f"The mesh file '{path}' has face indices outside 0..{n - 1}; re-run the job's export.")
    for name, a in (("uvs", uvs), ("normals", normals), ("vertex_colors", colors)):
        if a is not None and len(a) != n:
            raise InputError(f"The mesh file '{path}': '{name}' has {len(a)} rows for {n} vertices; re-run the job's export.")
    if not np.isfinite(vertices).all():
        raise InputError(f"The mesh file '{path}' has non-finite vertex positions; re-run the job's export.")
    return {"vertices": vertices, "faces": faces, "uvs": uvs, "normals": normals, "vertex_colors": colors}


def _result_collection(scene):
    collection = bpy.data.collections.get(COLLECTION)
    if collection is None or collection.library is not None:
        collection = bpy.data.collections.new(COLLECTION)
    if collection not in scene.collection.children_recursive:
        scene.collection.children.link(collection)
    return collection


def build_mesh(name: str, arrays: dict[str, np.ndarray]):
    """A new mesh datablock from the checked arrays (fast foreach_set, no Python loops)."""
    vertices, faces = arrays["vertices"], arrays["faces"]
    n_faces = len(faces)
    mesh = bpy.data.meshes.new(name)
    try:
        mesh.vertices.add(len(vertices))
        mesh.vertices.foreach_set("co", vertices.ravel())
        mesh.loops.add(3 * n_faces)
        mesh.loops.foreach_set("vertex_index", faces.astype(np.int32).ravel())
        mesh.polygons.add(n_faces)
        mesh.polygons.foreach_set("loop_start", np.arange(0, 3 * n_faces, 3, dtype=np.int32))
        if "loop_total" in mesh.polygons.bl_rna.properties and not mesh.polygons.bl_rna.properties["loop_total"].is_readonly:
            mesh.polygons.foreach_set("loop_total", np.full(n_faces, 3, dtype=np.int32))
        if arrays.get("uvs") is not None:
            layer = mesh.uv_layers.new(name="UVMap")
            layer.data.foreach_set("uv", arrays["uvs"][faces.ravel()].astype(np.float32).ravel())
        if arrays.get("vertex_colors") is not None:
            colors = np.clip(arrays["vertex_colors"], 0.0, 1.0)
            rgba = np.concatenate([colors, np.ones((len(colors), 1), np.float32)], axis=1)
            attribute = mesh.color_attributes.new("Col", "FLOAT_COLOR", "POINT")
            attribute.data.foreach_set("color", rgba.astype(np.float32).ravel())
        mesh.update(calc_edges=True)
        mesh.validate(clean_customdata=False)
        if arrays.get("normals") is not None:
            normals = arrays["normals"].astype(np.float32)
            lengths = np.linalg.norm(normals, axis=1, keepdims=True)
            normals = np.where(lengths > 1e-12, normals / np.maximum(lengths, 1e-12), 0.0)
            if len(normals) == len(mesh.vertices):  # validate() removes nothing from a good mesh
                mesh.polygons.foreach_set("use_smooth", np.ones(len(mesh.polygons), dtype=bool))
                mesh.normals_split_custom_set_from_vertices(normals.tolist())
    except BaseException:
        bpy.data.meshes.remove(mesh)
        raise
    return mesh


def build_material(name: str, texture: Path | None, use_vertex_colors: bool):
    material = bpy.data.materials.new(name)
    if material.node_tree is None:  # Blender 4.x; from 5.0 every material has its node tree
        material.use_nodes = True
    tree = material.node_tree
    bsdf = next((n for n in tree.nodes if n.type == "BSDF_PRINCIPLED"), None)
    if bsdf is None:
        bsdf = tree.nodes.new("ShaderNodeBsdfPrincipled")
        output = next((n for n in tree.nodes if n.type == "OUTPUT_MATERIAL"), None) or tree.nodes.new("ShaderNodeOutputMaterial")
        tree.links.new(bsdf.outputs["BSDF"], output.inputs["Surface"])
    bsdf.inputs["Roughness"].default_value = 0.8
    if texture is not None:
        image = bpy.data.images.load(str(texture), check_existing=False)
        image.name = f"{name} Texture"
        node = tree.nodes.new("ShaderNodeTexImage")
        node.image = image
        node.location = (bsdf.location.x - 350, bsdf.location.y)
        tree.links.new(node.outputs["Color"], bsdf.inputs["Base Color"])
    elif use_vertex_colors:
        node = tree.nodes.new("ShaderNodeVertexColor")
        node.layer_name = "Col"
        node.location = (bsdf.location.x - 300, bsdf.location.y)
        tree.links.new(node.outputs["Color"], bsdf.inputs["Base Color"])
    return material


def import_result(scene, job_dir, *, name: str | None = None, pack_texture: bool = False):
    """Add the job's stylized mesh to `scene` in "INS Results"; returns the new object.

    Raises InputError (one sentence) when the job has no finished mesh; then nothing is created.
    """
    job = JobPaths(Path(bpy.path.abspath(str(job_dir))))
    manifest = load_manifest(job.root)
    files = manifest.files
    if "mesh_npz" not in files:
        raise InputError(f"The job '{job.root.name}' has no mesh (its outputs did not include the textured mesh); run Stylize Scene with the 'Textured Mesh' output.")
    arrays = read_mesh(job.resolve(files["mesh_npz"]))
    texture = job.resolve(files["texture"]) if "texture" in files else None
    if texture is not None and not texture.is_file():
        raise InputError(f"The texture '{texture}' of the job '{job.root.name}' is missing; re-run the job's export.")

    base = name or f"INS {job.root.name}"
    created = []
    try:
        mesh = build_mesh(base, arrays)
        created.append(mesh)
        material = build_material(base, texture, arrays.get("vertex_colors") is not None)
        created.append(material)
        mesh.materials.append(material)
        if pack_texture and texture is not None:
            for node in material.node_tree.nodes:
                if node.type == "TEX_IMAGE" and node.image is not None:
                    node.image.pack()
        obj = bpy.data.objects.new(base, mesh)
        created.append(obj)
        obj["ins_job"] = str(job.root)
        obj["ins_styles"] = ", ".join(manifest.styles)
        _result_collection(scene).objects.link(obj)
    except BaseException:
        for block in reversed(created):
            try:
                if isinstance(block, bpy.types.Object):
                    bpy.data.objects.remove(block)
                elif isinstance(block, bpy.types.Material):
                    for node in block.node_tree.nodes:
                        if node.type == "TEX_IMAGE" and node.image is not None:
                            bpy.data.images.remove(node.image)
                    bpy.data.materials.remove(block)
                else:
                    bpy.data.meshes.remove(block)
            except ReferenceError:
                pass
        raise
    return obj
