"""A stylization step's loss network on the object's window against the whole view, on finished stylized runs.

    python bench/step_window.py --stylized-run runs/demo/job/checkpoints/stylized

Prints JSON lines (hardware first). Per run and training view looked at (`--views`, evenly
spread): `window` (the window at the loss network's size against the view's), and per way
(whole view, window) the seconds of the image terms with their gradient with respect to the
render (the median of `--repeats`), the terms; then `agreement`: the cosine between the two
gradients, their norms' ratio and the largest difference at a pixel against the largest gradient,
the object's pixels (the photograph's opacity over 0.5) and the rest apart, and over every pixel
with the gradient weighed by the render's opacity (what reaches the colour heads: a pixel's
samples' weights sum to it). Then `step`: the seconds of a whole training step (render, loss
network, back-propagation, Adam) each way in turn, `--rounds` times `--steps` steps, every view's
samples and photograph features taken before. The runs on disk are left as they were.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import emit, resumed_stylizations, sync  # noqa: E402
from ins_core.losses.object_window import MARGIN, on_object_window  # noqa: E402

WAYS = {"whole": None, "window": MARGIN}


def _agreement(whole: torch.Tensor, window: torch.Tensor, where: torch.Tensor) -> dict:
    a, b = whole[where].flatten().double(), window[where].flatten().double()
    if not a.numel():
        return {}
    return {"cosine": round(float(torch.nn.functional.cosine_similarity(a, b, dim=0)), 6),
            "norm_ratio": round(float(b.norm() / a.norm().clamp_min(1e-30)), 6),
            "largest_difference": round(float((a - b).abs().max() / a.abs().max().clamp_min(1e-30)), 6)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--stylized-run", type=Path, nargs="+", required=True, help="finished stylized runs (their first style)")
    parser.add_argument("--views", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20, help="training steps timed each way a round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    for path, session in resumed_stylizations(args.stylized_run, args.device):
        objective, field = session.objective, session.model.field
        s = objective.settings
        objective._use_style(0)
        chosen = objective.view_indices[:: max(1, len(objective.view_indices) // args.views)][: args.views]
        for view in chosen:
            rgba, photo = objective.view_photo(view, 0)
            samples = objective.view_samples(view)
            with torch.no_grad():
                render = samples.composite(field.surface_color(samples), objective.white).view(*objective.render_size, 3)
                opacity = samples.opacity.view(*objective.render_size, 1)
            gradients, on_object = {}, rgba[..., 3] > 0.5
            for way, margin in WAYS.items():
                objective.object_margin = margin
                objective.content_cache.clear()
                seconds = []
                for _ in range(args.repeats + 1):  # the first fills the photograph's features
                    image = render.clone().requires_grad_()
                    sync(objective.device)
                    start = time.perf_counter()
                    total, terms = objective.image_terms(image, photo, rgba[..., 3], 0, s.vgg_size, (view, 0))
                    gradient, = torch.autograd.grad(total, image)
                    sync(objective.device)
                    seconds.append(time.perf_counter() - start)
                gradients[way] = gradient
                if way == "window":  # the opacity at the network's size (the view's longer side at vgg_size), as the step cuts it
                    mask = F.interpolate(rgba[..., 3][None, None], scale_factor=s.vgg_size / max(objective.render_size), mode="bilinear")[0, 0]
                    emit("window", run=str(path), view=view, window=list(on_object_window(mask, mask)[1].shape), view_size=list(mask.shape))
                emit("terms", run=str(path), view=view, way=way, seconds=round(statistics.median(seconds[1:]), 3),
                     total=round(float(total.detach()), 6), **{k: round(float(v), 6) for k, v in terms.items()})
            emit("agreement", run=str(path), view=view, object=_agreement(gradients["whole"], gradients["window"], on_object),
                 rest=_agreement(gradients["whole"], gradients["window"], ~on_object),
                 weighed_by_opacity=_agreement(*(gradients[way] * opacity for way in WAYS), torch.ones_like(on_object)))
        for round_index in range(args.rounds):
            for way, margin in WAYS.items():
                objective.object_margin = margin
                objective.content_cache.clear()
                for view in objective.view_indices:
                    objective.view_samples(view)
                    for style in range(objective.n_styles):
                        rgba, photo = objective.view_photo(view, style)
                        objective.photo_features(photo, s.vgg_size, (view, style), rgba[..., 3])
                sync(objective.device)
                start = time.perf_counter()
                for _ in range(args.steps):
                    session.trainer.step()
                sync(objective.device)
                emit("step", run=str(path), way=way, round=round_index, step_s=round((time.perf_counter() - start) / args.steps, 3))


if __name__ == "__main__":
    main()
