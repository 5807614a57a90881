"""Where a stylization's Gram distance lies, layer by layer.

    python bench/gram_layers.py --stylized-run runs/stylize400/starry_night_gpu512 [--views 10] [--map-strength 0 0.5 1]

`eval`'s Gram distance is the sum over relu1_2, relu2_2, relu3_3 and relu4_3 of the raw MSE between
the object's Grams and the painting's, so the layers with the largest Grams weigh most. For each
stylized run (one painting each) this prints a JSON line per layer (hardware first): the distance
of the content render, of the stylized render and of the painting pasted into the same silhouette,
each layer's share of the content's total, and the falls, against the painting at its own detail
("full") and as the views can show it ("view"), at the run's working size, as `eval` measures them.
With --map-strength, the stylized views are rendered with the run's colour map (the colour
transfer and palette match) blended with the identity, to see what that map does to each layer.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import emit, emit_hardware  # noqa: E402
from ins_core.eval.evaluate import content_run_of, styles_of  # noqa: E402
from ins_core.eval.stylization import object_distances, painting_as_seen, painting_pasted_distances  # noqa: E402
from ins_core.losses.style import painting_grams  # noqa: E402
from ins_core.losses.backbone import resolve_backbone  # noqa: E402
from ins_core.render.views import render_view  # noqa: E402
from ins_core.train.loading import open_run  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--stylized-run", type=Path, nargs="+", required=True, help="single-style stylized runs")
    parser.add_argument("--views", type=int, default=10, help="held-out views used, evenly spread (eval uses 10)")
    parser.add_argument("--map-strength", type=float, nargs="+", default=[1.0],
                        help="the run's colour map blended with the identity: 0 the field's own colours, 1 as trained")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    extractor, content_renders = None, {}  # content renders kept per content run, for runs that share one
    for path in args.stylized_run:
        stylized = open_run(path, args.device)
        if extractor is None:
            emit_hardware(stylized.device)
            extractor = resolve_backbone(log=lambda m: None).extractor.to(stylized.device)
            white = torch.ones(3, device=stylized.device)
        content = content_run_of(stylized)
        views = content.data.test
        chosen = list(range(0, len(views), max(1, len(views) // args.views)))[: args.views]

        def draw(model):
            return [render_view(model, views.c2w[k], views.intrinsics[k], views.width, views.height, white) for k in chosen]

        key = str(content.run.root.resolve())
        if key not in content_renders:
            content_renders[key] = draw(content.model)
        before = content_renders[key]
        stylized.model.set_style([1.0])
        masks = [r.opacity for r in before]
        style = styles_of(stylized)[0]
        working = stylized.config.get("stylize", {}).get("vgg_size")
        targets = {"full": painting_grams(style, extractor),
                   "view": painting_grams(painting_as_seen(style, max(views.width, views.height), working), extractor)}
        content_d = {detail: object_distances([r.rgb for r in before], masks, grams, extractor, working) for detail, grams in targets.items()}
        pasted_d = {detail: painting_pasted_distances(style, masks, extractor, working, grams) for detail, grams in targets.items()}
        field = stylized.model.field
        trained_map = field.color_maps.clone()
        for strength in args.map_strength:
            field.color_maps.copy_(strength * trained_map + (1 - strength) * torch.eye(3, 4, device=trained_map.device))
            after = draw(stylized.model)
            for detail, grams in targets.items():
                stylized_d = object_distances([r.rgb for r in after], masks, grams, extractor, working)
                total = sum(content_d[detail].values())
                for layer, content_layer in content_d[detail].items():
                    pasted = pasted_d[detail][layer]
                    emit("gram_layer", run=path.name, map_strength=strength, detail=detail, layer=layer, resolution=views.width,
                         working_size=working, views=len(chosen), share_of_content=round(content_layer / total, 3),
                         content=float(f"{content_layer:.4g}"), stylized=float(f"{stylized_d[layer]:.4g}"), painting_pasted=float(f"{pasted:.4g}"),
                         fall_stylized=round(1 - stylized_d[layer] / content_layer, 3), fall_painting_pasted=round(1 - pasted / content_layer, 3))


if __name__ == "__main__":
    main()
