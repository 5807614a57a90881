"""Make the data `bench/gpu_session.sh` reads on a lent GPU machine, which sees only the repository.

    python bench/prepare_device_data.py --lego ../shared/data/nerf_synthetic_lego --styles ../shared/data/styles

Writes .benchdata/lego400 (the lego views resized to 400x400: a quarter of the bytes to send; the
cameras' field of view does not depend on the size), .benchdata/styles (the paintings) and
.benchdata/starry_night.jpg. `.benchdata` is ignored by git, so the run names it in `carry`,
with `ins_core/assets` (the loss network's weights, also ignored).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def resized_dataset(source: Path, target: Path, size: int) -> int:
    """Copy a NeRF-synthetic folder with every image resized to size x size; returns the image count."""
    count = 0
    for path in source.rglob("*"):
        out = target / path.relative_to(source)
        if path.is_dir():
            continue
        out.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix.lower() == ".png":
            Image.open(path).resize((size, size), Image.LANCZOS).save(out)
            count += 1
        else:
            shutil.copy2(path, out)
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lego", type=Path, required=True, help="the NeRF-synthetic lego folder (800x800)")
    parser.add_argument("--styles", type=Path, required=True, help="a folder of paintings (*.jpg)")
    parser.add_argument("--size", type=int, default=400)
    parser.add_argument("--out", type=Path, default=ROOT / ".benchdata")
    args = parser.parse_args()
    lego = args.out / f"lego{args.size}"
    if lego.exists():
        shutil.rmtree(lego)
    print(f"{lego}: {resized_dataset(args.lego, lego, args.size)} images")
    styles = args.out / "styles"
    styles.mkdir(parents=True, exist_ok=True)
    for painting in sorted(args.styles.glob("*.jpg")):
        shutil.copy2(painting, styles / painting.name)
        print(styles / painting.name)
    if (styles / "starry_night.jpg").is_file():
        shutil.copy2(styles / "starry_night.jpg", args.out / "starry_night.jpg")


if __name__ == "__main__":
    main()
