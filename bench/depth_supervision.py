"""How the views' depth (the Z pass a Blender capture writes) changes a content fit: held-out PSNR
and how far the exported surface lies from the scene's true one, on the `make demo` scene.

    python bench/depth_supervision.py --weights 0 0.1 --seeds 0 1 2 3 4 [--steps 1500] [--work DIR]

Builds the demo scene with the `bpy` module, captures it as the Preview preset does (24 views of
160x160, Cycles, 16 samples; each view's depth beside it), takes the true surface from the scene's
own meshes, then fits a NeRF per weight and seed. Figures per fit: the held-out PSNR, the Chamfer
distance each way between the marching-cubes surface (192^3, the export's density level) and the
truth, above the pedestal's underside (which no view sees), and the surface's face count (hidden
shells inside objects add faces); each for every surface and for the faces the cameras see (what
the export keeps). One JSON line per figure, the hardware first. With `--pictures
FILE`, the first seed's surfaces for each weight and the true one, shaded grey in Cycles from two
cameras (the demo's, and close to the cube), side by side.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import emit, emit_hardware  # noqa: E402
from ins_core.eval.evaluate import evaluate_views  # noqa: E402
from ins_core.eval.mesh_fidelity import sample_surface  # noqa: E402
from ins_core.export import cleanup, marching_cubes, visibility  # noqa: E402
from ins_core.export.from_run import density_level, field_functions, run_cameras  # noqa: E402
from ins_core.train.fit import FitRequest, start_fit  # noqa: E402
from ins_core.train.loading import TrainedRun  # noqa: E402

SEEN_ABOVE = -0.08  # world z: the pedestal's underside (z = -0.095) is in no view


def capture_demo(dataset_root: Path) -> tuple[np.ndarray, np.ndarray]:
    """Capture the demo scene into dataset_root/dataset; its true surface (vertices, faces)."""
    from ins_blender.capture import capture_views
    from ins_blender.demo_scene import build_demo_scene

    scene = build_demo_scene()
    capture_views(scene, dataset_root, source="auto_rig", n_views=24, resolution=(160, 160), samples=16)
    return scene_surface(scene)


def scene_surface(scene) -> tuple[np.ndarray, np.ndarray]:
    """The scene's meshes as one triangle mesh in world space (vertices, faces)."""
    import bpy

    depsgraph = bpy.context.evaluated_depsgraph_get()
    vertices, faces, offset = [], [], 0
    for obj in scene.objects:
        if obj.type != "MESH":
            continue
        mesh = obj.evaluated_get(depsgraph).to_mesh()
        mesh.calc_loop_triangles()
        vertices.append(np.array([(obj.matrix_world @ v.co)[:] for v in mesh.vertices]))
        faces.append(np.array([t.vertices[:] for t in mesh.loop_triangles]) + offset)
        offset += len(mesh.vertices)
        obj.evaluated_get(depsgraph).to_mesh_clear()
    return np.concatenate(vertices), np.concatenate(faces)


def surface_points(vertices: np.ndarray, faces: np.ndarray, count: int, seed: int) -> np.ndarray:
    points = sample_surface(torch.tensor(vertices, dtype=torch.float64), torch.tensor(faces), count,
                            torch.Generator().manual_seed(seed)).numpy()
    return points[points[:, 2] > SEEN_ABOVE]


def chamfer_seen(mesh: tuple[np.ndarray, np.ndarray], truth: tuple[np.ndarray, np.ndarray]) -> dict:
    """Mean nearest distance each way (the mesh to the truth: stray and hidden surfaces; the truth
    to the mesh: missing or misplaced ones), over what lies above the unseen underside."""
    from scipy.spatial import cKDTree

    dense_truth, dense_mesh = surface_points(*truth, 2_000_000, 0), surface_points(*mesh, 2_000_000, 1)
    mesh_to_truth = cKDTree(dense_truth).query(dense_mesh[:100_000])[0]
    truth_to_mesh = cKDTree(dense_mesh).query(dense_truth[:100_000])[0]
    return {"mesh_to_truth": float(mesh_to_truth.mean()), "truth_to_mesh": float(truth_to_mesh.mean()),
            "mesh_to_truth_p90": float(np.quantile(mesh_to_truth, 0.9)), "truth_to_mesh_p90": float(np.quantile(truth_to_mesh, 0.9))}


