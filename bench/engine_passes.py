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
from pathlib import Path

import bpy
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.blender_frames import add_scene_arguments, combined_picture, frame_size, opened_scene, render_exr, save_pictures  # noqa: E402
from bench.common import emit  # noqa: E402
from ins_core.eval.pictures import MASK_GREY, colorize_depth  # noqa: E402
from ins_core.protocol import NO_DEPTH  # noqa: E402


def pass_pictures(channels: dict[str, np.ndarray], mist: tuple[float, float]) -> list[tuple[np.ndarray, str]]:
    """Each pass as a picture: the image sRGB-encoded, depth in Turbo, mist in grey, normals as
    colours ((n + 1) / 2, the convention of normal maps: +x red, +y green, +z blue) over the
    empty pixels' grey by each pixel's coverage."""
    image = combined_picture(channels)
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
    add_scene_arguments(parser)
    parser.add_argument("--mist", type=float, nargs=2, default=(3.0, 2.0), metavar=("START", "DEPTH"))
    parser.add_argument("--samples", default="4", choices=("1", "4", "9", "16"), help="rays a pixel (the engine's Samples)")
    args = parser.parse_args()

    with opened_scene(args.blend, args.job, args.size, args.samples) as scene:
        scene.render.film_transparent = False
        if scene.world is None:
            scene.world = bpy.data.worlds.new("World")
        scene.world.mist_settings.start, scene.world.mist_settings.depth = args.mist
        scene.world.mist_settings.falloff = "LINEAR"
        layer = bpy.context.view_layer
        with tempfile.TemporaryDirectory() as folder:
            layer.use_pass_z = layer.use_pass_mist = layer.use_pass_normal = False
            render_exr(Path(folder) / "warm.exr")  # starts the render server and loads the model
            _, image_only = render_exr(Path(folder) / "image.exr")
            layer.use_pass_z = layer.use_pass_mist = layer.use_pass_normal = True
            channels, all_passes = render_exr(Path(folder) / "passes.exr")
        emit("ins_engine_frame_s", size=frame_size(scene), samples=int(args.samples), image_only=round(image_only, 3),
             with_depth_mist_normal=round(all_passes, 3))
        save_pictures(args.out, pass_pictures(channels, args.mist))


if __name__ == "__main__":
    main()
