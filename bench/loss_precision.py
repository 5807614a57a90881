"""The loss network in float32 against bfloat16: one VGG pass with its gradient, and whole stylization steps.

    python bench/loss_precision.py --content-run runs/lego100 --style ../shared/data/styles/the_scream.jpg

    python bench/loss_precision.py ... --image ../shared/data/nerf_synthetic_lego/train/r_0.png

Prints JSON lines (hardware first): `vgg_pass` (a 256 px view through relu4_3 and back, per
precision, median of 5), `nnfm_term` (ARF's nearest-neighbour term of such a view against a 256 px
painting, the neighbours searched in float32 or in bfloat16; the loss network in bfloat16 where
the hardware has it) and `stylize_step` (a view-mode step on the run's first training views with
each precision, interleaved round by round so that a machine whose speed drifts treats both alike);
with --image, `stylize_image_step` (a `stylize-image` step, loss and gradient, on that photograph).
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
from ins_core.losses.style import CONTENT_LAYER, GRAM_LAYERS, NNFM_LAYERS, gram_matrix, nnfm_loss  # noqa: E402
from ins_core.losses.backbone import resolve_backbone  # noqa: E402
from ins_core.losses.loss_precision import loss_network_dtype  # noqa: E402
from ins_core.train.stylize import StylizeRequest, start_stylize  # noqa: E402
from ins_core.train.stylize_image import start_image_stylize  # noqa: E402

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
    parser.add_argument("--image", type=Path, help="also time stylize-image steps on this photograph")
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

    auto = loss_network_dtype("auto", device)
    generator = torch.Generator(device).manual_seed(1)
    view, painting = (torch.rand(1, 3, 256, 256, device=device, generator=generator) for _ in range(2))
    painting_features = extractor(painting, NNFM_LAYERS, auto)
    # The term and its gradient down to the features (the loss network's own pass is `vgg_pass`).
    view_features = {layer: f.detach().requires_grad_(True) for layer, f in extractor(view, NNFM_LAYERS, auto).items()}

    def nnfm_step(search: torch.dtype) -> None:
        nnfm_loss(view_features, painting_features, search_dtype=search).backward()

    searches = {str(search).removeprefix("torch."): (lambda search=search: nnfm_step(search)) for search in (torch.float32, torch.bfloat16)}
    for search, values in interleaved_seconds(searches, 2 * args.rounds * args.views, device).items():
        emit("nnfm_term", search=search, loss_network=str(auto).removeprefix("torch."), size=256, seconds_median=round(statistics.median(values[1:]), 4))

    objectives = {}
    for precision in PRECISIONS:
        session = start_stylize(StylizeRequest(run=args.content_run, styles=[args.style], out=args.out / precision, device=str(device),
                                               settings={"steps": 1, "loss_precision": precision}, force=True), log=lambda message: None)
        objective = session.objective
        for view in objective.view_indices[: args.views]:  # surface samples and photo features kept before timing
            objective.loss(0, view=view)
        objectives[precision] = objective
    times = interleaved_seconds({precision: (lambda o=objective: [o.loss(0, view=view) for view in o.view_indices[: args.views]])
                                 for precision, objective in objectives.items()}, args.rounds, device)
    for precision, values in times.items():
        per_step = [round(value / args.views, 4) for value in values]
        emit("stylize_step", precision=precision, content_run=str(args.content_run), style=args.style.name, seconds_per_step=per_step,
             seconds_median=statistics.median(per_step))

    if args.image:
        image_steps = {}
        for precision in PRECISIONS:
            fit, make_session = start_image_stylize(args.image, [args.style], args.out / f"image_{precision}", str(device), steps=1,
                                                    fit_steps=200, log=lambda message: None, loss_precision=precision)
            fit.run_loop()
            objective = make_session().objective
            image_steps[precision] = lambda o=objective: o.loss(0).total.backward()
            image_steps[precision]()  # the bfloat16 copy is made on the first call
        for precision, values in interleaved_seconds(image_steps, args.rounds * args.views, device).items():
            emit("stylize_image_step", precision=precision, image=args.image.name, style=args.style.name,
                 seconds_per_step=[round(v, 4) for v in values], seconds_median=round(statistics.median(values), 4))


def interleaved_seconds(work: dict, rounds: int, device: torch.device) -> dict[str, list[float]]:
    """Seconds of each named piece of work, run in turn round by round (a drifting machine treats all alike)."""
    times: dict[str, list[float]] = {name: [] for name in work}
    for _ in range(rounds):
        for name, run in work.items():
            sync(device)
            start = time.perf_counter()
            run()
            sync(device)
            times[name].append(time.perf_counter() - start)
    return times


if __name__ == "__main__":
    main()
