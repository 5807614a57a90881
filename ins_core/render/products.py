"""Pictures of a trained run: held-out views, depth maps, a turntable, the loss curve."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..data.cameras import look_at
from ..eval.pictures import colorize_depth, image_grid, plot_curves, save_png, write_video
from ..train.loading import TrainedRun
from .frame import render_frame
from .views import render_image_field

Progress = Callable[[int, int], None] | None


def _to_uint8(image: torch.Tensor) -> np.ndarray:
    return (image.clamp(0, 1).cpu().numpy() * 255).round().astype(np.uint8)


def camera_pictures(trained: TrainedRun, c2w: torch.Tensor, intrinsics: torch.Tensor, width: int, height: int,
                    samples: int = 1, background: torch.Tensor | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(the image, uint8 RGBA, or RGB laid over the linear colour `background`; its depth map in
    colour) of one camera, with `samples` rays a pixel averaged as the INS engine's frames are."""
    frame = render_frame(trained.model, c2w, intrinsics, width, height, samples=samples, background=background,
                         no_depth=math.nan)
    image = frame.rgba if background is None else frame.rgba[..., :3]
    return _to_uint8(image), colorize_depth(frame.depth.cpu().numpy())


def render_test_views(trained: TrainedRun, out_dir: Path, progress: Progress = None, samples: int = 1) -> list[Path]:
    """Each held-out view as RGBA PNG, its depth map, and a side-by-side with the photograph."""
    views = trained.data.test if trained.data.test is not None and len(trained.data.test) else trained.data.train
    written = []
    for index in range(len(views)):
        rgba, depth = camera_pictures(trained, views.c2w[index], views.intrinsics[index], views.width, views.height, samples)
        name = views.names[index]
        save_png(out_dir / f"{name}.png", rgba)
        save_png(out_dir / f"{name}_depth.png", depth)
        photo = views.images[index].cpu().numpy()
        save_png(out_dir / f"{name}_compare.png", image_grid([_over_white(photo), _over_white(rgba), depth], ["photograph", "render", "depth"]))
        written.append(out_dir / f"{name}.png")
        if progress is not None:
            progress(index + 1, len(views))
    return written


def _over_white(rgba: np.ndarray) -> np.ndarray:
    alpha = rgba[..., 3:4].astype(np.float32) / 255.0
    return (rgba[..., :3] * alpha + 255.0 * (1.0 - alpha)).round().astype(np.uint8)


def turntable_cameras(trained: TrainedRun, n_frames: int) -> list[torch.Tensor]:
    """An orbit around the scene box at the training cameras' typical distance and elevation."""
    views = trained.data.train
    aabb = trained.model.field.aabb.cpu()
    centre = (aabb[0] + aabb[1]) / 2
    offsets = views.c2w[:, :3, 3].cpu() - centre
    radius = float(offsets.norm(dim=-1).median())
    elevation = float(torch.asin((offsets[:, 2] / offsets.norm(dim=-1)).clamp(-1, 1)).median())
    cameras = []
    for frame in range(n_frames):
        azimuth = 2 * math.pi * frame / n_frames
        eye = centre + radius * torch.tensor([math.cos(elevation) * math.cos(azimuth), math.cos(elevation) * math.sin(azimuth), math.sin(elevation)])
        cameras.append(look_at(eye, centre).to(trained.device))
    return cameras


def morph_weights(n_styles: int, n_frames: int) -> list[torch.Tensor]:
    """Style weights going linearly from the first style to the last over the frames."""
    weights = []
    for frame in range(n_frames):
        t = frame / max(n_frames - 1, 1)
        w = torch.zeros(n_styles)
        w[0], w[-1] = 1 - t, t
        if n_styles == 1:
            w[0] = 1.0
        weights.append(w)
    return weights


def render_turntable(trained: TrainedRun, path: Path, n_frames: int = 48, fps: int = 24, with_depth: bool = True, progress: Progress = None,
                     style_weights: list[torch.Tensor] | None = None, width: int | None = None, samples: int = 1) -> Path:
    """A video orbiting the scene (over white); with depth, each frame shows the depth map beside it.

    For stylized runs `style_weights` gives each frame's style mix (a morph between styles).
    `width`: frame width in pixels (default: the training views'); the field is continuous.
    `samples`: rays a pixel (a square number), for smooth edges.
    """
    views = trained.data.train
    scale = (width or views.width) / views.width
    frame_width, frame_height = max(1, round(views.width * scale)), max(1, round(views.height * scale))
    white = torch.ones(3, device=trained.device)
    frames = []
    for index, c2w in enumerate(turntable_cameras(trained, n_frames)):
        if style_weights is not None:
            trained.model.set_style(style_weights[index])
        frame, depth = camera_pictures(trained, c2w, views.intrinsics[0] * scale, frame_width, frame_height, samples, white)
        frames.append(np.concatenate([frame, depth], axis=1) if with_depth else frame)
        if progress is not None:
            progress(index + 1, n_frames)
    write_video(path, frames, fps)
    return path


def render_image_run(trained: TrainedRun, out_dir: Path, width: int | None) -> Path:
    """An image field at any resolution (its own by default)."""
    height_src, width_src = trained.data.image.shape[:2]
    width = width or width_src
    height = max(1, round(height_src * width / width_src))
    path = out_dir / f"image_{width}x{height}.png"
    save_png(path, _to_uint8(render_image_field(trained.model.field, width, height)))
    return path


def plot_history(history: list[dict], path: Path) -> Path | None:
    """Loss and PSNR against training step."""
    if not history:
        return None
    plot_curves(path, {"training PSNR (dB)": [(h["step"], h["psnr"]) for h in history if math.isfinite(h["psnr"])]}, "Training", "step", "PSNR (dB)")
    plot_curves(path.with_name(path.stem + "_loss.png"), {"loss": [(h["step"], h["loss"]) for h in history if math.isfinite(h["loss"]) and h["loss"] > 0]}, "Training loss", "step", "loss", log_y=True)
    return path
