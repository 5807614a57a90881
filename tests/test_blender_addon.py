"""The add-on as Blender sees it: registration, settings, presets, preferences, the importer.

Runs through the real `bpy` module (headless). Undo itself needs a window (bpy.ops.ed.undo()
cannot run in module mode), so for the importer these tests check what undo relies on instead:
the operator is registered with {'REGISTER', 'UNDO'}, it only adds new datablocks, and the
user's objects are untouched.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

bpy = pytest.importorskip("bpy")
from mathutils import Vector  # noqa: E402

import ins_blender  # noqa: E402
from ins_blender import importer, presets, preferences, properties  # noqa: E402
from ins_blender.engine import INSRenderEngine  # noqa: E402
from ins_core.errors import InputError  # noqa: E402
from ins_core.job import JobPaths, ResultManifest  # noqa: E402

pytestmark = pytest.mark.blender

PACKAGE = Path(ins_blender.__file__).parent
OPERATORS = ("stylize_scene", "cancel", "import_result", "add_style", "remove_style", "check_worker")


def engines() -> list[str]:
    """bl_idnames of the registered render engines (what the engine dropdown lists)."""
    return [getattr(c, "bl_idname", "") for c in bpy.types.RenderEngine.__subclasses__() if getattr(c, "is_registered", False)]


def test_register_and_unregister_cleanly_twice():
    bpy.ops.wm.read_factory_settings(use_empty=True)
    for _ in range(2):
        ins_blender.register()
        ins_blender.register()  # registering again is harmless
        assert INSRenderEngine in bpy.types.RenderEngine.__subclasses__() and INSRenderEngine.is_registered
        assert "INS" in engines()
        bpy.context.scene.render.engine = "INS"
        assert bpy.context.scene.render.engine == "INS"
        assert bpy.context.scene.ins.preset == "PREVIEW"
        assert all(hasattr(bpy.ops.ins, name) and getattr(bpy.types, f"INS_OT_{name}", None) is not None for name in OPERATORS)
        assert bpy.types.VIEW3D_PT_ins.is_registered and preferences.INS_AddonPreferences.is_registered
        # Film > Transparent and View Layer > Passes show for the engine, its own Data passes under them.
        assert "INS" in bpy.types.RENDER_PT_opengl_film.COMPAT_ENGINES and "INS" in bpy.types.VIEWLAYER_PT_layer_passes.COMPAT_ENGINES
        assert bpy.types.VIEWLAYER_PT_ins_passes_data.is_registered
        # The panels Blender offers any engine show too (a camera's Lens, Output > Format, a mesh's
        # data), and the camera's Depth of Field, which the engine renders; not Freestyle or stereo.
        camera = bpy.data.cameras.new("Camera")
        for panel in (bpy.types.DATA_PT_lens, bpy.types.DATA_PT_camera_dof, bpy.types.DATA_PT_camera_dof_aperture):
            assert panel.poll(SimpleNamespace(engine="INS", camera=camera)), panel.__name__
        assert bpy.types.EEVEE_WORLD_PT_surface.poll(SimpleNamespace(engine="INS", world=bpy.data.worlds.new("W")))  # its colour
        assert all("INS" in panel.COMPAT_ENGINES for panel in (bpy.types.RENDER_PT_format, bpy.types.RENDER_PT_frame_range,
                                                               bpy.types.DATA_PT_vertex_groups, bpy.types.DATA_PT_uv_texture))
        assert not any("INS" in panel.COMPAT_ENGINES for panel in (bpy.types.RENDER_PT_stereoscopy, bpy.types.VIEWLAYER_PT_freestyle,
                                                                   bpy.types.DATA_PT_camera_stereoscopy))
        # World > Mist Pass for the engine, once a view layer asks for the Mist pass (as Cycles' shows).
        scene = bpy.context.scene
        scene.world = bpy.data.worlds.new("World")
        world_context = SimpleNamespace(engine="INS", world=scene.world, scene=scene)
        bpy.context.view_layer.use_pass_mist = False
        assert not bpy.types.WORLD_PT_ins_mist.poll(world_context)
        bpy.context.view_layer.use_pass_mist = True
        assert bpy.types.WORLD_PT_ins_mist.poll(world_context)
        assert not bpy.types.WORLD_PT_ins_mist.poll(SimpleNamespace(engine="CYCLES", world=scene.world, scene=scene))
        assert bpy.app.handlers.load_post and any(h.__module__ == "ins_blender.jobs" for h in bpy.app.handlers.load_post)
        bpy.context.scene.render.engine = "CYCLES"
        ins_blender.unregister()
        assert not INSRenderEngine.is_registered and "INS" not in engines()
        assert not hasattr(bpy.types.Scene, "ins")
        assert not [panel.__name__ for panel in bpy.types.Panel.__subclasses__()
                    if "INS" in getattr(panel, "COMPAT_ENGINES", ()) and panel.is_registered]
        assert not any(getattr(h, "__module__", "") == "ins_blender.jobs" for h in bpy.app.handlers.load_post)
        with pytest.raises(TypeError):
            bpy.context.scene.render.engine = "INS"
    ins_blender.unregister()  # unregistering twice is harmless too


def imported_packages(path: Path) -> set[str]:
    """The top-level packages a module imports (anywhere in it, lazy imports included)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add((node.module or "").split(".")[0])
    return names


