#!/usr/bin/env python3
"""Build the "INS for Blender" extension zips with Blender's own extension tooling.

Usage (Python 3.11+ with `packaging`, from the repository root):

    python build_addon.py                                   # full zips for the manifest's platforms + light zip
    python build_addon.py --platform linux-x64 --torch-wheel /opt/wheels   # full linux-x64 zip, local CPU torch
    python build_addon.py --platform linux-x64 --torch-index-url https://download.pytorch.org/whl/cpu
    python build_addon.py --light --offline                 # only the light zip, no network at all
    python build_addon.py --validate dist/ins_stylize-0.1.0-linux_x64.zip   # check existing zips

Options: --out DIR (default dist/), --wheels-cache DIR (default .whl/, where downloaded wheels are
kept and looked up), --offline (never run pip), --python 3.11 / 3.13 (repeatable; default both),
--no-numpy, --blender PATH (use `blender --command extension build/validate` instead of the bpy
module's copy of the same tool).

Blender's tooling does the packaging (`bl_pkg/cli/blender_ext.py`, the code behind
`blender --command extension`; the `bpy` module ships it too and it runs in any Python 3.11+):
  * `build` reads a source folder (here a staged copy of ins_blender/ with the manifest and the
    wheels it lists), applies the manifest's [build] paths_exclude_pattern, writes the zip (wheels
    stored, the rest deflated) and, with --split-platforms, one zip per platform holding only that
    platform's wheels (the zip's manifest gets a [build.generated] table naming them);
  * `validate` checks the manifest (keys, id, version, tagline, tags, permissions, wheels) and the zip.
Blender itself, when it installs a zip, unpacks only the wheels for its own platform and Python
version (3.11 in Blender 4.2 - 5.0, 3.13 in 5.1+) into the extensions' shared site-packages.

What this script adds (what those tools do not do):
  * the ins_core wheel (pure Python, the VGG-16 loss weights inside), made from ins_core/;
  * which wheels to bundle: the worker's pins (WORKER_PINS, some per Python version, checked against
    pyproject.toml for the Python versions it allows), found in the cache or fetched with `pip
    download` for each platform and Python version; the `packaging` library's wheel tags decide
    which file fits; torch must be the CPU build (PyPI's Linux torch is the CUDA one, so linux-x64
    takes --torch-wheel or --torch-index-url);
  * the Blender range: a full zip holds a complete set of worker wheels for every Python version it
    can (a version with any wheel missing is left out, and the report says which), and the staged
    manifest's blender_version_min / blender_version_max are set from the versions it holds
    (PYTHON_BLENDERS); the light zip (ins_core only) runs in every Blender from 4.2;
  * checks after the build: every hard dependency of the bundled wheels present for each Python
    version and platform, torch not a GPU build, the ins_core wheel complete.

Layout inside every zip (the zip root is the extension's package, `bl_ext.<repo>.ins_stylize`):
blender_manifest.toml, the files of ins_blender/, wheels/ins_core-<v>+<hash>-py3-none-any.whl, and in
full zips wheels/<dependency>.whl for each Python version. The add-on imports ins_core from the
extensions' site-packages, and the worker runs `PYTHON -m ins_core.worker JOB` with that folder on
its path (see ins_blender/worker_launch.py), so Blender's own Python finds the bundled torch there.

Variants:
  * full, one zip per platform, <id>-<version>-<platform>.zip: the worker runs in Blender's own
    Python with the bundled wheels. Platforms: linux-x64, windows-x64, macos-arm64; macos-x64 cannot
    be built (PyTorch publishes no macOS x86-64 wheels after 2.2).
  * light, one zip for every platform, <id>-<version>-light.zip: only the ins_core wheel, for users
    who set the add-on's Worker Python to a Python with torch (`pip install
    <extension dir>/wheels/ins_core-*.whl` there gets the pinned dependencies).

Per Python version (Pin.pythons): for 3.11 numpy 1.26.4 (scipy 1.17.1 needs >= 1.26.4; Blender
4.2/4.3 ship 1.24.3) and PyMCubes 0.1.6; for 3.13, where those publish no wheels, numpy 2.3.5 and
mvpymcubes 0.1.6 (PyMCubes 0.1.6 rebuilt, same `mcubes` module), except on macos-arm64, where
neither has a cp313 wheel: there scikit-image 0.26.0 (and imageio, tifffile, lazy-loader, packaging)
stands in, ins_core's marching cubes falling back to it (SUBSTITUTES; the build prints why). Blender
installs a zip's pure wheels for every Python, and its split build puts them into every platform's
zip, so platforms whose pure wheels differ are built apart. The add-on itself never imports numpy.
setuptools (a torch dependency only for torch.utils.cpp_extension) is not bundled.
What is still left out (the build says so): linux-x64 Python 3.13 (no CPU torch on PyPI: pass a
cp313 +cpu wheel or --torch-index-url).
"""

from __future__ import annotations

import argparse
import base64
import csv
import hashlib
import importlib.util
import io
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

try:
    from packaging.requirements import Requirement
    from packaging.specifiers import SpecifierSet
    from packaging.tags import Tag, compatible_tags, cpython_tags, mac_platforms
    from packaging.utils import canonicalize_name, parse_wheel_filename
except ImportError:  # pragma: no cover - the message is the point
    sys.exit("build_addon.py needs the `packaging` library: pip install -e '.[build]' (or packaging==26.4).")

