"""Evaluate a trained run: PSNR and SSIM on held-out views (or on the fitted image)."""

from __future__ import annotations

import torch

from ..json_files import write_json_atomic
from ..render.views import render_image_field, render_view
from ..train.loading import TrainedRun
from .metrics import psnr, ssim
from .pictures import image_grid, save_png, with_caption

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


def content_run_of(trained: TrainedRun) -> TrainedRun:
    """The content run a stylized run was made from (found beside it if both were moved together)."""
    from ..train.loading import open_run

    config = trained.config
    relative = config.get("signature", {}).get("base_run")
    moved = trained.run.root / relative if relative else None
    return open_run(moved if moved is not None and (moved / "run.json").is_file() else config["base_run"], str(trained.device))


def styles_of(trained: TrainedRun) -> list[torch.Tensor]:
    """A stylized run's paintings [H, W, 3] in [0, 1], as it kept them (at their working size)."""
    from ..data.styles import kept_style

    return [torch.from_numpy(kept_style(trained.run.root, s)).to(trained.device) for s in trained.config["styles"]]


def _evaluate_stylized_run(trained: TrainedRun, progress=None) -> dict:
    """Style match, content kept, geometry kept and consistency, against the run's content run."""
    from ..losses.backbone import resolve_backbone
    from .stylization import evaluate_stylized

    config = trained.config
    content = content_run_of(trained)
    views = trained.data.test if trained.data.test is not None and len(trained.data.test) else trained.data.train
    styles = styles_of(trained)
    backbone = resolve_backbone(config.get("vgg_weights"), config.get("cache_dir"), False, log=lambda message: None)
    renders: dict = {}
    working_size = config.get("stylize", {}).get("vgg_size")
    result = evaluate_stylized(trained, content, views, styles, backbone.extractor.to(trained.device), renders_out=renders,
                               working_size=working_size, progress=progress)
    names = [s["name"] for s in config["styles"]]
    save_png(trained.run.root / STYLIZED_PICTURE, stylized_picture(renders, styles, names, result))
    return {"split": "test", "backbone": backbone.name, "pretrained_backbone": backbone.pretrained, "picture": STYLIZED_PICTURE, **result}


STYLIZED_PICTURE = "eval.png"


def _evaluate_stylized_image_run(trained: TrainedRun) -> dict:
    """Each style's match over the object, against the photograph (`stylized_image.py`), and its picture."""
    from ..losses.backbone import resolve_backbone
    from .stylized_image import evaluate_stylized_image

    backbone = resolve_backbone(trained.config.get("vgg_weights"), None, False, log=lambda message: None)
    metrics, picture = evaluate_stylized_image(trained, styles_of(trained), backbone.extractor.to(trained.device))
    save_png(trained.run.root / STYLIZED_PICTURE, picture)
    return {"backbone": backbone.name, "pretrained_backbone": backbone.pretrained, "picture": STYLIZED_PICTURE, **metrics}


def stylized_picture(renders: dict, styles: list[torch.Tensor], names: list[str], result: dict, max_views: int = 4):
    """Content and each style side by side for the first held-out views, the metrics written above."""
    import numpy as np

    count = min(max_views, len(renders["content"]))
    height = renders["content"][0].shape[0]
    thumbs = [_thumbnail(style, height) for style in styles]
    images = [np.ones((height, height, 3)), *thumbs]  # a header row: the paintings above their columns
    labels = ["", *names]
    for k in range(count):
        images += [renders["content"][k].cpu().numpy()] + [per_style[k].clamp(0, 1).cpu().numpy() for per_style in renders["styles"]]
        labels += [f"content, view {k}"] + [f"{name}, view {k}" for name in names]
    grid = image_grid(images, labels, columns=1 + len(styles))
    lines = [f"content: warp RMSE {result['content']['short_range_rmse']:.3f} / {result['content']['long_range_rmse']:.3f}"]
    for m in result["styles"]:
        lines += [f"{names[m['style']]}:",
                  f"  Gram fall {gram_fall(m, 'style_distance_after'):.0%} (painting {gram_fall(m, 'style_distance_painting'):.0%}),",
                  f"  at the view's detail {gram_fall(m, 'style_distance_seen_after'):.0%} (painting {gram_fall(m, 'style_distance_seen_painting'):.0%})",
                  f"  colour distance {m['color_distance_before']:.3g} -> {m['color_distance_after']:.3g}",
                  f"  silhouette IoU {m['silhouette_iou']:.3f}, saturated {100 * m['saturated_fraction']:.1f} %",
                  f"  depth change {m['depth_l1_vs_content']:.2g}, warp RMSE {m['short_range_rmse']:.3f} / {m['long_range_rmse']:.3f}",
                  f"  (content via its colour map {m['palette_reference_short_range_rmse']:.3f} / {m['palette_reference_long_range_rmse']:.3f})"]
    return with_caption(grid, lines)


def gram_fall(metrics: dict, key: str) -> float:
    """How far a Gram distance (`key`, e.g. "style_distance_after" or "style_distance_seen_painting")
    fell from the content render's, measured the same way: 1 - after / before."""
    return 1.0 - metrics[key] / metrics[key.rsplit("_", 1)[0] + "_before"]


def _thumbnail(style: torch.Tensor, height: int):
    import numpy as np
    from PIL import Image

    h, w = style.shape[:2]
    width = max(1, round(w * height / h))
    pixels = (style.clamp(0, 1).cpu().numpy() * 255).astype(np.uint8)
    return np.asarray(Image.fromarray(pixels).resize((width, height), Image.Resampling.LANCZOS))


def evaluate_run(trained: TrainedRun, progress=None) -> dict:
    """Metrics for a run, also written to RUN/metrics.json."""
    if trained.kind == "stylized":
        metrics = _evaluate_stylized_run(trained, progress)
    elif trained.kind == "stylized_image" and all("file" in s for s in trained.config["styles"]):
        metrics = _evaluate_stylized_image_run(trained)
    elif trained.kind in ("image", "stylized_image"):  # stylized images from before they kept their paintings: the fit alone
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
