"""A finished job's mesh and baked texture -> a new Blender object and material.

Reads JOB/result/result.json (`ResultManifest`), loads `files["mesh_npz"]` without numpy (vertices float32 [V,3]
in Blender world units and axes, faces int32 [F,3], uvs float32 [V,2] with the origin bottom-left,
normals float32 [V,3], optional vertex_colors float32 [V,3]) and `files["texture"]` (PNG), and
adds a mesh object with a material to the "INS Results" collection (created and linked to the
scene if missing): "LIT" shading, a Principled BSDF whose Base Color is the texture (or the vertex
colours), so the mesh takes the scene's lights as any imported textured mesh does; "CAPTURED", an
Emission of the texture for camera rays, so the camera sees the colours exactly as stylized whatever
the lights (as the INS engine shows them, under the Standard view transform), and the same
Principled BSDF for every other ray.
The vertices are world positions of the captured objects; the object's origin is the centre of
their bounds (as Set Origin > Origin to Geometry puts it), so the mesh turns and scales about
itself, and it stands exactly where the objects it was made from stood. When the job is the one
the INS engine renders, the field follows the new object from then on (placement.py): move the
mesh and the neural render moves with it.

Only new datablocks are created (mesh, object, material, image, maybe the collection); of what the
user had, only visibility changes: the objects the job was made from (and earlier results made
from them) are hidden, the new mesh shown in their place (originals.py; Show Originals brings them
back). Everything is validated before the first datablock is created, so a bad file leaves the
file as it was. Call it from an operator with {'REGISTER', 'UNDO'} (Import Result) so one undo
step removes it all.
"""

from __future__ import annotations

import array
import math
from pathlib import Path

import bpy
from mathutils import Matrix

from ins_core.errors import InputError
from ins_core.job import JobPaths, ResultManifest

from .npz import NpyError, load_npz
from .originals import ORIGINALS_PROPERTY, captured_names, show_imported
from .placement import FIELD_ORIGIN_PROPERTY, follow_import, record_at_import
from .rig import RESULT_PROPERTY

COLLECTION = "INS Results"
SHADINGS = ("LIT", "CAPTURED")


def load_manifest(job_dir) -> ResultManifest:
    job = JobPaths(Path(bpy.path.abspath(str(job_dir))))
    if not job.result_json.is_file():
        raise InputError(f"The job '{job.root}' has no result yet ({job.result_json} is missing); wait for it to finish or run Stylize Scene.")
    return ResultManifest.load(job.result_json)


def _as(values: array.array, typecode: str) -> array.array:
    return values if values.typecode == typecode else array.array(typecode, values)


def read_mesh(path: Path) -> dict[str, array.array | None]:
    """The npz arrays as flat `array.array`s (float32 "f", faces int32 "i"), checked (shapes,
    types, index range); InputError naming the file. Needs no numpy (see npz.py)."""
    try:
        arrays = load_npz(path)
    except FileNotFoundError:
        raise InputError(f"The mesh file '{path}' is missing; re-run the job's export.") from None
    except (OSError, NpyError) as error:
        raise InputError(f"The mesh file '{path}' cannot be read ({error}); re-run the job's export.") from None

    def need(name: str, columns: int, kinds: str, typecode: str, optional: bool = False):
        if name not in arrays:
            if optional:
                return None
            raise InputError(f"The mesh file '{path}' has no '{name}' array; re-run the job's export.")
        a = arrays[name]
        if len(a.shape) != 2 or a.shape[1] != columns or a.kind not in kinds:
            raise InputError(f"The mesh file '{path}': '{name}' has shape {list(a.shape)} ({a.kind}); expected [N, {columns}] numbers.")
        return _as(a.values, typecode)

    vertices = need("vertices", 3, "f", "f")
    faces = need("faces", 3, "iu", "q")  # 64-bit first: the range check must see every index
    uvs = need("uvs", 2, "f", "f", optional=True)
    normals = need("normals", 3, "f", "f", optional=True)
    colors = need("vertex_colors", 3, "f", "f", optional=True)
    n = len(vertices) // 3
    if n == 0 or len(faces) == 0:
        raise InputError(f"The mesh file '{path}' is empty (the stylized field has no surface); try SDF mode or a larger scene box.")
    if min(faces) < 0 or max(faces) >= n:
        raise InputError(f"The mesh file '{path}' has face indices outside 0..{n - 1}; re-run the job's export.")
    for name, a, columns in (("uvs", uvs, 2), ("normals", normals, 3), ("vertex_colors", colors, 3)):
        if a is not None and len(a) != n * columns:
            raise InputError(f"The mesh file '{path}': '{name}' has {len(a) // columns} rows for {n} vertices; re-run the job's export.")
    if not all(map(math.isfinite, vertices)):
        raise InputError(f"The mesh file '{path}' has non-finite vertex positions; re-run the job's export.")
    return {"vertices": vertices, "faces": _as(faces, "i"), "uvs": uvs, "normals": normals, "vertex_colors": colors}


