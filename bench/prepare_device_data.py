"""Make the data `bench/gpu_session.sh` reads on a lent GPU machine, which sees only the repository.

    python bench/prepare_device_data.py --lego ../shared/data/nerf_synthetic_lego --styles ../shared/data/styles

Writes .benchdata/lego400 (the lego views resized to 400x400: a quarter of the bytes to send; the
cameras' field of view does not depend on the size), .benchdata/styles (the paintings) and
.benchdata/starry_night.jpg. `.benchdata` is ignored by git, so the run names it in `carry`,
with `ins_core/assets` (the loss network's weights, also ignored).

With `--demo-job runs/demo/job` (a finished `make demo`), also .benchdata/demo_job: that job's
captured views and painting with a job.json that leaves the step counts to the worker's preset
for its device (the GPU's preview budget there), and .benchdata/wheels: the export's pinned
packages (marching cubes, UV atlas, decimation, glTF) as wheels for the GPU machine's Python,
which has torch but not these and cannot reach a registry.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
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


EXPORT_PACKAGES = ("PyMCubes", "xatlas", "fast-simplification", "trimesh")


def demo_job_copy(job: Path, target: Path) -> None:
    """The views and painting of a finished demo job, with only the views' size kept of its
    overrides, so the worker takes its preset's step counts for the device it runs on."""
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for folder in ("dataset", "styles"):
        shutil.copytree(job / folder, target / folder)
    spec = json.loads((job / "job.json").read_text())
    spec["overrides"] = {k: v for k, v in spec.get("overrides", {}).items() if k == "train_resolution"}
    (target / "job.json").write_text(json.dumps(spec, indent=2))


def export_wheels(target: Path, python_version: str) -> None:
    """Download the export's packages, at the versions pyproject.toml pins, as wheels for Linux x86-64."""
    pins = dict(re.findall(r'"([A-Za-z0-9_.-]+)==([^"]+)"', (ROOT / "pyproject.toml").read_text()))
    target.mkdir(parents=True, exist_ok=True)
    platforms = [arg for tag in ("manylinux2014_x86_64", "manylinux_2_17_x86_64", "manylinux_2_28_x86_64") for arg in ("--platform", tag)]
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                    "--python-version", python_version, *platforms, "-d", str(target),
                    *(f"{name}=={pins[name]}" for name in EXPORT_PACKAGES)], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lego", type=Path, required=True, help="the NeRF-synthetic lego folder (800x800)")
    parser.add_argument("--styles", type=Path, required=True, help="a folder of paintings (*.jpg)")
    parser.add_argument("--size", type=int, default=400)
    parser.add_argument("--out", type=Path, default=ROOT / ".benchdata")
    parser.add_argument("--demo-job", type=Path, help="a finished demo job folder (runs/demo/job)")
    parser.add_argument("--device-python", default="3.12", help="the GPU machine's Python version, for the wheels")
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
    if args.demo_job:
        demo_job_copy(args.demo_job, args.out / "demo_job")
        export_wheels(args.out / "wheels", args.device_python)
        print(f"{args.out / 'demo_job'}, {args.out / 'wheels'}")


if __name__ == "__main__":
    main()
