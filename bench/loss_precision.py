"""The loss network in float32 against bfloat16: one VGG pass with its gradient, and whole stylization steps.

    python bench/loss_precision.py --content-run runs/lego100 --style ../shared/data/styles/the_scream.jpg

Prints JSON lines (hardware first): `vgg_pass` (a 256 px view through relu4_3 and back, per
precision, median of 5) and `stylize_step` (a view-mode step on the run's first training views with
each precision, interleaved round by round so that a machine whose speed drifts treats both alike).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import emit, emit_hardware, sync  # noqa: E402
from ins_core.device import resolve_device  # noqa: E402
from ins_core.losses.style import CONTENT_LAYER, GRAM_LAYERS, NNFM_LAYERS, gram_matrix  # noqa: E402
from ins_core.losses.vgg import loss_network_dtype, resolve_backbone  # noqa: E402
from ins_core.train.stylize import StylizeRequest, start_stylize  # noqa: E402

PRECISIONS = ("float32", "bfloat16")


def vgg_pass_seconds(extractor, dtype: torch.dtype, size: int, device: torch.device, repeats: int = 5) -> float:
    layers = list(dict.fromkeys([*GRAM_LAYERS, *NNFM_LAYERS, CONTENT_LAYER]))
    image = torch.rand(1, 3, size, size, device=device, generator=torch.Generator(device).manual_seed(0))
    times = []
    for _ in range(repeats + 1):  # the first pass builds the bfloat16 copy
        x = image.clone().requires_grad_(True)
        sync(device)
        start = time.perf_counter()
        features = extractor(x, layers, dtype)
        sum(gram_matrix(f).pow(2).sum() for f in features.values()).backward()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--content-run", type=Path, required=True)
    parser.add_argument("--style", type=Path, required=True)
    parser.add_argument("--views", type=int, default=4, help="training views per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("runs/bench_loss_precision"))
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = resolve_device(args.device)
    emit_hardware(device)
    emit("auto_precision", resolves_to=str(loss_network_dtype("auto", device)).removeprefix("torch."))

    extractor = resolve_backbone(log=lambda message: None).extractor.to(device)
    for precision in PRECISIONS:
        seconds = vgg_pass_seconds(extractor, loss_network_dtype(precision, device), 256, device)
        emit("vgg_pass", precision=precision, size=256, seconds_median=round(seconds, 4))

    objectives = {}
    for precision in PRECISIONS:
        session = start_stylize(StylizeRequest(run=args.content_run, styles=[args.style], out=args.out / precision, device=str(device),
                                               settings={"steps": 1, "loss_precision": precision}, force=True), log=lambda message: None)
        objective = session.objective
        for view in objective.view_indices[: args.views]:  # surface samples and photo features kept before timing
            objective.loss(0, view=view)
        objectives[precision] = objective
    times: dict[str, list[float]] = {precision: [] for precision in PRECISIONS}
    for _ in range(args.rounds):
        for precision, objective in objectives.items():
            sync(device)
            start = time.perf_counter()
            for view in objective.view_indices[: args.views]:
                objective.loss(0, view=view)
            sync(device)
            times[precision].append(round((time.perf_counter() - start) / args.views, 4))
    for precision, values in times.items():
        emit("stylize_step", precision=precision, content_run=str(args.content_run), style=args.style.name, seconds_per_step=values,
             seconds_median=statistics.median(values))


if __name__ == "__main__":
    main()
