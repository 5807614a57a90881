"""The INS render engine's passes for a finished job, through Blender's own F12 (the `bpy` module):
the image over the world, the Depth, Mist and Normal passes, side by side in one picture, and the
frame's time with every pass and with the image alone (JSON lines with the hardware).

    python bench/engine_passes.py --blend runs/demo/demo.blend --job runs/demo/job \\
        --out docs/figures/ins_engine_passes.png

The .blend is `make demo`'s (its camera and world); the job any finished INS job.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import bpy
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import emit, emit_hardware  # noqa: E402
from ins_core.data.exr import read_exr_channels  # noqa: E402
from ins_core.eval.pictures import MASK_GREY, colorize_depth, image_grid, save_png  # noqa: E402
from ins_core.protocol import NO_DEPTH  # noqa: E402
from ins_core.render.passes import linear_to_srgb  # noqa: E402


def render_exr(path: Path) -> tuple[dict[str, np.ndarray], float]:
    """F12 as an uncompressed 32-bit multilayer EXR: its channels by name, and the seconds it took."""
    settings = bpy.context.scene.render.image_settings
    if "media_type" in settings.bl_rna.properties:  # Blender 5: the container first, then the format
        settings.media_type = "MULTI_LAYER_IMAGE"
    settings.file_format, settings.exr_codec, settings.color_depth = "OPEN_EXR_MULTILAYER", "NONE", "32"
    started = time.perf_counter()
    bpy.ops.render.render()
    seconds = time.perf_counter() - started
    bpy.data.images["Render Result"].save_render(str(path))
    layer = bpy.context.view_layer.name + "."
    return {name[len(layer):]: values for name, values in read_exr_channels(path).items() if name.startswith(layer)}, seconds


def pass_pictures(channels: dict[str, np.ndarray], mist: tuple[float, float]) -> list[tuple[np.ndarray, str]]:
    """Each pass as a picture: the image sRGB-encoded, depth in Turbo, mist in grey, normals as
    colours ((n + 1) / 2, the convention of normal maps: +x red, +y green, +z blue) over the
    empty pixels' grey by each pixel's coverage."""
    combined = np.stack([channels[f"Combined.{c}"] for c in "RGB"], axis=-1)
    image = (linear_to_srgb(torch.from_numpy(combined)).numpy() * 255 + 0.5).astype(np.uint8)
    depth = channels["Depth.Z"]
    surface = depth < NO_DEPTH
    near, far = float(depth[surface].min()), float(depth[surface].max())
    normal = np.stack([channels[f"Normal.{c}"] for c in "XYZ"], axis=-1)
    coverage = np.linalg.norm(normal, axis=-1, keepdims=True)  # a partly opaque pixel holds a shorter normal
    colours = (normal / np.maximum(coverage, 1e-6) + 1.0) * 0.5 * 255
    normal_colours = (coverage * colours + (1.0 - coverage) * np.array(MASK_GREY) + 0.5).clip(0, 255).astype(np.uint8)
    mist_grey = (np.repeat(channels["Mist.Z"][..., None], 3, axis=-1) * 255 + 0.5).clip(0, 255).astype(np.uint8)
    return [(image, "Combined (over the world)"),
            (colorize_depth(depth, surface.astype(np.float32)), f"Depth (Z), {near:.2f} to {far:.2f}"),
            (mist_grey, f"Mist, linear from {mist[0]:g} over {mist[1]:g}"),
            (normal_colours, "Normal (world space)")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blend", type=Path, required=True, help="a scene with a camera (make demo's demo.blend)")
    parser.add_argument("--job", type=Path, required=True, help="a finished INS job folder")
    parser.add_argument("--out", type=Path, required=True, help="the picture (PNG)")
    parser.add_argument("--size", type=int, default=256, help="the frame's longer side in pixels")
    parser.add_argument("--mist", type=float, nargs=2, default=(3.0, 2.0), metavar=("START", "DEPTH"))
    parser.add_argument("--samples", default="4", choices=("1", "4", "9", "16"), help="rays a pixel (the engine's Samples)")
    args = parser.parse_args()

    import ins_blender

    ins_blender.register()  # before the file opens, so its INS settings are read
    try:
        bpy.ops.wm.open_mainfile(filepath=str(args.blend.resolve()))
        scene = bpy.context.scene
        scene.ins.render_job_dir = str(args.job.resolve())
        scene.ins.render_samples = args.samples
        scene.render.engine = "INS"
        scale = args.size / max(scene.render.resolution_x, scene.render.resolution_y)
        scene.render.resolution_x, scene.render.resolution_y = round(scene.render.resolution_x * scale), round(scene.render.resolution_y * scale)
        scene.render.resolution_percentage = 100
        scene.render.film_transparent = False
        if scene.world is None:
            scene.world = bpy.data.worlds.new("World")
        scene.world.mist_settings.start, scene.world.mist_settings.depth = args.mist
        scene.world.mist_settings.falloff = "LINEAR"
        layer = bpy.context.view_layer
        emit_hardware(torch.device("cpu"))
        with tempfile.TemporaryDirectory() as folder:
            layer.use_pass_z = layer.use_pass_mist = layer.use_pass_normal = False
            render_exr(Path(folder) / "warm.exr")  # starts the render server and loads the model
            _, image_only = render_exr(Path(folder) / "image.exr")
            layer.use_pass_z = layer.use_pass_mist = layer.use_pass_normal = True
            channels, all_passes = render_exr(Path(folder) / "passes.exr")
        size = f"{scene.render.resolution_x}x{scene.render.resolution_y}"
        emit("ins_engine_frame_s", size=size, samples=int(args.samples), image_only=round(image_only, 3),
             with_depth_mist_normal=round(all_passes, 3))
        pictures = pass_pictures(channels, args.mist)
        save_png(args.out, image_grid([p for p, _ in pictures], [label for _, label in pictures]))
        print(f"wrote {args.out}")
    finally:
        ins_blender.unregister()


if __name__ == "__main__":
    main()