def test_the_addon_never_imports_torch():
    for path in PACKAGE.glob("*.py"):
        assert "torch" not in imported_packages(path), f"{path.name} imports torch"


def test_presets_give_capture_and_job_settings_and_estimates():
    assert [item[0] for item in presets.enum_items()] == ["PREVIEW", "STANDARD", "HIGH"]
    previous = None
    for key in presets.ORDER:
        p = presets.get(key.upper())
        assert "CPU" in p.estimate_text() and "GPU" in p.estimate_text() and "estimate" in p.estimate_text()
        cpu, gpu = p.budget("cpu"), p.budget("gpu")
        assert gpu["pretrain_steps"] > cpu["pretrain_steps"] and gpu["stylize_steps"] > cpu["stylize_steps"]  # a GPU trains longer
        if previous is not None:  # each preset costs more than the one before, on either device
            assert p.capture_views > previous.capture_views
            for kind in ("cpu", "gpu"):
                assert p.budget(kind)["pretrain_steps"] > previous.budget(kind)["pretrain_steps"]
                assert p.budget(kind)["stylize_steps"] > previous.budget(kind)["stylize_steps"]
            assert p.cpu_minutes[0] > previous.cpu_minutes[0] and p.gpu_minutes[0] > previous.gpu_minutes[0]
        previous = p
    preview = presets.get("preview")
    assert presets.capture_resolution(preview, 16 / 9) == (160, 90)
    assert presets.capture_resolution(preview, 0.5, override=100) == (50, 100)
    # The job carries what the capture decided; the step counts are the preset's for the worker's device.
    assert presets.job_overrides((64, 36)) == {"train_resolution": 64}
    # The worker resizes views to a width: a portrait view trains at its own width, not its height.
    assert presets.job_overrides((36, 64))["train_resolution"] == 36
    from ins_core.presets import job_settings

    assert job_settings("preview", "cpu", {"train_resolution": 64}) == {**preview.budget("cpu"), "train_resolution": 64}
    assert job_settings("preview", "cuda", {})["stylize_steps"] == preview.budget("gpu")["stylize_steps"] == 400
    assert job_settings("preview", "mps", {"stylize_steps": 30})["stylize_steps"] == 30  # an override wins
    with pytest.raises(ValueError, match="use one of preview, standard, high"):
        presets.get("ultra")


def test_settings_style_mix_device_outputs_and_output_folder(tmp_path):
    bpy.ops.wm.read_factory_settings(use_empty=True)
    ins_blender.register()
    try:
        s = bpy.context.scene.ins
        assert properties.style_mix(s) is None
        s.styles.add().weight = 2.0
        assert properties.style_mix(s) is None  # one style: nothing to mix
        s.styles.add().weight = 6.0
        assert properties.style_mix(s) == pytest.approx([0.25, 0.75])
        assert properties.style_mix([0.0, 0.0]) is None
        s.styles[0].keyframe_insert("weight", frame=1)  # animatable
        assert bpy.context.scene.animation_data.action is not None
        s.device = "CPU"
        assert properties.device_for_job(s) == "cpu"
        s.device = "PREFERENCES"
        assert properties.device_for_job(s, "GPU") in ("cuda", "mps")
        assert properties.outputs_for_job(s) == ["mesh", "render_engine"]
        s.outputs = "MESH"
        assert properties.outputs_for_job(s) == ["mesh"]
        assert not bpy.data.filepath and properties.output_root(s).name == "ins_jobs"  # unsaved: temp dir
        s.output_dir = str(tmp_path)
        assert properties.output_root(s) == tmp_path
    finally:
        ins_blender.unregister()