ROOT = Path(__file__).resolve().parent
SOURCE_MANIFEST = ROOT / "blender_manifest.toml"
ADDON_DIR = ROOT / "ins_blender"
CORE_DIR = ROOT / "ins_core"
VGG_WEIGHTS = "assets/vgg16_imagenet_caffe_fp16.pth"  # written by `python -m ins_core weights`
PYPROJECT = ROOT / "pyproject.toml"
DEFAULT_OUT = ROOT / "dist"
DEFAULT_CACHE = ROOT / ".whl"
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"

# The Python each Blender release embeds, as the Blender range [min, max) for the manifest
# (blender_version_max is the first version NOT supported; None: no upper bound).
PYTHON_BLENDERS: dict[tuple[int, int], tuple[str, str | None]] = {
    (3, 11): ("4.2.0", "5.1.0"),  # Blender 4.2 LTS - 5.0
    (3, 13): ("5.1.0", None),  # Blender 5.1+
}
LIGHT_BLENDER_MIN = "4.2.0"  # extensions (and register_cli_command) exist from 4.2

# --- What the worker needs -------------------------------------------------------------------------


PY311, PY313 = (3, 11), (3, 13)


@dataclass(frozen=True)
class Pin:
    name: str
    version: str
    why: str
    platforms: frozenset[str] | None = None  # None: every platform
    pythons: frozenset[tuple[int, int]] | None = None  # None: every Python version


MACOS_313 = dict(platforms=frozenset({"macos-arm64"}), pythons=frozenset({PY313}))

# Exact versions: the set tested together in the project's environment (pyproject.toml pins the
# top-level ones for Python 3.11; the build checks that both agree). Python 3.13 swaps the pins
# whose versions publish no cp313 wheels; on macOS arm64 marching cubes comes from scikit-image.
WORKER_PINS = (
    Pin("torch", "2.13.0", "the worker's tensor library (CPU build)"),
    Pin("filelock", "4.3.1", "torch dependency"),
    Pin("typing-extensions", "4.16.0", "torch dependency"),
    Pin("sympy", "1.14.0", "torch dependency"),
    Pin("mpmath", "1.3.0", "sympy dependency (sympy 1.14 needs mpmath < 1.4)"),
    Pin("networkx", "3.6.1", "torch dependency"),
    Pin("jinja2", "3.1.6", "torch dependency"),
    Pin("markupsafe", "3.0.4", "jinja2 dependency"),
    Pin("fsspec", "2026.9.0", "torch dependency"),
    Pin("numpy", "1.26.4", "arrays everywhere; Blender 4.2/4.3 ship 1.24.3", pythons=frozenset({PY311})),
    # numpy 1.26 has no cp313 wheels; 2.3 is the line of the VFX Reference Platform 2026 (Blender 5.1+)
    # and within scipy 1.17.1's numpy<2.7,>=1.26.4 (torch 2.13 declares no numpy requirement).
    Pin("numpy", "2.3.5", "arrays everywhere (Python 3.13: numpy 1.26 has no cp313 wheels)", pythons=frozenset({PY313})),
    Pin("scipy", "1.17.1", "PyMCubes and scikit-image import scipy; so does ins_core's mesh evaluation"),
    Pin("pillow", "11.3.0", "image I/O"),
    Pin("tqdm", "4.67.1", "CLI progress bars"),
    Pin("colorama", "0.4.6", "tqdm dependency on Windows", platforms=frozenset({"windows-x64"})),
    Pin("pymcubes", "0.1.6", "marching cubes (imports as mcubes)", pythons=frozenset({PY311})),
    # PyMCubes 0.1.6 has no cp313 wheels. mvpymcubes 0.1.6 is the same package rebuilt for 3.13
    # (same mcubes/*.py, same meshes; needs numpy and scipy), but not for macOS arm64. PyPI's `mcubes`
    # is another library (no mcubes.marching_cubes), so it is no substitute.
    Pin("mvpymcubes", "0.1.6", "marching cubes (PyMCubes 0.1.6 rebuilt for Python 3.13, imports as mcubes)",
        platforms=frozenset({"linux-x64", "windows-x64"}), pythons=frozenset({PY313})),
    # macOS arm64, Python 3.13: ins_core's marching cubes falls back to scikit-image's (same vertices
    # and winding, tested against PyMCubes), which has cp313 macOS arm64 wheels. Its other
    # dependencies (numpy, scipy, networkx, pillow) are bundled anyway.
    Pin("scikit-image", "0.26.0", "marching cubes where no mcubes wheel exists (skimage.measure.marching_cubes)",
        **MACOS_313),
    Pin("imageio", "2.38.1", "scikit-image dependency (skimage.io; never used by the worker)", **MACOS_313),
    Pin("tifffile", "2026.3.3", "scikit-image dependency (TIFF I/O; never used by the worker)", **MACOS_313),
    Pin("lazy-loader", "0.6", "scikit-image dependency (its lazy submodule imports)", **MACOS_313),
    Pin("packaging", "26.4", "scikit-image and lazy-loader dependency (the version pyproject.toml's extras pin)",
        **MACOS_313),
    Pin("xatlas", "0.0.11", "UV unwrapping"),
    Pin("fast-simplification", "0.2.0", "quadric decimation of exported meshes to their face budget"),
    Pin("trimesh", "5.2.0", "mesh utilities (pinned in pyproject.toml)"),
    Pin("imageio-ffmpeg", "0.6.0", "MP4 output (ships an ffmpeg binary)"),
)
NOT_BUNDLED = {"setuptools": "only torch.utils.cpp_extension imports it; Blender's Python has its own"}
# Why a platform and Python version bundle a set unlike the others': printed with its plan.
SUBSTITUTES: dict[tuple[str, tuple[int, int]], str] = {
    ("macos-arm64", PY313): (
        "marching cubes from scikit-image 0.26.0 (ins_core's fallback), since no wheel importing as mcubes "
        "exists for CPython 3.13 on macOS arm64: PyMCubes 0.1.6 and mvpymcubes 0.1.6 publish none, and "
        "PyPI's `mcubes` is an unrelated library without marching_cubes"),
}


