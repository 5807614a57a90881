"""What the benchmarks that render `make demo`'s .blend through Blender's own F12 (the `bpy`
module) share: the scene opened with the add-on registered and pointed at a job, F12 into an EXR
(its channels) or a PNG, the image as sRGB bytes, and a labelled picture of the results."""

from __future__ import annotations

import argparse
import time
from contextlib import contextmanager
from pathlib import Path

import bpy
import numpy as np
import torch

from bench.common import emit_hardware
from ins_core.data.exr import read_exr_channels
from ins_core.eval.pictures import image_grid, save_png
from ins_core.render.passes import linear_to_srgb


def add_scene_arguments(parser: argparse.ArgumentParser, size: int = 256) -> None:
    """--blend, --job, --out and --size, as every such benchmark takes them."""
    parser.add_argument("--blend", type=Path, required=True, help="a scene with a camera (make demo's demo.blend)")
    parser.add_argument("--job", type=Path, required=True, help="a finished INS job folder")
    parser.add_argument("--out", type=Path, required=True, help="the picture (PNG)")
    parser.add_argument("--size", type=int, default=size, help="the frame's longer side in pixels")


@contextmanager
def opened_scene(blend: Path, job: Path, size: int, samples: str | None = None):
    """The .blend's scene, rendering `job` with the INS engine (Render Samples `samples` when
    given) at `size` pixels on its longer side; the hardware is emitted first. The add-on is
    registered before the file opens (so its INS settings are read) and unregistered after."""
    import ins_blender

    ins_blender.register()
    try:
        bpy.ops.wm.open_mainfile(filepath=str(blend.resolve()))
        scene = bpy.context.scene
        scene.ins.render_job_dir = str(job.resolve())
        if samples is not None:
            scene.ins.render_samples = samples
        scene.render.engine = "INS"
        scale = size / max(scene.render.resolution_x, scene.render.resolution_y)
        scene.render.resolution_x, scene.render.resolution_y = round(scene.render.resolution_x * scale), round(scene.render.resolution_y * scale)
        scene.render.resolution_percentage = 100
        emit_hardware(torch.device("cpu"))
        yield scene
    finally:
        ins_blender.unregister()


def as_the_field_shows(scene) -> None:
    """The scene set to compare the field's colours with a mesh's: the world behind, the Standard
    view transform (the colours as they are), no dither, the scene's own meshes (and any earlier
    import) hidden from the render."""
    scene.render.film_transparent = False
    scene.view_settings.view_transform = "Standard"
    scene.render.dither_intensity = 0.0
    for obj in scene.objects:
        if obj.type == "MESH":
            obj.hide_render = True


def frame_size(scene) -> str:
    return f"{scene.render.resolution_x}x{scene.render.resolution_y}"


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


def combined_picture(channels: dict[str, np.ndarray]) -> np.ndarray:
    """The Combined pass's colour as sRGB bytes [H, W, 3]."""
    linear = np.stack([channels[f"Combined.{c}"] for c in "RGB"], axis=-1)
    return (linear_to_srgb(torch.from_numpy(linear)).numpy() * 255 + 0.5).astype(np.uint8)


def save_pictures(out: Path, pictures: list[tuple[np.ndarray, str]]) -> None:
    """The (picture, label) pairs side by side in one PNG."""
    save_png(out, image_grid([picture for picture, _ in pictures], [label for _, label in pictures]))
    print(f"wrote {out}")


def psnr(image: np.ndarray, reference: np.ndarray) -> float:
    """PSNR in dB between two sRGB byte pictures."""
    error = np.mean((image.astype(np.float64) / 255 - reference.astype(np.float64) / 255) ** 2)
    return float(10 * np.log10(1.0 / max(error, 1e-12)))


def engine_beside_cycles(scene, folder: Path, cycles_samples: int) -> tuple[np.ndarray, np.ndarray, float]:
    """F12 of the scene with the INS engine, then with Cycles (`cycles_samples`): (the engine's
    picture, Cycles' picture, the engine's seconds)."""
    scene.render.engine = "INS"
    channels, seconds = render_exr(folder / "engine.exr")
    scene.render.engine, scene.cycles.samples = "CYCLES", cycles_samples
    return combined_picture(channels), combined_picture(render_exr(folder / "cycles.exr")[0]), seconds