@contextmanager
def blender_log_to_stderr():
    """Blender's render log goes to the process's stdout; keep stdout for the JSON lines."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def render_surfaces(surfaces: list[tuple[str, np.ndarray, np.ndarray]], path: Path, shade_smooth: bool = False) -> None:
    """Grey Cycles renders of each (label, vertices, faces) from two cameras, as one labelled grid;
    faces flat (each facet shows), or shaded smooth as the imported mesh is (its normals vertex by vertex)."""
    import bpy
    from mathutils import Vector

    from ins_blender.rig import look_at
    from ins_core.eval.pictures import image_grid, save_png

    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.render.engine, scene.cycles.samples = "CYCLES", 32
    scene.render.resolution_x = scene.render.resolution_y = 360
    scene.world = bpy.data.worlds.new("grey")
    scene.world.color = (0.3, 0.3, 0.3)
    sun = bpy.data.objects.new("sun", bpy.data.lights.new("sun", "SUN"))
    sun.data.energy, sun.rotation_euler = 3.0, (0.7, 0.2, 0.5)
    camera = bpy.data.objects.new("camera", bpy.data.cameras.new("camera"))
    for obj in (sun, camera):
        scene.collection.objects.link(obj)
    scene.camera = camera
    images, labels = [], []
    with tempfile.TemporaryDirectory() as scratch:
        for label, vertices, faces in surfaces:
            mesh = bpy.data.meshes.new(label)
            mesh.from_pydata(vertices.tolist(), [], faces.tolist())
            if shade_smooth:
                mesh.shade_smooth()
            obj = bpy.data.objects.new(label, mesh)
            scene.collection.objects.link(obj)
            for view, (eye, target) in enumerate((((2.2, -2.2, 1.6), (0, 0, 0.2)), ((0.3, -1.2, 0.35), (0, 0, 0.25)))):
                camera.matrix_world = look_at(Vector(eye), Vector(target))
                scene.render.filepath = str(Path(scratch) / f"{len(images)}.png")
                with blender_log_to_stderr():
                    bpy.ops.render.render(write_still=True)
                images.append(np.asarray(Image.open(scene.render.filepath).convert("RGB")))
                labels.append(f"{label}{', close' if view else ''}")
            bpy.data.objects.remove(obj)
    save_png(path, image_grid(images, labels, columns=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=float, nargs="+", default=[0.0, 0.1])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--grid", type=int, default=192)
    parser.add_argument("--work", type=Path, help="keep the capture and the runs here (default: a temporary folder)")
    parser.add_argument("--pictures", type=Path, help="write the first seed's surfaces, and the true one, shaded grey, to this PNG")
    args = parser.parse_args()
    emit_hardware(torch.device("cpu"))
    with tempfile.TemporaryDirectory() as scratch:
        work = args.work or Path(scratch)
        truth = capture_demo(work / "capture")
        dataset = work / "capture" / "dataset"
        surfaces = []
        for weight in args.weights:
            for seed in args.seeds:
                started = time.perf_counter()
                session = start_fit(FitRequest(data=dataset, kind="nerf", out=work / f"fit_w{weight}_s{seed}", resolution=160,
                                               steps=args.steps, seed=seed, force=True, depth_weight=weight))
                session.run_loop()
                seconds = time.perf_counter() - started
                trained = TrainedRun(session.run, session.config, session.model.eval(), session.data, session.device)
                quality = evaluate_views(trained, session.data.test)
                scalar_fn, _, occupied_fn, _ = field_functions(trained)
                box = marching_cubes.check_aabb(session.model.field.aabb.cpu())
                grid = marching_cubes.sample_grid(scalar_fn, box, args.grid, occupied_fn)
                vertices, faces = cleanup.keep_largest(*marching_cubes.extract_mesh(grid, box, density_level(trained), "density"))
                # Every surface, then what the export keeps: the faces the run's cameras see.
                seen = visibility.seen_vertices(vertices, faces, run_cameras(trained), float(marching_cubes.grid_spacing(box, args.grid).max()))
                for surface, (v, f) in (("every", (vertices, faces)), ("seen", cleanup.compact(vertices, faces[visibility.seen_faces(faces, seen)]))):
                    if seed == args.seeds[0] and surface == "every":
                        surfaces.append((f"depth weight {weight:g}, seed {seed}", v, f))
                    emit("depth_supervision", scene="make demo (Preview capture, 24 x 160 px)", depth_weight=weight, seed=seed,
                         steps=args.steps, fit_s=round(seconds, 1), test_psnr=round(quality["psnr"], 2), surfaces=surface, faces=int(len(f)),
                         **{key: round(value, 4) for key, value in chamfer_seen((v, f), truth).items()})
        if args.pictures:
            render_surfaces(surfaces + [("the scene's true surface", *truth)], args.pictures)


if __name__ == "__main__":
    main()