def worker_pins(platform: str, python: tuple[int, int], *, with_numpy: bool = True) -> list[Pin]:
    """The pins bundled in a full zip for `platform` and CPython `python`."""
    return [p for p in WORKER_PINS if (p.platforms is None or platform in p.platforms)
            and (p.pythons is None or python in p.pythons) and (with_numpy or p.name != "numpy")]


@dataclass(frozen=True)
class PlatformSpec:
    tags: tuple[str, ...]  # wheel platform tags, best first (pip's --platform and packaging's tags)
    markers: dict
    torch_from_pypi: bool  # PyPI's torch for this platform is a CPU (or CPU+MPS) build
    torch_available: bool = True


# Blender 4.2+ on Linux requires glibc 2.28 (VFX platform CY2024): manylinux_2_28 and older.
LINUX_TAGS = tuple(f"manylinux_2_{m}_x86_64" for m in range(28, 16, -1)) + ("manylinux2014_x86_64",)
PLATFORMS: dict[str, PlatformSpec] = {
    "linux-x64": PlatformSpec(
        LINUX_TAGS,
        {"sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix"},
        torch_from_pypi=False,
    ),
    "windows-x64": PlatformSpec(
        ("win_amd64",),
        {"sys_platform": "win32", "platform_system": "Windows", "platform_machine": "AMD64", "os_name": "nt"},
        torch_from_pypi=True,
    ),
    "macos-arm64": PlatformSpec(
        tuple(mac_platforms((14, 0), "arm64")),  # macOS 14+ (torch 2.13's arm64 wheels), older targets, universal2
        {"sys_platform": "darwin", "platform_system": "Darwin", "platform_machine": "arm64", "os_name": "posix"},
        torch_from_pypi=True,
    ),
    "macos-x64": PlatformSpec(
        tuple(mac_platforms((10, 15), "x86_64")),
        {"sys_platform": "darwin", "platform_system": "Darwin", "platform_machine": "x86_64", "os_name": "posix"},
        torch_from_pypi=True,
        torch_available=False,
    ),
}
GPU_LIB = re.compile(r"(?:^|/)(?:lib)?(?:torch_cuda|c10_cuda|torch_hip|c10_hip)[^/]*\.(?:so|dll|dylib)")


class BuildError(Exception):
    """A problem that stops one variant (or the whole build) with a clear message."""


def human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def py_label(python: tuple[int, int]) -> str:
    return f"{python[0]}.{python[1]}"


# --- Wheel tags (the `packaging` library) -------------------------------------------------------------


def supported_tags(platform: str | None, python: tuple[int, int]) -> list[Tag]:
    """Tags a wheel may carry to load in CPython `python` on `platform`, best first
    (None: pure wheels only, for the light zip that runs everywhere)."""
    if platform is None:
        return list(compatible_tags(python, f"cp{python[0]}{python[1]}", platforms=[]))
    plats = list(PLATFORMS[platform].tags)
    return list(cpython_tags(python, platforms=plats)) + list(compatible_tags(python, f"cp{python[0]}{python[1]}", plats))


def tag_rank(filename: str, platform: str | None, python: tuple[int, int]) -> int | None:
    """Position of the wheel's best tag among the supported ones (lower is better); None: it does not fit."""
    _name, _version, _build, tags = parse_wheel_filename(filename)
    ranks = [i for i, tag in enumerate(supported_tags(platform, python)) if tag in tags]
    return min(ranks) if ranks else None


def is_gpu_torch(filename: str) -> bool:
    local = parse_wheel_filename(filename)[1].local or ""
    return bool(re.match(r"(cu\d+|rocm)", local))


def torch_wheel_problem(filename: str, platform: str, python: tuple[int, int]) -> str | None:
    """Why this torch wheel cannot go into the full zip for `platform` and `python`, or None."""
    version = parse_wheel_filename(filename)[1]
    if is_gpu_torch(filename):
        return f"{platform}: {filename} is a GPU build of torch; the extension bundles the CPU build"
    if platform == "linux-x64" and version.local != "cpu":
        return (f"{platform}: {filename} is not the CPU build (torch-{version.public}+cpu); PyPI's Linux torch "
                f"needs CUDA wheels that are not bundled. Use --torch-wheel or --torch-index-url {TORCH_CPU_INDEX}")
    if tag_rank(filename, platform, python) is None:
        return f"{platform}: {filename} is not built for {platform} and CPython {py_label(python)}"
    return None


# --- Finding and downloading wheels -------------------------------------------------------------------


@dataclass
class WheelPlan:
    platform: str
    python: tuple[int, int]
    wheels: list[Path] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def scan(paths: list[Path]) -> list[Path]:
    """Wheel files: the given files, and the *.whl in the given folders."""
    out = []
    for path in paths:
        if path.is_file() and path.name.endswith(".whl"):
            out.append(path)
        elif path.is_dir():
            out += sorted(path.glob("*.whl"))
    return out


def find_wheel(candidates: list[Path], pin: Pin, platform: str, python: tuple[int, int]) -> Path | None:
    """The best file for `pin` on `platform` / `python` (torch: its CPU build), or None."""
    found = []
    for path in candidates:
        try:
            name, version, _build, _tags = parse_wheel_filename(path.name)
        except ValueError:
            continue
        if name != canonicalize_name(pin.name):
            continue
        if str(version) != pin.version and not (pin.name == "torch" and version.public == pin.version):
            continue
        rank = tag_rank(path.name, platform, python)
        if rank is not None:
            found.append((pin.name == "torch" and version.local != "cpu", rank, path.name, path))
    return min(found)[-1] if found else None