def test_every_setting_the_panels_show_has_a_tooltip():
    """Each property the sidebar draws says what it does on hover (enums through their items)."""
    drawn = set()
    for node in ast.walk(ast.parse((PACKAGE / "panels.py").read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "prop" and len(node.args) >= 2:
            if isinstance(node.args[1], ast.Constant) and isinstance(node.args[0], ast.Name) and node.args[0].id == "settings":
                drawn.add(node.args[1].value)
    assert {"seed", "capture_resolution", "n_views", "output_dir"} <= drawn  # the walk finds them
    bpy.ops.wm.read_factory_settings(use_empty=True)
    ins_blender.register()
    try:
        rna = properties.INS_SceneSettings.bl_rna.properties
        for name in sorted(drawn):
            prop = rna[name]
            assert prop.description, f"{name} has no tooltip"
            assert prop.type != "ENUM" or all(item.description for item in prop.enum_items), f"{name}: a choice with no tooltip"
        for prop in preferences.INS_AddonPreferences.bl_rna.properties:
            assert prop.identifier in ("rna_type", "bl_idname") or prop.description, f"preference {prop.identifier} has no tooltip"
    finally:
        ins_blender.unregister()


def test_downloads_need_blender_online_access_too():
    prefs = preferences.get()
    assert prefs.allow_downloads  # the add-on's own switch is on by default...
    assert bpy.app.online_access is False  # ...but the bpy module runs offline
    assert not preferences.downloads_allowed(prefs)


# ---- importer ---------------------------------------------------------------------------------

CENTRE, HALF = np.array([1.0, 2.0, 3.0]), np.array([1.0, 0.5, 0.25])


def cube_arrays(with_colors: bool = False) -> dict[str, np.ndarray]:
    """A box with 4 vertices per side (split for UVs), 12 triangles, outward normals."""
    vertices, faces, uvs, normals = [], [], [], []
    for axis in range(3):
        for sign in (-1.0, 1.0):
            u, v = [(a) for a in range(3) if a != axis]
            base = len(vertices)
            for du, dv in ((-1, -1), (1, -1), (1, 1), (-1, 1)):
                p = np.zeros(3)
                p[axis], p[u], p[v] = sign, du, dv
                vertices.append(CENTRE + p * HALF)
                uvs.append(((du + 1) / 4 + (axis * 2 + (sign > 0)) * 0.0, (dv + 1) / 4))
                n = np.zeros(3)
                n[axis] = sign
                normals.append(n)
            quad = [(base, base + 1, base + 2), (base, base + 2, base + 3)]
            faces += quad if sign > 0 else [tuple(reversed(t)) for t in quad]
    arrays = {"vertices": np.array(vertices, np.float32), "faces": np.array(faces, np.int32),
              "uvs": np.array(uvs, np.float32), "normals": np.array(normals, np.float32), "up_axis": np.array("Z")}
    if with_colors:
        arrays["vertex_colors"] = np.full((len(vertices), 3), 0.5, np.float32)
    return arrays


def write_result(root: Path, arrays: dict | None = None, texture: bool = True) -> JobPaths:
    job = JobPaths(root)
    job.make_dirs()
    files = {}
    if arrays is not None:
        np.savez(job.result_dir / "mesh.npz", **arrays)
        files["mesh_npz"] = "result/mesh.npz"
    if texture:
        Image.new("RGB", (8, 8), (255, 128, 0)).save(job.result_dir / "texture.png")
        files["texture"] = "result/texture.png"
    ResultManifest(mode="sdf", styles=["starry"], aabb=[0, 1, 2, 2, 3, 4], files=files,
                   backbone={"name": "vgg16", "pretrained": True, "note": ""}).save(job.result_json)
    return job


@pytest.fixture
def user_scene():
    bpy.ops.wm.read_factory_settings(use_empty=True)
    ins_blender.register()
    bpy.ops.mesh.primitive_monkey_add(location=(0.5, 0.0, 0.0))
    user = bpy.context.object
    user.select_set(True)
    yield bpy.context.scene, user
    ins_blender.unregister()


def snapshot(user) -> dict:
    co = np.empty(len(user.data.vertices) * 3)
    user.data.vertices.foreach_get("co", co)
    return {"matrix": tuple(map(tuple, user.matrix_world)), "co": co.tobytes(), "selected": user.select_get(),
            "active": bpy.context.view_layer.objects.active.name, "collections": [c.name for c in user.users_collection],
            "materials": len(user.data.materials), "names": {n: sorted(b.name for b in getattr(bpy.data, n))
                                                          for n in ("objects", "meshes", "materials", "images")}}


def test_import_adds_the_textured_mesh_in_ins_results(user_scene, tmp_path):
    scene, user = user_scene
    job = write_result(tmp_path / "job", cube_arrays())
    before = snapshot(user)
    assert "UNDO" in bpy.types.INS_OT_import_result.bl_options
    # Stylize Scene's import is undoable too, but it must never be repeatable: Repeat Last would
    # run a whole job again, blocking the interface.
    assert bpy.types.INS_OT_stylize_scene.bl_options == {"UNDO"}
    assert bpy.ops.ins.import_result(job_dir=str(job.root)) == {"FINISHED"}
    obj = bpy.data.objects["INS job"]
    collection = bpy.data.collections[importer.COLLECTION]
    assert obj.name in collection.objects and collection in scene.collection.children_recursive
    # Its origin at the centre of its bounds (it turns about itself), unturned and unscaled.
    assert np.allclose(obj.location, CENTRE, atol=1e-6) and obj.matrix_world.to_3x3() == obj.matrix_world.to_3x3().Identity(3)
    assert np.allclose(np.array(obj.bound_box).mean(0), 0.0, atol=1e-6)
    corners = np.array([obj.matrix_world @ Vector(c) for c in obj.bound_box])
    assert np.allclose(corners.min(0), CENTRE - HALF, atol=1e-6) and np.allclose(corners.max(0), CENTRE + HALF, atol=1e-6)
    mesh = obj.data
    assert (len(mesh.vertices), len(mesh.polygons)) == (24, 12) and all(len(p.vertices) == 3 for p in mesh.polygons)
    uv = np.empty(len(mesh.loops) * 2)
    mesh.uv_layers["UVMap"].data.foreach_get("uv", uv)
    loops = np.empty(len(mesh.loops), np.int32)
    mesh.loops.foreach_get("vertex_index", loops)
    assert np.allclose(uv.reshape(-1, 2), cube_arrays()["uvs"][loops])
    normals = np.array([mesh.corner_normals[i].vector for i in range(len(mesh.loops))])
    assert np.allclose(normals, cube_arrays()["normals"][loops], atol=1e-4)  # the custom normals
    material = mesh.materials[0]
    nodes = material.node_tree.nodes
    texture = next(n for n in nodes if n.type == "TEX_IMAGE")
    assert Path(texture.image.filepath) == job.result_dir / "texture.png" and tuple(texture.image.size) == (8, 8)
    bsdf = next(n for n in nodes if n.type == "BSDF_PRINCIPLED")
    assert bsdf.inputs["Base Color"].links[0].from_node == texture
    after = snapshot(user)
    added = {"objects": ["INS job"], "meshes": ["INS job"], "materials": ["INS job"], "images": ["INS job Texture"]}
    for name, extra in added.items():
        assert sorted(set(after["names"][name]) - set(before["names"][name])) == extra
    after["names"] = before["names"] = None
    assert after == before  # the user's object, selection and active object are untouched


def test_import_twice_reuses_the_collection_and_vertex_colours_work(user_scene, tmp_path):
    scene, _ = user_scene
    job = write_result(tmp_path / "job", cube_arrays(with_colors=True), texture=False)
    first = importer.import_result(scene, job.root)
    second = importer.import_result(scene, job.root)
    assert first.name != second.name
    assert [c.name for c in bpy.data.collections] == [importer.COLLECTION]
    assert second.data.color_attributes["Col"].domain == "POINT"
    node = next(n for n in second.data.materials[0].node_tree.nodes if n.type == "VERTEX_COLOR")
    assert node.layer_name == "Col"


BLOCKS = ((230, 40, 30), (20, 90, 200), (250, 210, 60), (40, 160, 70))  # the texture's four quarters


@pytest.mark.parametrize("shading", ["CAPTURED", "LIT"])
def test_a_captured_mesh_renders_its_texture_exactly_in_cycles_and_a_lit_one_takes_the_lights(tmp_path, shading):
    """A square's texture of four colours, imported with each shading and rendered by Cycles
    straight on (Standard view transform, a sun from the side): "As Captured" gives back the
    texture's own colours, whatever the light; "Lit" shades them by it."""
    bpy.ops.wm.read_factory_settings(use_empty=True)
    ins_blender.register()
    try:
        scene = bpy.context.scene
        scene.ins.mesh_shading = shading
        quad = {"vertices": np.array([[-1, -1, 0], [1, -1, 0], [1, 1, 0], [-1, 1, 0]], np.float32),
                "faces": np.array([[0, 1, 2], [0, 2, 3]], np.int32),
                "uvs": np.array([[0, 0], [1, 0], [1, 1], [0, 1]], np.float32),
                "normals": np.tile(np.array([0, 0, 1], np.float32), (4, 1)), "up_axis": np.array("Z")}
        job = write_result(tmp_path / "job", quad, texture=False)
        texture = np.zeros((16, 16, 3), np.uint8)  # PNG rows run down: the top half is v > 0.5
        texture[:8, :8], texture[:8, 8:], texture[8:, :8], texture[8:, 8:] = BLOCKS
        Image.fromarray(texture).save(job.result_dir / "texture.png")
        manifest = ResultManifest.load(job.result_json)
        ResultManifest(**{**manifest.__dict__, "files": {**manifest.files, "texture": "result/texture.png"}}).save(job.result_json)
        importer.import_result(scene, job.root)

        camera = bpy.data.objects.new("Camera", bpy.data.cameras.new("Camera"))
        camera.data.type, camera.data.ortho_scale, camera.location = "ORTHO", 2.0, (0.0, 0.0, 3.0)
        scene.collection.objects.link(camera)
        scene.camera = camera
        sun = bpy.data.objects.new("Sun", bpy.data.lights.new("Sun", "SUN"))
        sun.data.energy, sun.rotation_euler = 2.0, (1.1, 0.0, 0.0)
        scene.collection.objects.link(sun)
        scene.render.engine, scene.cycles.samples = "CYCLES", 4
        scene.render.resolution_x = scene.render.resolution_y = 32
        scene.view_settings.view_transform = "Standard"
        scene.render.dither_intensity = 0.0
        bpy.ops.render.render()
        bpy.data.images["Render Result"].save_render(str(tmp_path / "render.png"))
        image = np.asarray(Image.open(tmp_path / "render.png").convert("RGB")).astype(int)
        quarters = [image[4:12, 4:12], image[4:12, 20:28], image[20:28, 4:12], image[20:28, 20:28]]
        errors = [np.abs(quarter - np.array(colour)).max() for quarter, colour in zip(quarters, BLOCKS)]
        if shading == "CAPTURED":
            assert max(errors) <= 2, errors
        else:
            assert min(errors) > 10, errors
    finally:
        ins_blender.unregister()


def test_a_captured_mesh_does_not_light_its_neighbours(tmp_path):
    """In a scene with no light at all, a white floor beside an As Captured mesh stays black: only
    camera rays see its Emission (a plain Emission would light the floor, as the last render shows)."""
    bpy.ops.wm.read_factory_settings(use_empty=True)
    ins_blender.register()
    try:
        scene = bpy.context.scene
        job = write_result(tmp_path / "job", cube_arrays())  # an orange box standing on the floor
        box = importer.import_result(scene, job.root, shading="CAPTURED")
        bpy.ops.mesh.primitive_plane_add(size=20.0, location=(0.0, 0.0, float(CENTRE[2] - HALF[2])))
        camera = bpy.data.objects.new("Camera", bpy.data.cameras.new("Camera"))
        camera.location, camera.rotation_euler = (1.0, -4.0, 4.0), (1.4, 0.0, 0.0)  # looking at the box, the floor below
        scene.collection.objects.link(camera)
        scene.camera = camera
        scene.render.engine, scene.cycles.samples = "CYCLES", 16
        scene.render.resolution_x = scene.render.resolution_y = 48
        scene.view_settings.view_transform = "Standard"
        scene.render.dither_intensity = 0.0

        def around_the_box() -> np.ndarray:
            """The rendered pixels that are not the box's orange (the floor, the sky)."""
            bpy.ops.render.render()
            bpy.data.images["Render Result"].save_render(str(tmp_path / "render.png"))
            image = np.asarray(Image.open(tmp_path / "render.png").convert("RGB")).astype(int)
            box_pixels = np.abs(image - np.array([255, 128, 0])).max(axis=-1) <= 6  # (16 samples' noise)
            assert box_pixels.sum() > 50  # the box in view, its colours as captured
            near = box_pixels.copy()  # and its silhouette's anti-aliased pixels, two around
            for dy in range(-2, 3):
                for dx in range(-2, 3):
                    near |= np.roll(box_pixels, (dy, dx), axis=(0, 1))
            return image[~near]

        assert around_the_box().max() <= 1  # black: the box lights nothing
        tree = box.data.materials[0].node_tree
        output = next(n for n in tree.nodes if n.type == "OUTPUT_MATERIAL")
        emission = next(n for n in tree.nodes if n.type == "EMISSION")
        tree.links.new(emission.outputs["Emission"], output.inputs["Surface"])  # a plain Emission instead
        assert around_the_box().max() > 5  # now the floor glows orange
    finally:
        ins_blender.unregister()


def test_bad_results_are_refused_before_anything_is_created(user_scene, tmp_path):
    scene, user = user_scene
    before = snapshot(user)
    bad = cube_arrays()
    bad["faces"][0, 0] = 99
    cases = [
        (write_result(tmp_path / "bad", bad), "face indices outside 0..23"),
        (write_result(tmp_path / "no_mesh", None), "has no mesh"),
        (JobPaths(tmp_path / "unfinished"), "has no result yet"),
    ]
    for job, message in cases:
        with pytest.raises(InputError, match=message):
            importer.import_result(scene, job.root)
    with pytest.raises(RuntimeError, match="has no mesh"):
        bpy.ops.ins.import_result(job_dir=str(cases[1][0].root))
    assert snapshot(user) == before
    assert importer.COLLECTION not in bpy.data.collections


def test_style_list_operators(user_scene, tmp_path):
    scene, _ = user_scene
    image = bpy.data.images.new("Painting", 4, 4)
    assert bpy.ops.ins.add_style(filepath=str(tmp_path / "a.jpg")) == {"FINISHED"}
    assert bpy.ops.ins.add_style(image_name="Painting") == {"FINISHED"}
    styles = scene.ins.styles
    assert [s.display_name() for s in styles] == ["a.jpg", "Painting"] and styles[1].image == image
    assert scene.ins.active_style_index == 1
    with pytest.raises(RuntimeError, match="There is no image named 'Nope'"):
        bpy.ops.ins.add_style(image_name="Nope")
    bpy.ops.ins.remove_style()
    assert [s.display_name() for s in styles] == ["a.jpg"] and image.name in bpy.data.images


# ---- panels (drawn against a checking stand-in layout: there is no window to draw in) ------


class CheckingLayout:
    """Accepts what UILayout accepts, and fails on unknown properties and operators.

    `labels` collects label texts; `texts` every text drawn (labels, property names, buttons,
    progress bars), to check that it fits the sidebar.
    """

    def __init__(self):
        self.labels = []
        self.texts = []

    def __getattr__(self, name):
        if name in ("row", "column", "box", "split", "column_flow", "grid_flow"):
            return lambda *a, **k: self
        return lambda *a, **k: None

    def prop(self, data, name, text=None, expand=False, **kwargs):
        assert name in data.bl_rna.properties, f"{type(data).__name__} has no property {name!r}"
        if not expand:
            self.texts.append(data.bl_rna.properties[name].name if text is None else text)

    def progress(self, text="", **kwargs):
        self.texts.append(text)

    def operator(self, idname, text=None, **kwargs):
        module, name = idname.split(".")
        op = getattr(getattr(bpy.ops, module), name)
        props = op.get_rna_type().properties
        self.texts.append(op.get_rna_type().name if text is None else text)

        class Props:
            def __setattr__(self, key, value):
                assert key in props, f"{idname} has no property {key!r}"

        return Props()

    def label(self, text="", **kwargs):
        self.labels.append(text)
        self.texts.append(text)

    def template_list(self, list_type, list_id, data, prop, active_data, active_prop, **kwargs):
        assert getattr(bpy.types, list_type).is_registered
        assert prop in data.bl_rna.properties and active_prop in active_data.bl_rna.properties

    def icon(self, data):
        return 0


def test_panels_draw_in_every_status(tmp_path):
    from ins_blender import panels

    bpy.ops.wm.read_factory_settings(use_empty=True)
    ins_blender.register()
    try:
        scene = bpy.context.scene
        s = scene.ins
        bpy.ops.ins.add_style(filepath=str(tmp_path / "a.png"))
        scene.world = bpy.data.worlds.new("World")
        context = SimpleNamespace(scene=scene, engine="INS", window_manager=bpy.context.window_manager, view_layer=bpy.context.view_layer,
                                  world=scene.world)
        drawn = []
        s.stage, s.eta_text = "Pre-training 1500/1500, PSNR 27.35 dB", "about 59 min left"
        for status in ("IDLE", "RUNNING", "CANCELLED", "FINISHED", "FAILED"):
            s.status, s.job_dir = status, str(tmp_path)
            s.message = "A message " * 10 + "see the log '/a/long/path/to/the/job/folder/worker_stderr.txt'."
            for source in ("CAMERAS", "AUTO_RIG", "ANIMATION"):
                s.capture_source = source
                for preset in ("PREVIEW", "HIGH"):
                    s.preset = preset
                    for panel in panels.CLASSES[1:]:
                        fake = SimpleNamespace(layout=CheckingLayout())
                        panel.draw(fake, context)
                        drawn += fake.layout.texts
        s.status = "RUNNING"
        fake = SimpleNamespace(layout=CheckingLayout())
        panels.VIEW3D_PT_ins_job.draw(fake, context)
        assert any("A message" in line for line in fake.layout.labels)
        assert "Pre-training 1500/1500" in fake.layout.texts and "PSNR 27.35 dB" in fake.layout.texts
        # The sidebar's Neural Render chooses the engine; Render Properties has Render Engine already.
        for panel, with_engine in ((panels.VIEW3D_PT_ins_render, True), (panels.RENDER_PT_ins, False)):
            fake = SimpleNamespace(layout=CheckingLayout())
            panel.draw(fake, context)
            assert ("Engine" in fake.layout.texts) == with_engine and "Render Samples" in fake.layout.texts
        # The field's Placement hidden from renders, or gone from the scene: the panel says what F12 shows.
        placed = bpy.data.objects.new("Placed", None)
        scene.collection.objects.link(placed)
        s.field_object = placed
        for change, expected in ((lambda: None, None), (lambda: setattr(placed, "hide_render", True), "Hidden from renders"),
                                 (lambda: scene.collection.objects.unlink(placed), "Not in this scene")):
            change()
            fake = SimpleNamespace(layout=CheckingLayout())
            panels.VIEW3D_PT_ins_render.draw(fake, context)
            drawn += fake.layout.texts
            notes = [text for text in fake.layout.labels if "render" in text.lower() or "scene" in text.lower()]
            assert (expected is None and not notes) or any(text.startswith(expected) for text in notes), notes
        # Style Weights for other styles than the Render Job's: the panel says what it shows instead.
        from ins_core.job import JobPaths, JobSpec

        job = JobPaths(tmp_path / "rendered")
        job.make_dirs()
        job.result_json.write_text("{}")
        bpy.ops.ins.add_style(filepath=str(tmp_path / "b.png"))
        s.render_job_dir = str(job.root)
        for styles, expected in ((["styles/a.png"], "The Render Job was stylized with 1 style, not these 2"),
                                 (["styles/a.png", "styles/b.png"], None)):
            JobSpec(mode="nerf", styles=styles, outputs=["render_engine"]).save(job.job_json)
            os.utime(job.job_json, ns=(len(styles), len(styles)))  # (a new stamp, as a rewrite within the same tick might not give)
            fake = SimpleNamespace(layout=CheckingLayout())
            panels.RENDER_PT_ins.draw(fake, context)
            drawn += fake.layout.texts
            said = " ".join(fake.layout.labels)
            assert (expected is None and "stylized with" not in said) or expected in said, said
        # Everything fits Blender's default sidebar width (longer text is cut there, not wrapped).
        too_long = sorted({text for text in drawn if len(text) > panels.LINE})
        assert not too_long, f"labels longer than {panels.LINE} characters: {too_long}"
    finally:
        ins_blender.unregister()


def test_the_panel_estimate_comes_from_this_machines_recorded_speed(tmp_path, monkeypatch):
    from ins_blender import panels
    from ins_core import throughput

    path = tmp_path / "throughput.json"
    monkeypatch.setenv(throughput.PATH_ENV, str(path))
    bpy.ops.wm.read_factory_settings(use_empty=True)
    ins_blender.register()
    try:
        scene = bpy.context.scene
        scene.ins.preset, scene.ins.mode, scene.ins.device = "PREVIEW", "NERF", "CPU"
        context = SimpleNamespace(scene=scene, engine="INS", window_manager=bpy.context.window_manager, view_layer=bpy.context.view_layer)

        def labels():
            fake = SimpleNamespace(layout=CheckingLayout())
            panels.VIEW3D_PT_ins.draw(fake, context)
            return fake.layout.labels

        assert "Not measured here yet" in labels() and "CPU: roughly 3-6 min" in labels()
        # What a finished CPU job records: 1500 / 2.5 + 200 / 0.5 + 60 s = 18 min.
        throughput.record("cpu/nerf/preview", {"pretrain_steps_per_s": 2.5, "stylize_steps_per_s": 0.5, "other_s": 60.0})
        assert "About 18 min here" in labels() and "Not measured here yet" not in labels()
        # Measured on the preset's views (160x90 for the default 16:9 render); 400 px views (View Size)
        # make each stylization step (15 000 + 400 x 225) / (15 000 + 160 x 90) times as long: 35 min.
        throughput.record("cpu/nerf/preview", {"stylize_view_pixels": 160 * 90})
        assert "About 18 min here" in labels()
        scene.ins.capture_resolution = 400
        assert "About 35 min here" in labels()
        scene.ins.capture_resolution = 0
        scene.ins.mode = "SDF"  # measured for NeRF only
        assert "Not measured here yet" in labels()
        scene.ins.mode = "NERF"
        path.write_text("{corrupt")
        assert "Not measured here yet" in labels()
    finally:
        ins_blender.unregister()


def test_enabled_as_an_addon_its_preferences_drive_the_worker_check(tmp_path):
    import addon_utils

    bpy.ops.wm.read_factory_settings(use_empty=True)
    addon_utils.enable("ins_blender", default_set=True, handle_error=lambda error: pytest.fail(str(error)))
    try:
        prefs = preferences.get()
        assert isinstance(prefs, preferences.INS_AddonPreferences)
        prefs.worker_python = str(tmp_path / "nowhere" / "python3")
        with pytest.raises(RuntimeError, match="does not exist; choose a Python with torch in Preferences"):
            bpy.ops.ins.check_worker()
        assert "does not exist" in prefs.check_result
    finally:
        addon_utils.disable("ins_blender", default_set=True)
    assert not hasattr(bpy.types.Scene, "ins")


def test_register_forgets_an_ins_core_whose_files_an_upgrade_replaced():
    """An extension upgrade in a running Blender replaces ins_core's files while the old modules
    stay imported; register() must import the new ones. In a subprocess: dropping modules from
    sys.modules here would split the classes the other tests hold (InputError and the rest)."""
    script = """
import sys
import ins_core, ins_core.stylize_options as before
from ins_blender import forget_replaced_core
forget_replaced_core()
assert sys.modules["ins_core.stylize_options"] is before  # the files are the ones imported: kept
ins_core._LOADED_FROM = None  # as an upgrade leaves it: other files on disk than those imported
forget_replaced_core()
assert "ins_core" not in sys.modules and "ins_core.stylize_options" not in sys.modules
import ins_core.stylize_options as after
assert after is not before and sys.modules["ins_core"].loaded_from_current_files()
del sys.modules["ins_core"].loaded_from_current_files  # a build from before the check: replaced too
forget_replaced_core()
assert "ins_core.stylize_options" not in sys.modules
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=PACKAGE.parent, timeout=120)
    assert done.returncode == 0, done.stderr


def test_the_field_follows_the_imported_mesh_of_the_job_the_engine_renders(user_scene, tmp_path):
    """Import Result makes the new mesh the field's Placement when its job is the one the INS engine
    renders (the latest job, or the Render Job); a mesh of another job leaves the Placement alone."""
    scene, _ = user_scene
    job = write_result(tmp_path / "job", cube_arrays())
    other = write_result(tmp_path / "other", cube_arrays())
    scene.ins.job_dir = str(job.root)
    assert scene.ins.field_object is None
    first = importer.import_result(scene, job.root)
    assert scene.ins.field_object == first
    importer.import_result(scene, other.root)
    assert scene.ins.field_object == first
    scene.ins.render_job_dir = str(other.root)
    assert bpy.ops.ins.import_result(job_dir=str(other.root)) == {"FINISHED"}
    assert scene.ins.field_object not in (None, first) and scene.ins.field_object["ins_job"] == str(other.root)


def test_show_stylized_swaps_the_result_with_the_objects_it_was_made_from(user_scene, tmp_path):
    """The capture names the objects it stylized; the imported mesh keeps the names and is shown in
    their place; Show Originals brings them back and hides the mesh, Show Stylized the reverse,
    each an undoable step. A second job's mesh made from the same objects takes the first one's
    place too. Objects no longer there (renamed, deleted) are passed over; a job that names none
    hides nothing."""
    scene, user = user_scene
    jobs = []
    for name in ("job", "again"):
        jobs.append(write_result(tmp_path / name, cube_arrays()))
        (jobs[-1].dataset_dir / "transforms_train.json").write_text(json.dumps({"captured_objects": [user.name, "Gone"], "frames": []}))
    bystander = bpy.data.objects.new("Bystander", bpy.data.meshes.new("Bystander"))
    scene.collection.objects.link(bystander)
    assert not bpy.ops.ins.show_result.poll()  # no result yet
    assert "UNDO" in bpy.types.INS_OT_show_result.bl_options

    def shown(obj) -> bool:
        assert obj.hide_render == obj.hide_get()  # the viewport and renders alike
        return not obj.hide_render

    first = importer.import_result(scene, jobs[0].root)
    assert list(first["ins_originals"]) == [user.name, "Gone"]
    assert shown(first) and not shown(user) and shown(bystander)
    bpy.context.view_layer.objects.active = first
    assert bpy.ops.ins.show_result(stylized=False) == {"FINISHED"}
    assert shown(user) and not shown(first)
    assert bpy.ops.ins.show_result(stylized=True) == {"FINISHED"}
    assert shown(first) and not shown(user) and shown(bystander)
    second = importer.import_result(scene, jobs[1].root)  # another painting, say
    assert shown(second) and not shown(first) and not shown(user)
    bpy.context.view_layer.objects.active = first
    assert bpy.ops.ins.show_result(stylized=True) == {"FINISHED"}
    assert shown(first) and not shown(second) and not shown(user)
    # A job whose dataset does not say (made by the CLI): it hides nothing.
    bare = importer.import_result(scene, write_result(tmp_path / "bare", cube_arrays()).root)
    assert list(bare["ins_originals"]) == [] and shown(bare) and shown(first)


def test_the_field_follows_the_meshs_vertices_through_set_origin_and_apply_scale(user_scene, tmp_path):
    """An artist sets the imported mesh's origin elsewhere (the 3D cursor) to turn it about that, or
    applies its scale: the vertices move inside the object and its matrix the other way, and the
    field's placement still takes every vertex from where it was at import to where it shows now."""
    from mathutils import Matrix

    from ins_blender.placement import field_placement

    scene, _ = user_scene
    job = write_result(tmp_path / "job", cube_arrays())
    scene.ins.job_dir = str(job.root)
    mesh = importer.import_result(scene, job.root)
    assert scene.ins.field_object == mesh and field_placement(scene) is None  # where captured
    at_import = [mesh.matrix_world @ v.co for v in mesh.data.vertices]  # where the field has them

    def follows() -> None:
        bpy.context.view_layer.update()
        placement = Matrix(field_placement(scene) or Matrix.Identity(4))
        for before, vertex in zip(at_import, mesh.data.vertices):
            assert (placement @ before - mesh.matrix_world @ vertex.co).length < 1e-5
        if field_placement(scene) is not None and importlib.util.find_spec("torch") is not None:
            from ins_core.data.placement import Placement

            Placement.from_matrix(field_placement(scene))  # the render server takes it (float32 noise and all)

    for obj in bpy.context.selected_objects:
        obj.select_set(False)
    mesh.select_set(True)
    bpy.context.view_layer.objects.active = mesh
    bpy.context.scene.cursor.location = (0.5, -1.0, 2.0)
    bpy.ops.object.origin_set(type="ORIGIN_CURSOR")
    assert (mesh.matrix_world.translation - Vector((0.5, -1.0, 2.0))).length < 1e-5  # the origin moved to the cursor
    follows()
    assert Matrix(field_placement(scene) or Matrix.Identity(4)).translation.length < 1e-5  # the field did not
    mesh.rotation_euler.z = math.radians(90)  # turned about its new origin
    follows()
    mesh.scale = (2.0, 2.0, 2.0)
    bpy.ops.object.transform_apply(location=False, rotation=False, scale=True)
    follows()
    assert tuple(Matrix(field_placement(scene)).to_scale()) == pytest.approx((2.0, 2.0, 2.0), abs=1e-5)
    # Stretched inside the object (an uneven scale applied): one sentence that says so.
    mesh.scale = (1.0, 3.0, 1.0)
    bpy.ops.object.transform_apply(location=False, rotation=False, scale=True)
    with pytest.raises(InputError, match="its vertices were stretched or sheared since Import Result"):
        field_placement(scene)


def test_the_field_keeps_to_the_mesh_through_edits_of_a_few_vertices(user_scene, tmp_path):
    """An artist deletes a floater, nudges a vertex or adds one in Edit Mode: the field stays on the
    rest of the mesh (with four stored vertex indices, deleting one vertex shifted them and the
    placement was refused); applying a scale afterwards still takes the field along."""
    import bmesh
    from mathutils import Matrix

    from ins_blender.placement import field_placement

    scene, _ = user_scene
    job = write_result(tmp_path / "job", cube_arrays())
    scene.ins.job_dir = str(job.root)
    mesh = importer.import_result(scene, job.root)
    # Each vertex named (1, 2, ...; 0 for one added later) with where the field has it.
    names = mesh.data.attributes.new("test_name", "INT", "POINT")
    names.data.foreach_set("value", list(range(1, len(mesh.data.vertices) + 1)))
    in_field = {k + 1: mesh.matrix_world @ v.co for k, v in enumerate(mesh.data.vertices)}
    mesh.location.x += 1.0
    mesh.rotation_euler.z = 0.5

    def follows(edited: set[int]) -> None:
        bpy.context.view_layer.update()
        placement = Matrix(field_placement(scene))
        values = mesh.data.attributes["test_name"].data
        kept = [(values[i].value, v) for i, v in enumerate(mesh.data.vertices) if values[i].value not in edited | {0}]
        assert len(kept) >= len(in_field) - len(edited)
        for name, vertex in kept:
            assert (placement @ in_field[name] - mesh.matrix_world @ vertex.co).length < 1e-5, name

    def edit(change) -> None:
        editing = bmesh.new()
        editing.from_mesh(mesh.data)
        editing.verts.ensure_lookup_table()
        change(editing)
        editing.to_mesh(mesh.data)
        editing.free()
        mesh.data.update()

    follows(set())
    edit(lambda m: bmesh.ops.delete(m, geom=[m.verts[1], m.verts[2]], context="VERTS"))  # a floater deleted
    follows({2, 3})
    edit(lambda m: setattr(m.verts[5], "co", m.verts[5].co + Vector((0.3, 0.0, 0.1))))  # (name 8 since the deletion)
    follows({2, 3, 8})
    edit(lambda m: m.verts.new((9.0, 9.0, 9.0)))
    follows({2, 3, 8})
    for obj in bpy.context.selected_objects:
        obj.select_set(False)
    mesh.select_set(True)
    bpy.context.view_layer.objects.active = mesh
    mesh.scale = (2.0, 2.0, 2.0)
    bpy.ops.object.transform_apply(location=False, rotation=False, scale=True)
    follows({2, 3, 8})
