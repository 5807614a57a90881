"""Points per second of one hash-grid + MLP training step (forward, backward, Adam), eager and
`torch.compile`d, at several batch sizes.

    python bench/hashgrid_speed.py --device cuda [--lookups levels --lookups all] [--blend matmul --blend sum]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import emit, emit_hardware, sync  # noqa: E402
from bench.hashgrid_lookups import BLENDS, LOOKUPS, use_blend, use_lookups  # noqa: E402
from ins_core.fields.nerf import NerfField, NerfFieldConfig  # noqa: E402


def step_fn(field: NerfField, optimizer: torch.optim.Optimizer):
    def step(x: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        raw, h = field.density(x)
        loss = raw.square().mean() + field.color(h, d).square().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss
    return step


def measure(step, n: int, device: torch.device, repeats: int) -> float:
    x = torch.rand(n, 3, device=device) * 2 - 1
    d = torch.nn.functional.normalize(torch.randn(n, 3, device=device), dim=-1)
    for _ in range(3):
        step(x, d)
    sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        step(x, d)
    sync(device)
    return n * repeats / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--sizes", default="65536,262144,1048576")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--lookups", action="append", choices=LOOKUPS,
                        help="auto (the product's choice, the default), level by level and/or all at once; repeat for several")
    parser.add_argument("--blend", action="append", choices=BLENDS,
                        help="auto (the product's choice, the default), matrix products and/or multiply and sum; repeat for several")
    args = parser.parse_args()
    device = torch.device(args.device)
    emit_hardware(device)
    aabb = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])
    modes = ["eager"] + ([] if args.no_compile else ["compiled"])
    ways = [(lookups, blend, mode) for lookups in args.lookups or ["auto"] for blend in args.blend or ["auto"] for mode in modes]
    for lookups, blend, mode in ways:
        use_lookups(lookups)
        use_blend(blend)
        torch.manual_seed(0)
        field = NerfField(aabb, NerfFieldConfig()).to(device)
        optimizer = torch.optim.Adam(field.parameters(), lr=1e-2, eps=1e-15)
        step = step_fn(field, optimizer)
        if mode == "compiled":
            field.position_encoding.forward = torch.compile(field.position_encoding.forward, dynamic=True)
        for n in (int(s) for s in args.sizes.split(",")):
            try:
                rate = measure(step, n, device, args.repeats)
                emit("hashgrid_step", lookups=lookups, blend=blend, mode=mode, points=n, points_per_second=round(rate))
            except Exception as error:  # report and go on: compile support differs between builds
                emit("hashgrid_step", lookups=lookups, blend=blend, mode=mode, points=n, error=f"{type(error).__name__}: {str(error).splitlines()[0][:200]}")


if __name__ == "__main__":
    main()
