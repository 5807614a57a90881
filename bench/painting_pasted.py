"""How far a perfect stylization could lower the Gram distance: the painting itself, pasted.

    python bench/painting_pasted.py --content-run runs/lego100 --style ../shared/data/styles/*.jpg \
        --size 1:256 --size 4:512

For each `--size SCALE:WORKING` the content run's held-out views are rendered at SCALE times their
resolution (the field is continuous) and the loss network looks at them at WORKING pixels on the
longer side, with the painting at that size, as a stylization with `--vgg-size WORKING` would. Prints
JSON lines (hardware first), one per painting and size: the object's Gram distance to the painting
in the content render and with the painting pasted into the same silhouette, and the fall between
them: the most that `eval`'s Gram fall could show at that resolution.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import emit, emit_hardware  # noqa: E402
from ins_core.data.styles import load_style_image  # noqa: E402
from ins_core.eval.stylization import object_distance, painting_pasted_distance  # noqa: E402
from ins_core.losses.style import painting_grams  # noqa: E402
from ins_core.losses.backbone import resolve_backbone  # noqa: E402
from ins_core.render.views import render_view  # noqa: E402
from ins_core.train.loading import open_run  # noqa: E402


def size_pair(text: str) -> tuple[int, int]:
    scale, working = text.split(":")
    return int(scale), int(working)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--content-run", type=Path, required=True)
    parser.add_argument("--style", type=Path, nargs="+", required=True)
    parser.add_argument("--size", type=size_pair, action="append", help="SCALE:WORKING (default 1:256 and 4:512)")
    parser.add_argument("--views", type=int, default=10, help="held-out views used, evenly spread (eval uses 10)")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    content = open_run(args.content_run, args.device)
    emit_hardware(content.device)
    views = content.data.test
    chosen = list(range(0, len(views), max(1, len(views) // args.views)))[: args.views]
    extractor = resolve_backbone(log=lambda m: None).extractor.to(content.device)
    white = torch.ones(3, device=content.device)
    for scale, working in args.size or [(1, 256), (4, 512)]:
        start = time.perf_counter()
        renders = [render_view(content.model, views.c2w[k], views.intrinsics[k] * scale, views.width * scale, views.height * scale, white)
                   for k in chosen]
        seconds = time.perf_counter() - start
        masks = [r.opacity for r in renders]
        for path in args.style:
            style = torch.from_numpy(load_style_image(path, working, enlarge=True).pixels).to(content.device)
            grams = painting_grams(style, extractor)
            before = object_distance([r.rgb for r in renders], masks, grams, extractor, working)
            pasted = painting_pasted_distance(style, masks, extractor, working, grams)
            emit("painting_pasted", style=path.stem, resolution=views.width * scale, working_size=working, views=len(chosen),
                 style_distance_content=round(before, 1), style_distance_painting=round(pasted, 1),
                 gram_fall_painting_pasted=round(1 - pasted / before, 3), render_seconds=round(seconds, 1))


if __name__ == "__main__":
    main()