def pip_download(reqs: list[str], platform: str, python: tuple[int, int], dest: Path,
                 index_url: str | None = None) -> subprocess.CompletedProcess:
    py = f"{python[0]}{python[1]}"
    cmd = [sys.executable, "-m", "pip", "download", "--only-binary=:all:", "--no-deps",
           "--python-version", py_label(python), "--implementation", "cp",
           "--abi", f"cp{py}", "--abi", "abi3", "--abi", "none", "--progress-bar", "off", "-d", str(dest)]
    for tag in PLATFORMS[platform].tags:
        cmd += ["--platform", tag]
    if index_url:
        cmd += ["--index-url", index_url]
    print(f"  $ pip download {' '.join(reqs)}{f' --index-url {index_url}' if index_url else ''}"
          f"  [{platform}, Python {py_label(python)}]", flush=True)
    return subprocess.run(cmd + reqs, capture_output=True, text=True)


def _pin(name: str) -> Pin:
    return next(p for p in WORKER_PINS if p.name == name)


def _torch_note(platform: str, python: tuple[int, int]) -> str:
    cp = f"cp{python[0]}{python[1]}"
    return (f"{platform}, Python {py_label(python)}: no CPU torch; PyPI's torch is the CUDA build here; pass "
            f"--torch-wheel PATH (a torch-{_pin('torch').version}+cpu {cp} wheel) or --torch-index-url {TORCH_CPU_INDEX}")


def _last_lines(text: str, n: int = 3) -> str:
    return " | ".join([line for line in (text or "").strip().splitlines() if line.strip()][-n:])


def plan_full(platform: str, python: tuple[int, int], *, cache: Path, torch_paths: list[Path],
              torch_index_url: str | None, offline: bool, with_numpy: bool) -> WheelPlan:
    """Resolve (and download into the cache when allowed) the worker's wheels for one platform
    and one Python version; `missing` names what could not be found."""
    spec = PLATFORMS[platform]
    if not spec.torch_available:
        raise BuildError(f"{platform}: PyTorch publishes no torch {_pin('torch').version} wheels for macOS x86-64 "
                         "(the last were 2.2.x); use the light zip on Intel Macs with a Python of your own")
    plan = WheelPlan(platform, python)
    if substitute := SUBSTITUTES.get((platform, python)):
        plan.notes.append(substitute)
    pins = worker_pins(platform, python, with_numpy=with_numpy)
    cache.mkdir(parents=True, exist_ok=True)

    def resolve(pin: Pin) -> Path | None:
        return find_wheel(scan(torch_paths if pin.name == "torch" else []) + scan([cache]), pin, platform, python)

    missing = [p for p in pins if resolve(p) is None]
    if missing and not offline:
        others = [f"{p.name}=={p.version}" for p in missing if p.name != "torch"]
        if others and pip_download(others, platform, python, cache).returncode != 0:
            # pip stops at the first requirement it cannot meet: ask for each, to name all that are missing.
            for req in others:
                if (res := pip_download([req], platform, python, cache)).returncode != 0:
                    plan.notes.append(f"pip download {req} failed: " + _last_lines(res.stderr, 1))
        if any(p.name == "torch" for p in missing):
            if torch_index_url or spec.torch_from_pypi:
                res = pip_download([f"torch=={_pin('torch').version}"], platform, python, cache, torch_index_url)
                if res.returncode != 0:
                    plan.notes.append("pip download torch failed: " + _last_lines(res.stderr))
    for pin in pins:
        path = resolve(pin)
        if path is None:
            plan.missing.append(f"{pin.name}=={pin.version}")
            # Say why, where it is known (offline too): these gaps are not a passing network problem.
            if pin.name == "torch" and not spec.torch_from_pypi and not torch_index_url:
                plan.notes.append(_torch_note(platform, python))
        elif pin.name == "torch" and (problem := torch_wheel_problem(path.name, platform, python)):
            raise BuildError(problem)
        else:
            plan.wheels.append(path)
    return plan


# --- Dependencies of the bundled wheels ---------------------------------------------------------------


def wheel_metadata(path: Path) -> str:
    with zipfile.ZipFile(path) as zf:
        names = [n for n in zf.namelist() if re.fullmatch(r"[^/]+\.dist-info/METADATA", n)]
        if len(names) != 1:
            raise BuildError(f"{path.name}: expected one .dist-info/METADATA, found {len(names)}")
        return zf.read(names[0]).decode("utf-8", "replace")


def wheel_requirements(path: Path) -> list[Requirement]:
    header = wheel_metadata(path).split("\n\n", 1)[0]
    return [Requirement(line.split(":", 1)[1].strip()) for line in header.splitlines()
            if line.startswith("Requires-Dist:")]


