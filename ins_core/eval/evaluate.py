"""Evaluate a trained run: PSNR and SSIM on held-out views (or on the fitted image)."""

from __future__ import annotations

import torch

from ..job import write_json_atomic
from ..render.views import render_image_field, render_view
from ..train.loading import TrainedRun
from .metrics import psnr, ssim

WHITE = (1.0, 1.0, 1.0)


def over_background(rgba: torch.Tensor, background=WHITE) -> torch.Tensor:
    """Straight-alpha RGBA laid over a constant colour (white, as NeRF-synthetic scores are reported)."""
    bg = torch.tensor(background, device=rgba.device, dtype=rgba.dtype)
    return rgba[..., :3] * rgba[..., 3:] + bg * (1.0 - rgba[..., 3:])


def evaluate_views(trained: TrainedRun, views, progress=None) -> dict:
    """Per-view and mean PSNR/SSIM of renders over white against the photographs over white."""
    white = torch.ones(3, device=trained.device)
    per_view = []
    for index in range(len(views)):
        render = render_view(trained.model, views.c2w[index], views.intrinsics[index], views.width, views.height, white)
        target = over_background(views.rgba(index))
        per_view.append({"view": views.names[index], "psnr": psnr(render.rgb, target), "ssim": ssim(render.rgb, target)})
        if progress is not None:
            progress(index + 1, len(views))
    return {
        "psnr": sum(v["psnr"] for v in per_view) / len(per_view),
        "ssim": sum(v["ssim"] for v in per_view) / len(per_view),
        "views": per_view,
    }


def _evaluate_stylized_run(trained: TrainedRun) -> dict:
    """Style match, content kept, geometry kept and consistency, against the run's content run."""
    import numpy as np
    from PIL import Image

    from ..losses.vgg import resolve_backbone
    from ..train.loading import open_run
    from .stylization import evaluate_stylized

    config = trained.config
    relative = config.get("signature", {}).get("base_run")
    moved = trained.run.root / relative if relative else None
    content = open_run(moved if moved is not None and (moved / "run.json").is_file() else config["base_run"], str(trained.device))
    views = trained.data.test if trained.data.test is not None and len(trained.data.test) else trained.data.train
    styles = [torch.from_numpy(np.asarray(Image.open(trained.run.root / s["file"]).convert("RGB"), dtype=np.float32) / 255.0).to(trained.device)
              for s in config["styles"]]
    backbone = resolve_backbone(config.get("vgg_weights"), config.get("cache_dir"), False, log=lambda message: None)
    result = evaluate_stylized(trained, content, views, styles, backbone.extractor.to(trained.device))
    return {"split": "test", "backbone": backbone.name, "pretrained_backbone": backbone.pretrained, **result}


def evaluate_run(trained: TrainedRun, progress=None) -> dict:
    """Metrics for a run, also written to RUN/metrics.json."""
    if trained.kind == "stylized":
        metrics = _evaluate_stylized_run(trained)
    elif trained.kind in ("image", "stylized_image"):
        image = trained.data.image
        render = render_image_field(trained.model.field, image.shape[1], image.shape[0])
        metrics = {"split": "image", "psnr": psnr(render, image), "ssim": ssim(render, image)}
    else:
        views = trained.data.test
        split = "test"
        if views is None or len(views) == 0:
            views, split = trained.data.train, "train"
        metrics = {"split": split, **evaluate_views(trained, views, progress)}
    metrics["step"] = trained.config.get("step")
    write_json_atomic(trained.run.metrics_path, metrics)
    return metrics