def centred(vertices: array.array) -> tuple[array.array, tuple[float, float, float]]:
    """(the vertices less the centre of their bounds, that centre): the object's origin and its
    mesh. The centre is float32 as Blender holds a location, so origin + vertex is where the
    vertex was, within float32 rounding."""
    centre = tuple(array.array("f", [(min(vertices[c::3]) + max(vertices[c::3])) / 2.0 for c in range(3)]))
    out = array.array("f", bytes(vertices.itemsize * len(vertices)))
    for c in range(3):
        out[c::3] = array.array("f", (v - centre[c] for v in vertices[c::3]))
    return out, centre


def per_corner(values: array.array, indices: array.array, columns: int) -> array.array:
    """values[indices] for a flat [N, columns] array: one row per face corner (UVs per loop)."""
    out = array.array(values.typecode, bytes(values.itemsize * columns * len(indices)))
    for c in range(columns):
        out[c::columns] = array.array(values.typecode, map(values[c::columns].__getitem__, indices))
    return out


def rgba(colors: array.array) -> array.array:
    """Flat RGB in [0, 1] (clamped) -> flat RGBA with alpha 1."""
    out = array.array("f", [1.0]) * (len(colors) // 3 * 4)
    for c in range(3):
        out[c::4] = array.array("f", (min(1.0, max(0.0, v)) for v in colors[c::3]))
    return out


def unit_rows(values: array.array) -> list[tuple[float, float, float]]:
    """Flat [N, 3] -> N unit vectors (zero stays zero)."""
    rows = zip(values[0::3], values[1::3], values[2::3])
    return [(x / length, y / length, z / length) if (length := math.sqrt(x * x + y * y + z * z)) > 1e-12 else (0.0, 0.0, 0.0)
            for x, y, z in rows]


def _result_collection(scene):
    collection = bpy.data.collections.get(COLLECTION)
    if collection is None or collection.library is not None:
        collection = bpy.data.collections.new(COLLECTION)
    if collection not in scene.collection.children_recursive:
        scene.collection.children.link(collection)
    return collection


def build_mesh(name: str, arrays: dict[str, array.array | None]):
    """A new mesh datablock from the checked arrays (foreach_set from flat arrays, no numpy)."""
    vertices, faces = arrays["vertices"], arrays["faces"]
    n_faces = len(faces) // 3
    mesh = bpy.data.meshes.new(name)
    try:
        mesh.vertices.add(len(vertices) // 3)
        mesh.vertices.foreach_set("co", vertices)
        mesh.loops.add(3 * n_faces)
        mesh.loops.foreach_set("vertex_index", faces)
        mesh.polygons.add(n_faces)
        mesh.polygons.foreach_set("loop_start", array.array("i", range(0, 3 * n_faces, 3)))
        if "loop_total" in mesh.polygons.bl_rna.properties and not mesh.polygons.bl_rna.properties["loop_total"].is_readonly:
            mesh.polygons.foreach_set("loop_total", array.array("i", [3]) * n_faces)
        if arrays.get("uvs") is not None:
            layer = mesh.uv_layers.new(name="UVMap")
            layer.data.foreach_set("uv", per_corner(arrays["uvs"], faces, 2))
        if arrays.get("vertex_colors") is not None:
            attribute = mesh.color_attributes.new("Col", "FLOAT_COLOR", "POINT")
            attribute.data.foreach_set("color", rgba(arrays["vertex_colors"]))
        mesh.update(calc_edges=True)
        mesh.validate(clean_customdata=False)
        if arrays.get("normals") is not None:
            normals = unit_rows(arrays["normals"])
            if len(normals) == len(mesh.vertices):  # validate() removes nothing from a good mesh
                mesh.polygons.foreach_set("use_smooth", [True] * len(mesh.polygons))
                mesh.normals_split_custom_set_from_vertices(normals)
    except BaseException:
        bpy.data.meshes.remove(mesh)
        raise
    return mesh


def build_material(name: str, texture: Path | None, use_vertex_colors: bool, shading: str = "LIT"):
    material = bpy.data.materials.new(name)
    if material.node_tree is None:  # Blender 4.x; from 5.0 every material has its node tree
        material.use_nodes = True
    tree = material.node_tree
    output = next((n for n in tree.nodes if n.type == "OUTPUT_MATERIAL"), None) or tree.nodes.new("ShaderNodeOutputMaterial")
    bsdf = next((n for n in tree.nodes if n.type == "BSDF_PRINCIPLED"), None)
    if bsdf is None:
        bsdf = tree.nodes.new("ShaderNodeBsdfPrincipled")
        tree.links.new(bsdf.outputs["BSDF"], output.inputs["Surface"])
    bsdf.inputs["Roughness"].default_value = 0.8
    targets = [bsdf.inputs["Base Color"]]
    if shading == "CAPTURED":
        # The camera sees an Emission of the colours (lit by nothing, exactly as stylized); every
        # other ray (bounces, shadows, reflections) the Principled BSDF, so the mesh neither glows
        # onto its neighbours nor looks different to them from any textured mesh.
        emission = tree.nodes.new("ShaderNodeEmission")
        emission.inputs["Strength"].default_value = 1.0
        light_path, mix = tree.nodes.new("ShaderNodeLightPath"), tree.nodes.new("ShaderNodeMixShader")
        tree.links.new(light_path.outputs["Is Camera Ray"], mix.inputs["Fac"])
        tree.links.new(bsdf.outputs["BSDF"], mix.inputs[1])
        tree.links.new(emission.outputs["Emission"], mix.inputs[2])
        tree.links.new(mix.outputs["Shader"], output.inputs["Surface"])
        mix.location = (output.location.x - 200, output.location.y)
        emission.location = (mix.location.x - 250, mix.location.y - 250)
        light_path.location = (mix.location.x - 250, mix.location.y + 200)
        targets.append(emission.inputs["Color"])
    source = None
    if texture is not None:
        image = bpy.data.images.load(str(texture), check_existing=False)
        image.name = f"{name} Texture"
        source = tree.nodes.new("ShaderNodeTexImage")
        source.image = image
    elif use_vertex_colors:
        source = tree.nodes.new("ShaderNodeVertexColor")
        source.layer_name = "Col"
    if source is not None:
        source.location = (bsdf.location.x - 350, bsdf.location.y)
        for target in targets:
            tree.links.new(source.outputs["Color"], target)
    return material


def import_result(scene, job_dir, *, name: str | None = None, pack_texture: bool = False, shading: str | None = None):
    """Add the job's stylized mesh to `scene` in "INS Results"; returns the new object. `shading`
    (SHADINGS; None: the scene's INS setting, else "LIT") chooses its material.

    Raises InputError (one sentence) when the job has no finished mesh; then nothing is created.
    """
    if shading is None:
        settings = getattr(scene, "ins", None)
        shading = settings.mesh_shading if settings is not None else "LIT"
    if shading not in SHADINGS:
        raise InputError(f"The shading '{shading}' is unknown; use one of {', '.join(SHADINGS)}.")
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
    vertices, origin = centred(arrays["vertices"])
    created = []
    try:
        mesh = build_mesh(base, {**arrays, "vertices": vertices})
        created.append(mesh)
        record_at_import(mesh)  # the field follows the vertices (placement.py)
        material = build_material(base, texture, arrays.get("vertex_colors") is not None, shading)
        created.append(material)
        mesh.materials.append(material)
        if pack_texture and texture is not None:
            for node in material.node_tree.nodes:
                if node.type == "TEX_IMAGE" and node.image is not None:
                    node.image.pack()
        obj = bpy.data.objects.new(base, mesh)
        created.append(obj)
        obj[RESULT_PROPERTY] = str(job.root)  # an INS result: later captures leave it out
        obj[ORIGINALS_PROPERTY] = captured_names(job.dataset_dir)  # what Show Stylized hides
        obj.matrix_world = Matrix.Translation(origin)  # its location, and its world matrix before the next update
        obj[FIELD_ORIGIN_PROPERTY] = origin  # where the field's origin lies from the mesh's (placement.py)
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
    follow_import(scene, obj, job.root)
    show_imported(obj, scene, bpy.context.view_layer if bpy.context.scene == scene else scene.view_layers[0])
    return obj