def unmet_requirements(wheels: list[Path], platform: str, python: tuple[int, int]) -> list[str]:
    """Hard dependencies of the wheels (those for `platform` / `python`) that no bundled wheel meets."""
    env = {"python_version": py_label(python), "python_full_version": f"{py_label(python)}.0",
           "implementation_name": "cpython", "platform_python_implementation": "CPython", "extra": "",
           **PLATFORMS[platform].markers}
    mine = [w for w in wheels if tag_rank(w.name, platform, python) is not None]
    present = {parse_wheel_filename(w.name)[0]: parse_wheel_filename(w.name)[1] for w in mine}
    problems = []
    # Blender installs one wheel per distribution (the newest), so two that fit one Python would drop one.
    for name in sorted(present):
        if len(same := sorted(w.name for w in mine if parse_wheel_filename(w.name)[0] == name)) > 1:
            problems.append(f"{', '.join(same)} all fit Python {py_label(python)} on {platform}; Blender installs only one")
    for wheel in mine:
        name, version = parse_wheel_filename(wheel.name)[:2]
        if name == "ins-core":
            continue  # its pins are for an external Python (pip install); the zip's set is checked here
        for req in wheel_requirements(wheel):
            key = canonicalize_name(req.name)
            if (req.marker is not None and not req.marker.evaluate(env)) or key in NOT_BUNDLED:
                continue
            if key not in present:
                problems.append(f"{name} {version} needs '{req}', which is not bundled for Python {py_label(python)}")
            elif req.specifier and not req.specifier.contains(present[key], prereleases=True):
                problems.append(f"{name} {version} needs '{req}', bundled is {present[key]}")
    return problems


# --- The ins_core wheel ---------------------------------------------------------------------------------


def read_pyproject() -> dict:
    with open(PYPROJECT, "rb") as fh:
        return tomllib.load(fh)


def core_version() -> str:
    m = re.search(r"^__version__\s*=\s*[\"']([^\"']+)[\"']", (CORE_DIR / "__init__.py").read_text(encoding="utf-8"), re.M)
    if not m:
        raise BuildError("ins_core/__init__.py has no __version__ = '...'")
    return m.group(1)


def check_pins_against_pyproject(project: dict) -> list[str]:
    """The worker pins must agree with pyproject.toml's exact pins, for each Python version that
    pyproject's requires-python allows (today 3.11 only) and its markers select."""
    errors = []
    requires = SpecifierSet(project.get("project", {}).get("requires-python", ""))
    for python in [p for p in PYTHON_BLENDERS if requires.contains(f"{py_label(p)}.0")]:
        pins: dict[str, str] = {}
        for pin in WORKER_PINS:
            if pin.pythons is None or python in pin.pythons:
                pins[canonicalize_name(pin.name)] = pin.version  # platforms: same version everywhere
        env = {"python_version": py_label(python), "python_full_version": f"{py_label(python)}.0"}
        for dep in project.get("project", {}).get("dependencies", []):
            req = Requirement(dep)
            exact = [s.version for s in req.specifier if s.operator == "=="]
            if not exact or (req.marker is not None and not req.marker.evaluate(env)):
                continue
            name, where = canonicalize_name(req.name), f"for Python {py_label(python)}"
            if name not in pins:
                errors.append(f"pyproject.toml pins {dep!r} but build_addon.py does not bundle it {where} "
                              "(add it to WORKER_PINS)")
            elif pins[name] != exact[0]:
                errors.append(f"pyproject.toml pins {dep!r} but build_addon.py bundles {pins[name]} {where} "
                              "(make them agree)")
    return errors


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def source_date(paths: list[Path]) -> float:
    """SOURCE_DATE_EPOCH, else the newest source file's time: same sources, same zip bytes."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    return max(float(epoch) if epoch else max(p.stat().st_mtime for p in paths), 315532800.0)  # >= 1980


def build_core_wheel(dest_dir: Path, stamp: float) -> Path:
    """ins_core-<version>+<content hash>-py3-none-any.whl (pure Python, loss weights included) in dest_dir.
    ins_core is a package of the repository's one distribution, so it gets a wheel of its own here."""
    if not (CORE_DIR / VGG_WEIGHTS).is_file():
        raise BuildError(f"ins_core/{VGG_WEIGHTS} is missing; run `python -m ins_core weights` (the set-up does) first")
    project = read_pyproject().get("project", {})
    files = sorted(p for p in CORE_DIR.rglob("*") if p.is_file() and "__pycache__" not in p.parts
                   and not p.name.startswith(".") and p.suffix not in (".pyc", ".pyo"))
    # Blender installs an extension's wheels by file name and skips one it already has, so
    # reinstalling an extension of the same version would keep the old ins_core: a local version
    # label from the files' contents gives every change its own wheel name.
    contents = hashlib.sha256()
    for path in files:
        contents.update(path.relative_to(ROOT).as_posix().encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    version = f"{core_version()}+{contents.hexdigest()[:12]}"
    dist_info = f"ins_core-{version}.dist-info"
    meta = ["Metadata-Version: 2.1", "Name: ins_core", f"Version: {version}",
            "Summary: INS core (implicit neural stylization), as bundled with the INS for Blender extension",
            "License: GPL-3.0-or-later"]
    meta += [f"Requires-Dist: {d}" for d in project.get("dependencies", [])]
    extra = {f"{dist_info}/METADATA": ("\n".join(meta) + "\n").encode(),
             f"{dist_info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: build_addon.py\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
             f"{dist_info}/top_level.txt": b"ins_core\n"}
    out = dest_dir / f"ins_core-{version}-py3-none-any.whl"
    record = io.StringIO()
    writer = csv.writer(record, lineterminator="\n")
    date_time = max(time.gmtime(stamp)[:6], (1980, 1, 1, 0, 0, 0))

    def put(zf: zipfile.ZipFile, name: str, data: bytes) -> None:
        info = zipfile.ZipInfo(name, date_time=date_time)
        info.external_attr, info.compress_type = 0o644 << 16, zipfile.ZIP_DEFLATED
        zf.writestr(info, data, compresslevel=9)
        writer.writerow([name, _record_hash(data), len(data)])

    with zipfile.ZipFile(out, "w") as zf:
        for path in files:
            put(zf, path.relative_to(ROOT).as_posix(), path.read_bytes())
        for name, data in extra.items():
            put(zf, name, data)
        writer.writerow([f"{dist_info}/RECORD", "", ""])
        info = zipfile.ZipInfo(f"{dist_info}/RECORD", date_time=date_time)
        info.external_attr, info.compress_type = 0o644 << 16, zipfile.ZIP_DEFLATED
        zf.writestr(info, record.getvalue().encode(), compresslevel=9)
    os.utime(out, (stamp, stamp))
    return out


# --- The manifest of a zip --------------------------------------------------------------------------------


def blender_range(pythons: list[tuple[int, int]] | None) -> tuple[str, str | None]:
    """(blender_version_min, blender_version_max) for zips holding wheels for `pythons` (None: pure)."""
    if not pythons:
        return LIGHT_BLENDER_MIN, None
    ranges = [PYTHON_BLENDERS[p] for p in sorted(pythons)]
    for (_, end), (start, _) in zip(ranges, ranges[1:]):
        if end != start:
            raise BuildError(f"Python versions {', '.join(map(py_label, pythons))} do not cover one Blender range")
    return ranges[0][0], ranges[-1][1]


def _toml_value(value) -> str:
    if isinstance(value, list):
        return "[\n" + "".join(f'  "{v}",\n' for v in value) + "]" if value else "[]"
    return f'"{value}"'


def render_manifest(source_text: str, **keys) -> str:
    """The source manifest with top-level `keys` set (a value of None removes the key); comments,
    tables and every other key stay as they are."""
    lines = source_text.splitlines(keepends=True)
    first_table = next((i for i, line in enumerate(lines) if re.match(r"\s*\[", line)), len(lines))
    head, tail = "".join(lines[:first_table]), "".join(lines[first_table:])
    for key in keys:
        head = re.sub(rf"(?ms)^{key}\s*=\s*(\[[^\]]*\]|\"[^\"\n]*\")[^\n]*\n", "", head)
    generated = "".join(f"{k} = {_toml_value(v)}\n" for k, v in keys.items() if v is not None)
    text = head.rstrip("\n") + "\n\n# --- set by build_addon.py ---\n" + generated + "\n" + tail
    parsed, source = tomllib.loads(text), tomllib.loads(source_text)
    for key in set(source) | set(parsed):
        expected = keys[key] if key in keys else source.get(key)
        if parsed.get(key) != expected:
            raise BuildError(f"internal error: the staged manifest has {key} = {parsed.get(key)!r}, not {expected!r}")
    return text


# --- Blender's extension tooling ------------------------------------------------------------------------


@dataclass(frozen=True)
class BlenderTool:
    prefix: tuple[str, ...]  # + "build" / "validate" + arguments
    valid_tags: tuple[str, ...]  # the arguments that give it Blender's tag list
    description: str

    def run(self, command: str, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
        return subprocess.run([*self.prefix, command, *args], capture_output=True, text=True, timeout=timeout)


def find_blender_tool(blender: str | None) -> BlenderTool:
    """`blender --command extension`, or the same tool from the installed bpy module (found
    without importing bpy: blender_ext.py is a plain script)."""
    if blender:
        return BlenderTool((blender, "--factory-startup", "--command", "extension"), (), f"{blender} --command extension")
    try:
        spec = importlib.util.find_spec("bpy")
    except (ImportError, ValueError):
        spec = None
    base = Path(list(spec.submodule_search_locations)[0]) if spec and spec.submodule_search_locations else None
    clis = sorted(base.glob("*/scripts/addons_core/bl_pkg/cli/blender_ext.py")) if base else []
    if not clis:
        raise BuildError("Blender's extension tool was not found: install the bpy module (pip install -e '.[test]') "
                         "or pass --blender /path/to/blender.")
    cli = clis[-1]
    tags = cli.parents[3] / "modules" / "_bpy_internal" / "extensions" / "tags.py"
    return BlenderTool((sys.executable, str(cli)), ("--valid-tags", str(tags)) if tags.is_file() else (),
                       f"blender_ext.py from bpy {cli.relative_to(base).parts[0]}")


def blender_build(tool: BlenderTool, source: Path, out_dir: Path, *, split: bool, out_file: Path | None = None) -> list[Path]:
    """Blender's `extension build` of a staged source folder; the zips it wrote."""
    out_dir.mkdir(parents=True, exist_ok=True)
    target = ["--output-filepath", str(out_file)] if out_file else ["--output-dir", str(out_dir)]
    res = tool.run("build", "--source-dir", str(source), *target, *(["--split-platforms"] if split else []),
                   *tool.valid_tags)
    written = re.findall(r'created: "([^"]+)"', res.stdout)
    if res.returncode != 0 or not written:
        raise BuildError(f"Blender's extension build failed: {_last_lines(res.stdout + res.stderr, 6)}")
    return [Path(p) for p in written]


def stage(folder: Path, manifest_text: str, wheels: list[Path]) -> Path:
    """ins_blender/ as Blender's builder reads it: the add-on files (its [build] excludes apply),
    the manifest that lists the wheels, and the wheels (hard links where possible)."""
    shutil.copytree(ADDON_DIR, folder, ignore=shutil.ignore_patterns("__pycache__", "*.py[co]"))
    manifest = folder / "blender_manifest.toml"
    manifest.write_text(manifest_text, encoding="utf-8")
    stamp = (ADDON_DIR / "__init__.py").stat().st_mtime
    os.utime(manifest, (stamp, stamp))
    (folder / "wheels").mkdir()
    for wheel in wheels:
        target = folder / "wheels" / wheel.name
        try:
            os.link(wheel, target)
        except OSError:
            shutil.copy2(wheel, target)
    return folder


# --- Checks Blender's validator does not make --------------------------------------------------------------


@dataclass
class ZipReport:
    path: Path
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    manifest: dict = field(default_factory=dict)
    files: list[tuple[str, int]] = field(default_factory=list)  # (name, uncompressed size)


def zip_manifest(zf: zipfile.ZipFile) -> dict:
    """The manifest with Blender's [build.generated] platforms/wheels applied (split-platform zips)."""
    data = tomllib.loads(zf.read("blender_manifest.toml").decode("utf-8"))
    data.update(data.get("build", {}).get("generated", {}))
    return data


def check_zip(path: Path, tool: BlenderTool) -> ZipReport:
    """Blender's validator, then what it does not check: the listed wheels are in the zip, the
    ins_core wheel is complete, torch is a CPU build, every dependency is there per Python version."""
    rep = ZipReport(path)
    res = tool.run("validate", str(path), *tool.valid_tags)
    if res.returncode != 0:
        rep.errors.append(f"Blender's validator rejected it: {_last_lines(res.stdout + res.stderr, 6)}")
    else:
        rep.notes.append(f"{tool.description} validate: {_last_lines(res.stdout, 1)}")
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile as exc:
        rep.errors.append(f"not a zip file: {exc}")
        return rep
    with zf, tempfile.TemporaryDirectory() as tmp:
        rep.files = [(i.filename, i.file_size) for i in zf.infolist() if not i.is_dir()]
        try:
            rep.manifest = zip_manifest(zf)
        except (KeyError, tomllib.TOMLDecodeError) as exc:
            rep.errors.append(f"no readable blender_manifest.toml at the zip root ({exc})")
            return rep
        wheels = []
        for entry in rep.manifest.get("wheels", []):
            try:
                wheels.append(Path(zf.extract(entry[2:], tmp)))
            except KeyError:
                rep.errors.append(f"{entry} is listed in the manifest but not in the zip")
        core = [w for w in wheels if w.name.startswith("ins_core-")]
        if len(core) != 1:
            rep.errors.append(f"expected one ins_core wheel, found {len(core)}")
        else:
            with zipfile.ZipFile(core[0]) as cz:
                for needed in ("ins_core/__init__.py", "ins_core/worker.py", f"ins_core/{VGG_WEIGHTS}"):
                    if needed not in cz.namelist():
                        rep.errors.append(f"the ins_core wheel has no {needed}")
        for wheel in wheels:
            if parse_wheel_filename(wheel.name)[0] == "torch":
                with zipfile.ZipFile(wheel) as tz:
                    if gpu := next((n for n in tz.namelist() if GPU_LIB.search(n)), None):
                        rep.errors.append(f"{wheel.name} is a GPU build of torch (has {gpu}); bundle the CPU build")
        for platform in rep.manifest.get("platforms", []):
            for python in PYTHON_BLENDERS:
                if any(tag_rank(w.name, platform, python) is not None and parse_wheel_filename(w.name)[0] == "torch"
                       for w in wheels):
                    rep.errors += unmet_requirements(wheels, platform, python)
    return rep


def print_report(rep: ZipReport, notes: list[str]) -> None:
    m = rep.manifest
    print(f"\n== {rep.path}  ({human(rep.path.stat().st_size)}, {len(rep.files)} files)")
    print(f"   id={m.get('id')} version={m.get('version')} platforms={m.get('platforms', 'all')} "
          f"blender={m.get('blender_version_min')}..{m.get('blender_version_max', '')}")
    wheels = sorted(((n, s) for n, s in rep.files if n.startswith("wheels/")), key=lambda x: -x[1])
    print(f"   add-on files: {len(rep.files) - len(wheels)}; wheels ({len(wheels)}, {human(sum(s for _, s in wheels))}):")
    for name, size in wheels:
        print(f"     {human(size):>10}  {name[len('wheels/'):]}")
    for note in notes + rep.notes:
        print(f"   note: {note}")
    for error in rep.errors:
        print(f"   ERROR: {error}")
    print("   valid" if not rep.errors else f"   INVALID ({len(rep.errors)} errors)")


# --- Main ---------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--platform", action="append", choices=sorted(PLATFORMS),
                    help="full zip(s) to build (repeatable); default: the manifest's platforms")
    ap.add_argument("--light", action="store_true", help="build only the light zip (no torch, every platform)")
    ap.add_argument("--python", action="append", choices=[py_label(p) for p in PYTHON_BLENDERS],
                    help="Python versions to bundle wheels for (repeatable; default: all)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default: dist/)")
    ap.add_argument("--wheels-cache", type=Path, default=DEFAULT_CACHE, help="downloaded wheels (default: .whl/)")
    ap.add_argument("--offline", action="store_true", help="never run pip; use the cache and --torch-wheel only")
    ap.add_argument("--torch-wheel", type=Path, action="append", default=[],
                    help="a torch wheel file, or a folder holding torch wheels (repeatable)")
    ap.add_argument("--torch-index-url", help=f"download torch from this index (e.g. {TORCH_CPU_INDEX})")
    ap.add_argument("--no-numpy", action="store_true", help="do not bundle numpy (the worker uses Blender's)")
    ap.add_argument("--blender", help="a Blender binary: use its `--command extension build/validate`")
    ap.add_argument("--validate", type=Path, nargs="+", metavar="ZIP", help="only check existing zips")
    args = ap.parse_args(argv)
    args.pythons = sorted(tuple(int(x) for x in p.split(".")) for p in (args.python or map(py_label, PYTHON_BLENDERS)))
    return args


def full_groups(args, platforms: list[str]) -> tuple[dict[tuple, dict[str, list[Path]]], list[tuple[str, str]]]:
    """{covered Python versions: {platform: wheels}} and (platform, why not built) for the rest."""
    groups: dict[tuple, dict[str, list[Path]]] = {}
    skipped = []
    for platform in platforms:
        wheels: list[Path] = []
        covered = []
        for python in args.pythons:
            try:
                plan = plan_full(platform, python, cache=args.wheels_cache, torch_paths=args.torch_wheel,
                                 torch_index_url=args.torch_index_url, offline=args.offline, with_numpy=not args.no_numpy)
            except BuildError as exc:
                skipped.append((platform, str(exc)))
                break
            if plan.missing:
                print(f"  {platform}, Python {py_label(python)}: left out, wheels not found"
                      f"{' (offline)' if args.offline else ''}: {', '.join(plan.missing)}"
                      + "".join(f"; {n}" for n in plan.notes))
                continue
            for note in plan.notes:
                print(f"  {platform}, Python {py_label(python)}: {note}")
            covered.append(python)
            wheels += [w for w in plan.wheels if w not in wheels]
        else:
            if covered:
                groups.setdefault(tuple(covered), {})[platform] = wheels
            else:
                skipped.append((platform, "no Python version has all its wheels"))
    return groups, skipped


def is_pure(wheel: Path) -> bool:
    return all(tag.platform == "any" for tag in parse_wheel_filename(wheel.name)[3])


def split_by_pure_wheels(per_platform: dict[str, list[Path]]) -> list[dict[str, list[Path]]]:
    """The platforms of one group that can share one split build. Blender's builder puts every pure
    wheel into every platform's zip, so platforms whose pure wheels differ (colorama on Windows,
    scikit-image's dependencies on macOS) are built apart: each zip holds its own pure wheels only."""
    by_pure: dict[frozenset[str], dict[str, list[Path]]] = {}
    for platform, wheels in per_platform.items():
        by_pure.setdefault(frozenset(w.name for w in wheels if is_pure(w)), {})[platform] = wheels
    return list(by_pure.values())


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    try:
        tool = find_blender_tool(args.blender)
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.validate:
        reports = [check_zip(z, tool) for z in args.validate]
        for rep in reports:
            print_report(rep, [])
        return 1 if any(r.errors for r in reports) else 0

    source_text = SOURCE_MANIFEST.read_text(encoding="utf-8")
    source = tomllib.loads(source_text)
    problems = check_pins_against_pyproject(read_pyproject())
    if "wheels" in source:
        problems.append("the source manifest must not list wheels: build_addon.py fills them per zip")
    if problems:
        for problem in problems:
            print(f"error: {problem}", file=sys.stderr)
        return 1
    base = f"{source['id']}-{source['version']}"
    print(f"INS for Blender extension build: {source['id']} {source['version']} with {tool.description}")
    results: list[tuple[str, Path | None, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        stamp = source_date([p for p in ADDON_DIR.rglob("*.py")] + [SOURCE_MANIFEST] + list(CORE_DIR.rglob("*.py")))
        core = build_core_wheel(tmp, stamp)
        print(f"  built {core.name} ({human(core.stat().st_size)})")
        jobs: list[tuple[str, dict, list[Path], bool, Path | None]] = []  # (label, keys, wheels, split, out_file)
        if not args.platform:
            lo, hi = blender_range(None)
            jobs.append(("light", dict(platforms=None, blender_version_min=lo, blender_version_max=hi, wheels=[f"./wheels/{core.name}"]),
                         [core], False, args.out / f"{base}-light.zip"))
        if not args.light:
            groups, skipped = full_groups(args, args.platform or list(source.get("platforms", [])))
            results += [(f"full {p}", None, f"not built ({why})") for p, why in skipped]
            builds = [(pythons, apart) for pythons, group in groups.items() for apart in split_by_pure_wheels(group)]
            for pythons, per_platform in builds:
                lo, hi = blender_range(list(pythons))
                wheels = [core] + sorted({w for ws in per_platform.values() for w in ws}, key=lambda w: w.name)
                label = f"full {', '.join(per_platform)} (Python {', '.join(map(py_label, pythons))})"
                jobs.append((label, dict(platforms=list(per_platform), blender_version_min=lo, blender_version_max=hi,
                                         wheels=[f"./wheels/{w.name}" for w in wheels]), wheels, True, None))
        for i, (label, keys, wheels, split, out_file) in enumerate(jobs):
            t0 = time.perf_counter()
            try:
                folder = stage(tmp / f"stage{i}", render_manifest(source_text, **keys), wheels)
                zips = blender_build(tool, folder, args.out, split=split, out_file=out_file)
            except BuildError as exc:
                results.append((label, None, f"not built ({exc})"))
                continue
            for path in zips:
                rep = check_zip(path, tool)
                print_report(rep, [f"built in {time.perf_counter() - t0:.1f} s"])
                results.append((label, path, "INVALID" if rep.errors else "ok"))
    print(f"\nSummary ({time.perf_counter() - started:.1f} s):")
    for label, path, status in results:
        size = human(path.stat().st_size) if path and path.exists() else "-"
        print(f"  {status if path else 'NOT BUILT':>9}  {label:<40} {size:>10}  {path or status}")
    return 0 if results and all(s == "ok" for _, _, s in results) else 1


if __name__ == "__main__":
    sys.exit(main())
