#!/usr/bin/env python3
"""Build the "INS for Blender" extension zips (Blender 4.2+ extensions, manifest schema 1.0.0).

Usage (Python 3.11+, from the repository root):

    python build_addon.py                                   # full zips for the manifest's platforms + light zip
    python build_addon.py --platform linux-x64 --torch-wheel /opt/wheels   # one full zip, local CPU torch
    python build_addon.py --platform linux-x64 --torch-index-url https://download.pytorch.org/whl/cpu
    python build_addon.py --light --offline                 # only the light zip, no network at all
    python build_addon.py --validate dist/ins_stylize-0.1.0-linux_x64.zip   # check an existing zip

Options: --out DIR (default dist/), --wheels-cache DIR (default .whl/, where downloaded wheels are
kept and looked up), --offline (never run pip; use only the cache and --torch-wheel), --no-numpy,
--blender PATH (also run `blender --command extension validate`), --max-file-mb N.

Layout inside every zip (the zip root is the extension's root package, `bl_ext.<repo>.ins_stylize`):

    blender_manifest.toml            the source manifest + generated `platforms` and `wheels`
    __init__.py, jobs.py, ...        the files of ins_blender/ (minus [build] paths_exclude_pattern)
    wheels/ins_core-<v>-py3-none-any.whl   ins_core, built here from ins_core/ (pure Python)
    wheels/<dependency>.whl ...      full zips only: torch (CPU build) and the worker's dependencies

How the pieces find each other. Blender installs every wheel listed in the manifest into the
extensions' shared site-packages (`<user extensions>/.local/lib/python3.11/site-packages`) and puts
that folder on `sys.path`. So:
  * the add-on's own `from ins_core.job import ...` works with no sys.path code of its own;
  * the worker is started as `PYTHON -m ins_core.worker JOB` with PYTHONPATH = the folder that holds
    `ins_core` (`Path(ins_core.__file__).parent.parent`, see ins_blender/jobs.py), which is that same
    site-packages: with Blender's own Python it finds the bundled torch, numpy, ... there too.
    In a development checkout the same expression gives the repository root.
ins_core ships as a wheel (not as a sub-package of the add-on) because ins_blender imports it as a
top-level package, and wheels are the mechanism Blender provides (and recommends) for that.
Caveat for an *external* worker Python (a CUDA torch): in a full zip the folder that holds
ins_core also holds the bundled cp311 torch/numpy, so prepending it to PYTHONPATH would shadow the
external Python's own packages; such a launch should append the folder to sys.path instead
(e.g. `python -c "import sys,runpy; sys.path.append(ROOT); runpy.run_module('ins_core.worker',
run_name='__main__', alter_sys=True)" JOB`), or use the light zip.

Variants:
  * full, one zip per platform (`platforms = [that one]`), named <id>-<version>-<platform>.zip:
    the worker runs in Blender's own Python (3.11 in Blender 4.2 - 5.0) with the bundled wheels.
    Platforms: linux-x64, windows-x64, macos-arm64; macos-x64 cannot be built because PyTorch
    publishes no macOS x86-64 wheels after 2.2 (the build says so and goes on with the others).
  * light, one zip for every platform (no `platforms` key), named <id>-<version>-light.zip:
    only the ins_core wheel. For users who point the add-on at their own Python with torch; that
    Python gets the rest with `pip install <extension dir>/wheels/ins_core-*.whl` (the wheel's
    metadata carries the project's pinned dependencies from pyproject.toml).

PyTorch. The full zips must bundle a CPU build of torch 2.13.0:
  * linux-x64: PyPI's torch 2.13.0 for Linux is the CUDA build (it also needs several GB of
    nvidia-* wheels), so the build refuses it. Give `--torch-wheel PATH` (a wheel file or a folder
    with one, e.g. torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl) or
    `--torch-index-url https://download.pytorch.org/whl/cpu` (PyTorch's CPU index) to download it.
  * windows-x64, macos-arm64: PyPI's wheels are CPU (Windows) / CPU+MPS (macOS) builds and are
    downloaded from PyPI unless --torch-wheel/--torch-index-url say otherwise. The macOS arm64
    wheel needs macOS 14+ (its platform tag says so; the report prints the minimum macOS).

numpy: Blender ships numpy, but 4.2/4.3 ship 1.24.3 while the project is tested with 1.26.4 and
scipy 1.17.1 (needed because PyMCubes imports scipy) requires numpy >= 1.26.4. So the full zips
bundle numpy 1.26.4; Blender puts extension wheels before its own site-packages, so inside Blender
that numpy (same major version, ABI-compatible) replaces 1.24.3; in 4.4 - 5.0 it is the same
version Blender ships. `--no-numpy` leaves it out (then the worker uses Blender's numpy).
setuptools, which torch 2.13 lists as a dependency, is not bundled: only
torch.utils.cpp_extension (compiling C++ extensions) imports it, ins_core never does, and a newer
copy would shadow Blender's own setuptools.

Validation (after each zip is written; any error fails the build with exit status 1):
  * our own checks, written from the rules in Blender's extension tooling (bl_pkg/cli/blender_ext.py)
    and its manual: required keys and their types, schema_version, id (Python identifier, no "__",
    no leading/trailing "_"), version (semantic versioning), tagline and permission texts (<= 64
    characters, no trailing punctuation), blender_version_min (X.Y.Z), type, license ("SPDX:"),
    tags (Blender's add-on tag list), permission keys, platforms, wheels ("./wheels/*.whl", forward
    slashes, valid wheel file names, each in the zip, none unlisted, each built for the zip's
    platform and for CPython 3.11, one version per distribution, every hard dependency of every
    bundled wheel present (markers evaluated for the platform)), and the zip itself
    (blender_manifest.toml and __init__.py at the root, no __pycache__/*.pyc/dot files, no
    absolute or ".." paths, wheels stored uncompressed, per-file size limit, total size);
  * Blender's own validator, `blender_ext.py validate` from the installed `bpy` module
    (found without importing bpy) or `blender --command extension validate` with --blender.
    Without either, only our checks run, and the report says so.
"""

from __future__ import annotations

import argparse
import ast
import base64
import csv
import hashlib
import importlib.util
import io
import os
import re
import subprocess
import sys
import tempfile
import time
import tomllib
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent
SOURCE_MANIFEST = ROOT / "blender_manifest.toml"
ADDON_DIR = ROOT / "ins_blender"
CORE_DIR = ROOT / "ins_core"
VGG_WEIGHTS = "assets/vgg16_imagenet_caffe_fp16.pth"  # written by `python -m ins_core weights`
PYPROJECT = ROOT / "pyproject.toml"
DEFAULT_OUT = ROOT / "dist"
DEFAULT_CACHE = ROOT / ".whl"
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"

PYTHON_VERSION = (3, 11)  # Blender 4.2 - 5.0 embed CPython 3.11.
PY_TAG = "cp311"
MANYLINUX_MAX = (2, 28)  # Blender 4.2+ on Linux requires glibc 2.28 (VFX platform CY2024).

# --- Manifest rules (Blender's extension tooling: bl_pkg/cli/blender_ext.py, schema 1.0.0) -------

REQUIRED_KEYS = {
    "schema_version": str, "id": str, "version": str, "name": str, "tagline": str,
    "maintainer": str, "type": str, "blender_version_min": str, "license": list,
}
OPTIONAL_KEYS = {
    "blender_version_max": str, "website": str, "copyright": list, "permissions": dict,
    "tags": list, "platforms": list, "wheels": list,
}
TERSE_MAX = 64
PERMISSION_KEYS = {"files", "network", "clipboard", "camera", "microphone"}
BLENDER_PLATFORMS = {"windows-x64", "windows-arm64", "macos-x64", "macos-arm64", "linux-x64"}
# Blender's add-on tags (scripts/modules/_bpy_internal/extensions/tags.py, Blender 4.2 - 5.0).
ADDON_TAGS = {
    "3D View", "Add Curve", "Add Mesh", "Animation", "Bake", "Camera", "Compositing", "Development",
    "Game Engine", "Geometry Nodes", "Grease Pencil", "Import-Export", "Lighting", "Material", "Mesh",
    "Modeling", "Node", "Object", "Paint", "Physics", "Pipeline", "Render", "Rigging", "Scene",
    "Sculpt", "Sequencer", "System", "Text Editor", "Tracking", "User Interface", "UV",
}
# Semantic versioning 2.0.0 (the same expression Blender uses).
RE_SEMVER = re.compile(
    r"^(?P<major>0|[1-9]\d*)\.(?P<minor>0|[1-9]\d*)\.(?P<patch>0|[1-9]\d*)"
    r"(?:-(?P<prerelease>(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+(?P<buildmetadata>[0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
)
RE_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# Shared libraries that only GPU builds of torch carry (CUDA or ROCm).
RE_GPU_LIB = re.compile(r"(?:^|/)(?:lib)?(?:torch_cuda|c10_cuda|torch_hip|c10_hip)[^/]*\.(?:so|dll|dylib)")

# --- What the worker needs -----------------------------------------------------------------------


@dataclass(frozen=True)
class Pin:
    name: str
    version: str
    why: str
    platforms: frozenset[str] | None = None  # None: every platform
    torch: bool = False  # part of torch's closure (left out of nothing today; kept for reports)


# Exact versions: the set tested together in the project's environment (pyproject.toml pins the
# top-level ones; the build checks that both agree).
WORKER_PINS = (
    Pin("torch", "2.13.0", "the worker's tensor library (CPU build)", torch=True),
    Pin("filelock", "4.3.1", "torch dependency", torch=True),
    Pin("typing-extensions", "4.16.0", "torch dependency", torch=True),
    Pin("sympy", "1.14.0", "torch dependency", torch=True),
    Pin("mpmath", "1.3.0", "sympy dependency (sympy 1.14 needs mpmath < 1.4)", torch=True),
    Pin("networkx", "3.6.1", "torch dependency", torch=True),
    Pin("jinja2", "3.1.6", "torch dependency", torch=True),
    Pin("markupsafe", "3.0.4", "jinja2 dependency", torch=True),
    Pin("fsspec", "2026.9.0", "torch dependency", torch=True),
    Pin("numpy", "1.26.4", "arrays everywhere; Blender 4.2/4.3 ship 1.24.3"),
    Pin("scipy", "1.17.1", "PyMCubes imports scipy (sparse, ndimage) on import"),
    Pin("pillow", "11.3.0", "image I/O"),
    Pin("tqdm", "4.67.1", "CLI progress bars"),
    Pin("colorama", "0.4.6", "tqdm dependency on Windows", platforms=frozenset({"windows-x64"})),
    Pin("pymcubes", "0.1.6", "marching cubes"),
    Pin("xatlas", "0.0.11", "UV unwrapping"),
    Pin("fast-simplification", "0.2.0", "quadric decimation of exported meshes to their face budget"),
    Pin("trimesh", "5.2.0", "mesh utilities (pinned in pyproject.toml)"),
    Pin("imageio-ffmpeg", "0.6.0", "MP4 output (ships an ffmpeg binary)"),
)
# Hard dependencies deliberately not bundled (see the module docstring).
NOT_BUNDLED = {
    "setuptools": "only torch.utils.cpp_extension imports it; Blender's Python has its own",
}


@dataclass(frozen=True)
class PlatformSpec:
    pip_platforms: tuple[str, ...]
    markers: dict
    torch_from_pypi: bool  # PyPI's torch for this platform is a CPU (or CPU+MPS) build
    torch_available: bool = True


PLATFORMS: dict[str, PlatformSpec] = {
    "linux-x64": PlatformSpec(
        tuple(f"manylinux_2_{m}_x86_64" for m in range(MANYLINUX_MAX[1], 16, -1))
        + ("manylinux2014_x86_64",),
        {"sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix"},
        torch_from_pypi=False,
    ),
    "windows-x64": PlatformSpec(
        ("win_amd64",),
        {"sys_platform": "win32", "platform_system": "Windows", "platform_machine": "AMD64", "os_name": "nt"},
        torch_from_pypi=True,
    ),
    "macos-arm64": PlatformSpec(
        ("macosx_14_0_arm64",),  # pip also accepts older macOS targets and universal2 for this
        {"sys_platform": "darwin", "platform_system": "Darwin", "platform_machine": "arm64", "os_name": "posix"},
        torch_from_pypi=True,
    ),
    "macos-x64": PlatformSpec(
        ("macosx_10_15_x86_64",),
        {"sys_platform": "darwin", "platform_system": "Darwin", "platform_machine": "x86_64", "os_name": "posix"},
        torch_from_pypi=True,
        torch_available=False,
    ),
}


class BuildError(Exception):
    """A problem that stops one variant (or the whole build) with a clear message."""


# --- Small helpers -------------------------------------------------------------------------------


def normalize_name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def human(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def load_packaging():
    """`packaging` (requirements, markers), or pip's vendored copy, or None."""
    try:
        import packaging.requirements as req_mod
        return req_mod
    except ImportError:
        pass
    try:
        import pip._vendor.packaging.requirements as req_mod  # type: ignore
        return req_mod
    except ImportError:
        return None


# --- Wheel file names ----------------------------------------------------------------------------


@dataclass(frozen=True)
class WheelName:
    filename: str
    dist: str
    version: str
    build: str | None
    py_tags: tuple[str, ...]
    abi_tags: tuple[str, ...]
    plat_tags: tuple[str, ...]

    @property
    def base_version(self) -> str:
        return self.version.split("+", 1)[0]

    @property
    def local_version(self) -> str:
        return self.version.split("+", 1)[1] if "+" in self.version else ""


def parse_wheel_filename(filename: str) -> WheelName:
    if not filename.endswith(".whl"):
        raise ValueError(f"not a wheel file name: {filename!r}")
    parts = filename[:-4].split("-")
    if len(parts) not in (5, 6):
        raise ValueError(f"wheel file name must be dist-version(-build)-python-abi-platform.whl: {filename!r}")
    build = parts[2] if len(parts) == 6 else None
    return WheelName(
        filename, parts[0], parts[1], build,
        tuple(parts[-3].split(".")), tuple(parts[-2].split(".")), tuple(parts[-1].split(".")),
    )


def blender_platforms_of_tag(plat_tag: str) -> set[str]:
    """Blender platforms a wheel platform tag runs on; {"any"} for pure wheels; empty if none.

    Follows Blender's own mapping, stricter where Blender's Python could not load the wheel:
    musllinux (Blender's Python is glibc-based) and manylinux newer than glibc 2.28 map to nothing.
    """
    if plat_tag == "any":
        return {"any"}
    m = re.fullmatch(r"manylinux_(\d+)_(\d+)_(\w+)", plat_tag)
    legacy = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}
    if m:
        glibc, arch = (int(m.group(1)), int(m.group(2))), m.group(3)
    else:
        m = re.fullmatch(r"(manylinux1|manylinux2010|manylinux2014)_(\w+)", plat_tag)
        if m:
            glibc, arch = legacy[m.group(1)], m.group(2)
        elif plat_tag == "linux_x86_64":
            return set()  # not portable: built for one distribution
        else:
            glibc = arch = None
    if glibc is not None:
        if glibc > MANYLINUX_MAX:
            return set()
        return {"linux-x64"} if arch == "x86_64" else ({"linux-arm64"} if arch == "aarch64" else set())
    if plat_tag == "win_amd64":
        return {"windows-x64"}
    if plat_tag == "win_arm64":
        return {"windows-arm64"}
    m = re.fullmatch(r"macosx_(\d+)_(\d+)_(\w+)", plat_tag)
    if m:
        arch = m.group(3)
        return {
            "arm64": {"macos-arm64"}, "x86_64": {"macos-x64"}, "intel": {"macos-x64"},
            "universal2": {"macos-x64", "macos-arm64"}, "universal": {"macos-x64"},
        }.get(arch, set())
    return set()


def macos_min_of(wheel: WheelName) -> tuple[int, int] | None:
    found = [
        (int(m.group(1)), int(m.group(2)))
        for tag in wheel.plat_tags if (m := re.fullmatch(r"macosx_(\d+)_(\d+)_\w+", tag))
    ]
    return min(found) if found else None


def python_compatible(wheel: WheelName) -> bool:
    """Loadable by CPython 3.11."""
    major, minor = PYTHON_VERSION
    abi_ok = any(a in ("none", f"cp{major}{minor}", "abi3") for a in wheel.abi_tags)
    py_ok = False
    for tag in wheel.py_tags:
        m = re.fullmatch(r"(py|cp)(\d)(\d*)", tag)
        if not m:
            continue
        kind, tmajor, tminor = m.group(1), int(m.group(2)), m.group(3)
        if tmajor != major:
            continue
        if not tminor:
            py_ok = True  # py3
        elif kind == "py" and int(tminor) <= minor:
            py_ok = True
        elif kind == "cp" and (int(tminor) == minor or ("abi3" in wheel.abi_tags and int(tminor) <= minor)):
            py_ok = True
    return abi_ok and py_ok


def wheel_compatible(wheel: WheelName, platform: str | None) -> bool:
    """For `platform` (None: must be pure, the light zip runs everywhere) and CPython 3.11."""
    if not python_compatible(wheel):
        return False
    plats: set[str] = set()
    for tag in wheel.plat_tags:
        plats |= blender_platforms_of_tag(tag)
    if platform is None:
        return plats == {"any"}
    return "any" in plats or platform in plats


def is_cuda_or_rocm_torch(wheel: WheelName) -> bool:
    return bool(re.match(r"(cu\d+|rocm)", wheel.local_version))


# --- Reading wheels --------------------------------------------------------------------------------


def wheel_metadata(path: Path) -> str:
    with zipfile.ZipFile(path) as zf:
        names = [n for n in zf.namelist() if re.fullmatch(r"[^/]+\.dist-info/METADATA", n)]
        if len(names) != 1:
            raise BuildError(f"{path.name}: expected one .dist-info/METADATA, found {len(names)}")
        return zf.read(names[0]).decode("utf-8", "replace")


def wheel_requirements(path: Path) -> list[str]:
    header = wheel_metadata(path).split("\n\n", 1)[0]
    return [line.split(":", 1)[1].strip() for line in header.splitlines() if line.startswith("Requires-Dist:")]


def unmet_requirements(wheels: list[Path], platform: str | None) -> tuple[list[str], str | None]:
    """Hard dependencies of the bundled wheels that no bundled wheel satisfies.

    Returns (problems, note); note says why the check could not run, when it could not.
    """
    req_mod = load_packaging()
    if req_mod is None:
        return [], "dependency check skipped: neither `packaging` nor pip's copy of it is importable"
    env = {
        "python_version": f"{PYTHON_VERSION[0]}.{PYTHON_VERSION[1]}",
        "python_full_version": f"{PYTHON_VERSION[0]}.{PYTHON_VERSION[1]}.9",
        "implementation_name": "cpython", "platform_python_implementation": "CPython", "extra": "",
    }
    if platform:
        env.update(PLATFORMS[platform].markers)
    present = {}
    for w in wheels:
        name = parse_wheel_filename(w.name)
        present[normalize_name(name.dist)] = name.version
    problems = []
    numpy_from_blender = False
    for w in wheels:
        wname = parse_wheel_filename(w.name)
        if normalize_name(wname.dist) == "ins-core":
            continue  # its pins are for an external Python (pip install); the zip's set is checked here
        for text in wheel_requirements(w):
            req = req_mod.Requirement(text)
            if req.marker is not None and not req.marker.evaluate(env):
                continue
            key = normalize_name(req.name)
            if key in NOT_BUNDLED:
                continue
            if key == "numpy" and key not in present:
                numpy_from_blender = True  # --no-numpy: Blender's own numpy stands in
                continue
            if key not in present:
                problems.append(f"{wname.dist} {wname.version} needs {text!r}, which is not bundled")
            elif req.specifier and not req.specifier.contains(present[key], prereleases=True):
                problems.append(f"{wname.dist} {wname.version} needs {text!r}, bundled is {present[key]}")
    note = None
    if numpy_from_blender:
        note = "numpy is not bundled: the wheels that need it rely on Blender's own numpy (its version is not checked here)"
    return problems, note


# --- The ins_core wheel ---------------------------------------------------------------------------


def read_pyproject() -> dict:
    with open(PYPROJECT, "rb") as fh:
        return tomllib.load(fh)


def core_version() -> str:
    text = (CORE_DIR / "__init__.py").read_text(encoding="utf-8")
    m = re.search(r"^__version__\s*=\s*[\"']([^\"']+)[\"']", text, re.M)
    if not m:
        raise BuildError("ins_core/__init__.py has no __version__ = '...'")
    return m.group(1)


def check_pins_against_pyproject(project: dict) -> list[str]:
    """The worker pins must agree with pyproject.toml's exact pins."""
    errors = []
    pins = {normalize_name(p.name): p.version for p in WORKER_PINS}
    for dep in project.get("project", {}).get("dependencies", []):
        m = re.fullmatch(r"\s*([A-Za-z0-9_.\-]+)\s*==\s*([^\s;]+)\s*", dep)
        if not m:
            continue
        name, version = normalize_name(m.group(1)), m.group(2)
        if name not in pins:
            errors.append(f"pyproject.toml pins {dep!r} but build_addon.py does not bundle it (add it to WORKER_PINS)")
        elif pins[name] != version:
            errors.append(f"pyproject.toml pins {dep!r} but build_addon.py bundles {pins[name]} (make them agree)")
    return errors


def _excluded_by_defaults(rel: str) -> bool:
    parts = rel.split("/")
    return any(p == "__pycache__" or p.startswith(".") for p in parts) or rel.endswith((".pyc", ".pyo"))


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def build_core_wheel(dest_dir: Path, date_time: tuple) -> Path:
    """Write ins_core-<version>-py3-none-any.whl (pure Python) into dest_dir."""
    version = core_version()
    project = read_pyproject().get("project", {})
    files = sorted(
        p for p in CORE_DIR.rglob("*")
        if p.is_file() and not _excluded_by_defaults(p.relative_to(ROOT).as_posix())
    )
    if not (CORE_DIR / "__init__.py").is_file():
        raise BuildError("ins_core/__init__.py is missing")
    if not (CORE_DIR / VGG_WEIGHTS).is_file():
        # Every zip carries the loss network so that stylization works offline after installing.
        raise BuildError(f"ins_core/{VGG_WEIGHTS} is missing; run `python -m ins_core weights` (the set-up does) first")
    dist_info = f"ins_core-{version}.dist-info"
    meta = [
        "Metadata-Version: 2.1", "Name: ins_core", f"Version: {version}",
        "Summary: INS core (implicit neural stylization), as bundled with the INS for Blender extension",
        "License: GPL-3.0-or-later",
    ]
    if project.get("requires-python"):
        meta.append(f"Requires-Python: {project['requires-python']}")
    meta += [f"Requires-Dist: {d}" for d in project.get("dependencies", [])]
    extra = {
        f"{dist_info}/METADATA": ("\n".join(meta) + "\n").encode(),
        f"{dist_info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: build_addon.py\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        f"{dist_info}/top_level.txt": b"ins_core\n",
    }
    out = dest_dir / f"ins_core-{version}-py3-none-any.whl"
    record = io.StringIO()
    writer = csv.writer(record, lineterminator="\n")
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in files:
            rel = path.relative_to(ROOT).as_posix()
            data = path.read_bytes()
            _zip_write_bytes(zf, rel, data, date_time, compress=True)
            writer.writerow([rel, _record_hash(data), len(data)])
        for rel, data in extra.items():
            _zip_write_bytes(zf, rel, data, date_time, compress=True)
            writer.writerow([rel, _record_hash(data), len(data)])
        writer.writerow([f"{dist_info}/RECORD", "", ""])
        _zip_write_bytes(zf, f"{dist_info}/RECORD", record.getvalue().encode(), date_time, compress=True)
    return out


# --- The add-on files -------------------------------------------------------------------------------


def _glob_regex(glob: str) -> re.Pattern:
    """gitignore-style glob: `*` and `?` stay within one path component, `**` crosses them."""
    out, i = [], 0
    while i < len(glob):
        c = glob[i]
        if glob.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[" and (j := glob.find("]", i + 1)) != -1:
            body = glob[i + 1:j]
            out.append("[" + ("^" + re.escape(body[1:]) if body[:1] in "!^" and body else body) + "]")
            i = j + 1
            continue
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out) + r"\Z")


def _pattern_matches(pattern: str, rel: str, is_dir: bool) -> bool:
    """One gitignore-style pattern (as Blender's paths_exclude_pattern) against a relative path."""
    dir_only = pattern.endswith("/")
    core = pattern.strip("/")
    anchored = pattern.startswith("/") or "/" in core
    if dir_only and not is_dir:
        return False
    if anchored:
        return bool(_glob_regex(core).match(rel))
    return bool(_glob_regex(core).match(rel.rsplit("/", 1)[-1]))


def excluded(rel: str, patterns: list[str]) -> bool:
    """True when rel (a file) or one of its parent folders matches an exclude pattern."""
    parts = rel.split("/")
    for i in range(1, len(parts)):
        folder = "/".join(parts[:i])
        if any(_pattern_matches(p, folder, True) for p in patterns):
            return True
    return any(_pattern_matches(p, rel, False) for p in patterns)


def addon_files(patterns: list[str]) -> list[tuple[Path, str]]:
    if any(p.startswith("!") for p in patterns):
        raise BuildError("paths_exclude_pattern: negated (\"!\") patterns are not supported by build_addon.py")
    if not (ADDON_DIR / "__init__.py").is_file():
        raise BuildError("ins_blender/__init__.py is missing: the zip root must be a Python package")
    out = []
    for path in sorted(ADDON_DIR.rglob("*")):
        if not path.is_file():
            continue
        rel = path.relative_to(ADDON_DIR).as_posix()
        if _excluded_by_defaults(rel) or excluded(rel, patterns):
            continue
        if rel in ("blender_manifest.toml",) or rel.startswith("wheels/"):
            continue  # the builder writes these
        out.append((path, rel))
    return out


def addon_init_findings(init_source: str) -> tuple[list[str], list[str]]:
    """(errors, warnings) about the add-on's __init__.py."""
    errors, warnings = [], []
    try:
        tree = ast.parse(init_source)
    except SyntaxError as exc:
        return [f"__init__.py does not parse: {exc}"], []
    bound = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, ast.Assign):
            bound |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound |= {(a.asname or a.name).split(".")[0] for a in node.names}
    if "bl_info" in bound:
        warnings.append("__init__.py defines bl_info: extensions take this from blender_manifest.toml (remove it)")
    missing = [n for n in ("register", "unregister") if n not in bound]
    if missing:
        warnings.append(f"__init__.py defines no {' / '.join(missing)}(): Blender cannot enable the add-on yet")
    return errors, warnings


# --- Manifest ----------------------------------------------------------------------------------------


def _terse_error(value: str) -> str | None:
    if not value or value != value.strip():
        return "must be a non-empty string without leading/trailing spaces"
    if RE_CONTROL.search(value):
        return "must not contain control characters"
    if len(value) > TERSE_MAX:
        return f"must be at most {TERSE_MAX} characters, found {len(value)}"
    if not (value[-1].isalnum() or value[-1] in ")]}"):
        return "must not end with punctuation"
    return None


def validate_manifest(data: dict, *, zip_names: set[str] | None = None,
                      expect_platforms: object = ...) -> list[str]:
    """Errors in a manifest dictionary; with zip_names, also checks the wheels are in the zip."""
    errors = []
    for key, kind in REQUIRED_KEYS.items():
        if key not in data:
            errors.append(f"missing required key {key!r}")
        elif not isinstance(data[key], kind):
            errors.append(f"{key!r} must be a {kind.__name__}, not {type(data[key]).__name__}")
    for key, kind in OPTIONAL_KEYS.items():
        if key in data and not isinstance(data[key], kind):
            errors.append(f"{key!r} must be a {kind.__name__}, not {type(data[key]).__name__}")
    if errors:
        return errors

    if data["schema_version"] != "1.0.0":
        errors.append(f"schema_version must be \"1.0.0\", found {data['schema_version']!r}")
    pkg_id = data["id"]
    if not pkg_id.isidentifier():
        errors.append(f"id {pkg_id!r} must be a valid Python identifier")
    elif "__" in pkg_id or pkg_id.startswith("_") or pkg_id.endswith("_"):
        errors.append(f"id {pkg_id!r} must not contain \"__\" nor start or end with \"_\"")
    if not RE_SEMVER.match(data["version"]):
        errors.append(f"version {data['version']!r} must follow semantic versioning (e.g. 1.2.3)")
    for key in ("name", "maintainer"):
        if not data[key].strip() or data[key] != data[key].strip() or RE_CONTROL.search(data[key]):
            errors.append(f"{key} must be a non-empty single-line string without surrounding spaces")
    if (err := _terse_error(data["tagline"])) is not None:
        errors.append(f"tagline {err}")
    if data["type"] not in ("add-on", "theme"):
        errors.append(f"type must be \"add-on\" or \"theme\", found {data['type']!r}")
    for key in ("blender_version_min", "blender_version_max"):
        if key in data and not re.fullmatch(r"\d+\.\d+\.\d+", data[key]):
            errors.append(f"{key} must be three numbers X.Y.Z, found {data[key]!r}")
    if not data["license"] or not all(isinstance(x, str) and x.startswith("SPDX:") for x in data["license"]):
        errors.append("license must be a non-empty list of \"SPDX:...\" identifiers")
    for item in data.get("copyright", []):
        if not (isinstance(item, str) and re.fullmatch(r"\d{4}(-\d{4})? \S.*", item)):
            errors.append(f"copyright entry {item!r} must be \"YEAR Name\" or \"YEAR-YEAR Name\"")
    if "website" in data and not data["website"].strip():
        errors.append("website must not be empty")
    for tag in data.get("tags", []):
        if data["type"] == "add-on" and tag not in ADDON_TAGS:
            errors.append(f"tag {tag!r} is not one of Blender's add-on tags")
    for key, text in data.get("permissions", {}).items():
        if key not in PERMISSION_KEYS:
            errors.append(f"permission {key!r} must be one of {sorted(PERMISSION_KEYS)}")
        elif not isinstance(text, str):
            errors.append(f"permission {key!r} needs a reason string")
        elif (err := _terse_error(text)) is not None:
            errors.append(f"permission {key!r} reason {err}")
    platforms = data.get("platforms")
    if platforms is not None:
        if not platforms:
            errors.append("platforms must not be an empty list (leave the key out for every platform)")
        for p in platforms:
            if p not in BLENDER_PLATFORMS:
                errors.append(f"platform {p!r} must be one of {sorted(BLENDER_PLATFORMS)}")
    if expect_platforms is not ...:
        if platforms != expect_platforms:
            errors.append(f"platforms is {platforms!r}, expected {expect_platforms!r}")

    wheels = data.get("wheels", [])
    seen_dists: dict[str, str] = {}
    for w in wheels:
        if not isinstance(w, str) or not w:
            errors.append(f"wheel entry {w!r} must be a non-empty string")
            continue
        if "\\" in w or '"' in w or RE_CONTROL.search(w):
            errors.append(f"wheel path {w!r} must use forward slashes and no quotes/control characters")
            continue
        if not w.startswith("./wheels/") or w.count("/") != 2:
            errors.append(f"wheel path {w!r} must be ./wheels/<file>.whl")
            continue
        try:
            wn = parse_wheel_filename(w.rsplit("/", 1)[1])
        except ValueError as exc:
            errors.append(str(exc))
            continue
        if not python_compatible(wn):
            errors.append(f"wheel {wn.filename} is not for CPython {PYTHON_VERSION[0]}.{PYTHON_VERSION[1]}")
        targets = platforms if platforms else [None]
        for p in targets:
            if not wheel_compatible(wn, p):
                errors.append(f"wheel {wn.filename} does not run on {p or 'every platform (not pure Python)'}")
        key = normalize_name(wn.dist)
        if key in seen_dists and (not platforms or len(platforms) == 1):
            errors.append(f"two wheels of {wn.dist}: {seen_dists[key]} and {wn.filename}")
        seen_dists[key] = wn.filename
        if zip_names is not None and w[2:] not in zip_names:
            errors.append(f"wheel {w} is listed in the manifest but not in the zip")
    if zip_names is not None:
        listed = {w[2:] for w in wheels if isinstance(w, str)}
        for name in sorted(zip_names):
            if name.endswith(".whl") and name not in listed:
                errors.append(f"{name} is in the zip but not listed in the manifest's wheels")
    return errors


def render_manifest(source_text: str, *, platforms: list[str] | None, wheels: list[str]) -> str:
    """The source manifest with generated `platforms` and `wheels` (top-level keys)."""
    lines = source_text.splitlines(keepends=True)
    first_table = next((i for i, l in enumerate(lines) if re.match(r"\s*\[", l)), len(lines))
    head, tail = "".join(lines[:first_table]), "".join(lines[first_table:])
    head = re.sub(r"(?ms)^(platforms|wheels)\s*=\s*\[[^\]]*\][^\n]*\n", "", head)
    gen = ["# --- generated by build_addon.py ---\n"]
    if platforms is not None:
        gen.append("platforms = [" + ", ".join(f'"{p}"' for p in platforms) + "]\n")
    gen.append("wheels = [\n" + "".join(f'  "{w}",\n' for w in wheels) + "]\n" if wheels else "wheels = []\n")
    text = head.rstrip("\n") + "\n\n" + "".join(gen) + "\n" + tail
    # The result must say exactly what we meant, and nothing else may change.
    parsed, source = tomllib.loads(text), tomllib.loads(source_text)
    for key in set(source) | set(parsed):
        if key in ("platforms", "wheels"):
            continue
        if parsed.get(key) != source.get(key):
            raise BuildError(f"internal error: generated manifest changed {key!r}")
    if parsed.get("platforms") != platforms or parsed.get("wheels") != wheels:
        raise BuildError("internal error: generated manifest does not hold the intended platforms/wheels")
    return text


# --- Finding and downloading wheels ---------------------------------------------------------------------


@dataclass
class WheelPlan:
    platform: str | None
    wheels: list[Path] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _scan(dirs: list[Path]) -> list[Path]:
    out = []
    for d in dirs:
        if d.is_file() and d.name.endswith(".whl"):
            out.append(d)
        elif d.is_dir():
            out += sorted(d.glob("*.whl"))
    return out


def _linux_preference(wheel: WheelName) -> tuple:
    glibc = []
    for tag in wheel.plat_tags:
        if m := re.fullmatch(r"manylinux_(\d+)_(\d+)_\w+", tag):
            glibc.append((int(m.group(1)), int(m.group(2))))
    return max(glibc) if glibc else (0, 0)


def find_wheel(candidates: list[Path], pin: Pin, platform: str, *, allow_local: bool = False) -> Path | None:
    found = []
    for path in candidates:
        try:
            wn = parse_wheel_filename(path.name)
        except ValueError:
            continue
        if normalize_name(wn.dist) != normalize_name(pin.name):
            continue
        if wn.version != pin.version and not (allow_local and wn.base_version == pin.version):
            continue
        if not wheel_compatible(wn, platform):
            continue
        found.append((path, wn))
    if not found:
        return None
    if pin.name == "torch":
        cpu = [f for f in found if f[1].local_version == "cpu"]
        found = cpu or found
    found.sort(key=lambda f: (_linux_preference(f[1]), f[0].name), reverse=True)
    return found[0][0]


def pip_download(reqs: list[str], platform: str, dest: Path, index_url: str | None = None) -> subprocess.CompletedProcess:
    spec = PLATFORMS[platform]
    cmd = [
        sys.executable, "-m", "pip", "download", "--only-binary=:all:", "--no-deps",
        "--python-version", f"{PYTHON_VERSION[0]}.{PYTHON_VERSION[1]}", "--implementation", "cp",
        "--abi", PY_TAG, "--abi", "abi3", "--abi", "none", "--progress-bar", "off", "-d", str(dest),
    ]
    for p in spec.pip_platforms:
        cmd += ["--platform", p]
    if index_url:
        cmd += ["--index-url", index_url]
    cmd += reqs
    print("  $ pip download " + " ".join(reqs) + (f" --index-url {index_url}" if index_url else "")
          + f"  [{platform}]", flush=True)
    return subprocess.run(cmd, capture_output=True, text=True)


def plan_full(platform: str, *, cache: Path, torch_paths: list[Path], torch_index_url: str | None,
              offline: bool, with_numpy: bool) -> WheelPlan:
    """Resolve (and download into the cache when allowed) every wheel of one full zip."""
    spec = PLATFORMS[platform]
    plan = WheelPlan(platform)
    if not spec.torch_available:
        raise BuildError(
            f"{platform}: PyTorch publishes no torch {_pin('torch').version} wheels for macOS x86-64 "
            "(the last were 2.2.x); build the light zip for Intel Macs and point the add-on at a Python with torch"
        )
    pins = [p for p in WORKER_PINS if (p.platforms is None or platform in p.platforms)]
    if not with_numpy:
        pins = [p for p in pins if p.name != "numpy"]
        plan.notes.append("numpy not bundled (--no-numpy): the worker uses Blender's own numpy")
    cache.mkdir(parents=True, exist_ok=True)

    def resolve(pin: Pin) -> Path | None:
        if pin.name == "torch":
            return find_wheel(_scan(torch_paths) + _scan([cache]), pin, platform, allow_local=True)
        return find_wheel(_scan([cache]), pin, platform)

    missing = [p for p in pins if resolve(p) is None]
    if missing and not offline:
        others = [p for p in missing if p.name != "torch"]
        if others:
            res = pip_download([f"{p.name}=={p.version}" for p in others], platform, cache)
            if res.returncode != 0:
                plan.notes.append("pip download failed: " + _last_lines(res.stderr))
        if any(p.name == "torch" for p in missing):
            if torch_index_url or spec.torch_from_pypi:
                res = pip_download([f"torch=={_pin('torch').version}"], platform, cache, torch_index_url)
                if res.returncode != 0:
                    plan.notes.append("pip download torch failed: " + _last_lines(res.stderr))
            else:
                plan.notes.append(
                    f"{platform}: PyPI's torch for this platform is the CUDA build (several GB with its "
                    f"nvidia-* wheels); not downloaded. Pass --torch-wheel PATH (a CPU wheel) or "
                    f"--torch-index-url {TORCH_CPU_INDEX}"
                )
    for pin in pins:
        path = resolve(pin)
        if path is None:
            plan.missing.append(f"{pin.name}=={pin.version}")
            continue
        if pin.name == "torch" and (problem := torch_wheel_problem(path.name, platform)):
            raise BuildError(problem)
        plan.wheels.append(path)
    return plan


def torch_wheel_problem(filename: str, platform: str) -> str | None:
    """Why this torch wheel cannot go into the full zip for `platform`, or None."""
    wn = parse_wheel_filename(filename)
    if is_cuda_or_rocm_torch(wn):
        return f"{platform}: {filename} is a GPU build of torch; the extension bundles the CPU build"
    if platform == "linux-x64" and wn.local_version != "cpu":
        return (
            f"{platform}: {filename} is not the CPU build (torch-{wn.base_version}+cpu); PyPI's Linux torch "
            f"needs CUDA wheels that are not bundled. Use --torch-wheel or --torch-index-url {TORCH_CPU_INDEX}"
        )
    if not wheel_compatible(wn, platform):
        return f"{platform}: {filename} is not built for {platform} and CPython 3.11"
    return None


def _pin(name: str) -> Pin:
    return next(p for p in WORKER_PINS if p.name == name)


def _last_lines(text: str, n: int = 3) -> str:
    lines = [l for l in (text or "").strip().splitlines() if l.strip()]
    return " | ".join(lines[-n:])


# --- Writing zips ------------------------------------------------------------------------------------


def _zip_write_bytes(zf: zipfile.ZipFile, name: str, data: bytes, date_time: tuple, *, compress: bool) -> None:
    info = zipfile.ZipInfo(name, date_time=date_time)
    info.external_attr = 0o644 << 16
    info.compress_type = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    zf.writestr(info, data, compresslevel=9 if compress else None)


def _zip_write_file(zf: zipfile.ZipFile, name: str, path: Path, date_time: tuple, *, compress: bool) -> None:
    info = zipfile.ZipInfo(name, date_time=date_time)
    info.external_attr = 0o644 << 16
    info.compress_type = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    size = path.stat().st_size
    info.file_size = size
    with open(path, "rb") as src, zf.open(info, "w", force_zip64=size >= 2**31 - 1) as dst:
        while chunk := src.read(1 << 22):
            dst.write(chunk)


def zip_date_time(paths: list[Path]) -> tuple:
    """SOURCE_DATE_EPOCH, else the newest source file's time: same sources, same zip bytes."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    stamp = int(epoch) if epoch else int(max(p.stat().st_mtime for p in paths))
    return max(time.gmtime(stamp)[:6], (1980, 1, 1, 0, 0, 0))


def write_extension_zip(out: Path, manifest_text: str, files: list[tuple[Path, str]],
                        wheels: list[Path], date_time: tuple) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name("." + out.name + ".part")
    try:
        with zipfile.ZipFile(tmp, "w") as zf:
            _zip_write_bytes(zf, "blender_manifest.toml", manifest_text.encode("utf-8"), date_time, compress=True)
            for path, rel in files:
                _zip_write_file(zf, rel, path, date_time, compress=True)
            for w in wheels:
                # Wheels are zips already: stored, as Blender's own builder does.
                _zip_write_file(zf, f"wheels/{w.name}", w, date_time, compress=False)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()


# --- Validating zips ----------------------------------------------------------------------------------


@dataclass
class ZipReport:
    path: Path
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    manifest: dict = field(default_factory=dict)
    files: list[tuple[str, int]] = field(default_factory=list)  # (name, uncompressed size)
    size: int = 0


def validate_zip(path: Path, *, max_file_mb: float = 250.0, expect_platforms=...) -> ZipReport:
    rep = ZipReport(path)
    rep.size = path.stat().st_size
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile as exc:
        rep.errors.append(f"not a zip file: {exc}")
        return rep
    with zf:
        infos = zf.infolist()
        names = {i.filename for i in infos if not i.is_dir()}
        rep.files = [(i.filename, i.file_size) for i in infos if not i.is_dir()]
        if bad := zf.testzip():
            rep.errors.append(f"corrupt member {bad}")
        for info in infos:
            n = info.filename
            if "\\" in n or n.startswith("/") or re.match(r"[A-Za-z]:", n) or ".." in n.split("/"):
                rep.errors.append(f"unsafe path in zip: {n!r}")
            parts = n.rstrip("/").split("/")
            if "__pycache__" in parts or n.endswith((".pyc", ".pyo")):
                rep.errors.append(f"compiled Python in zip: {n}")
            if any(p.startswith(".") for p in parts):
                rep.errors.append(f"hidden file in zip: {n}")
            if info.file_size > max_file_mb * 2**20:
                rep.errors.append(f"{n} is {human(info.file_size)}, over the {max_file_mb:g} MB per-file limit")
            if n.endswith(".whl") and info.compress_type != zipfile.ZIP_STORED:
                rep.warnings.append(f"{n} is compressed (wheels are normally stored)")
            if not n.endswith(".whl") and info.file_size > 2 * 2**20:
                rep.warnings.append(f"{n} is {human(info.file_size)}: unusually large for an add-on source file")
        if "blender_manifest.toml" not in names:
            rep.errors.append("blender_manifest.toml is not at the zip root")
            return rep
        if "__init__.py" not in names:
            rep.errors.append("__init__.py is not at the zip root (the zip root must be the add-on package)")
        try:
            rep.manifest = tomllib.loads(zf.read("blender_manifest.toml").decode("utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            rep.errors.append(f"blender_manifest.toml does not parse: {exc}")
            return rep
        if "generated" in rep.manifest.get("build", {}):
            rep.errors.append("[build.generated] is reserved for Blender's own builder")
        rep.errors += validate_manifest(rep.manifest, zip_names=names, expect_platforms=expect_platforms)
        if "__init__.py" in names:
            errs, warns = addon_init_findings(zf.read("__init__.py").decode("utf-8", "replace"))
            rep.errors += errs
            rep.warnings += warns
        # Wheels: well-formed, ins_core inside, every hard dependency bundled.
        with tempfile.TemporaryDirectory() as tmp:
            extracted = []
            for w in rep.manifest.get("wheels", []):
                name = w[2:] if isinstance(w, str) else ""
                if name not in names:
                    continue
                target = Path(tmp) / Path(name).name
                with zf.open(name) as src, open(target, "wb") as dst:
                    while chunk := src.read(1 << 22):
                        dst.write(chunk)
                try:
                    wheel_metadata(target)
                except (BuildError, zipfile.BadZipFile) as exc:
                    rep.errors.append(f"{name}: not a valid wheel ({exc})")
                    continue
                extracted.append(target)
            for p in extracted:
                if normalize_name(parse_wheel_filename(p.name).dist) == "torch":
                    with zipfile.ZipFile(p) as tz:
                        gpu = [n for n in tz.namelist() if RE_GPU_LIB.search(n)]
                    if gpu:
                        rep.errors.append(f"{p.name} is a GPU build of torch (has {gpu[0]}); bundle the CPU build")
            core = [p for p in extracted if normalize_name(parse_wheel_filename(p.name).dist) == "ins-core"]
            if len(core) != 1:
                rep.errors.append(f"expected one ins_core wheel, found {len(core)}")
            else:
                with zipfile.ZipFile(core[0]) as cz:
                    cnames = set(cz.namelist())
                if "ins_core/__init__.py" not in cnames:
                    rep.errors.append("the ins_core wheel has no ins_core/__init__.py")
                if "ins_core/worker.py" not in cnames:
                    rep.warnings.append("ins_core/worker.py is not in the ins_core wheel yet: `python -m ins_core.worker` cannot run")
                if f"ins_core/{VGG_WEIGHTS}" not in cnames:
                    rep.errors.append(f"the ins_core wheel has no ins_core/{VGG_WEIGHTS}: stylization would run without the loss network")
            platforms = rep.manifest.get("platforms")
            if platforms and len(platforms) == 1:
                problems, note = unmet_requirements(extracted, platforms[0])
                rep.errors += problems
                if note:
                    rep.notes.append(note)
            mac = [m for p in extracted if (m := macos_min_of(parse_wheel_filename(p.name)))]
            if mac:
                rep.notes.append("needs macOS >= {}.{} (from the wheels' platform tags)".format(*max(mac)))
    return rep


def find_blender_validator(blender: str | None) -> tuple[list[str] | None, str]:
    """A command prefix that validates a zip with Blender's own code, and what it is."""
    if blender:
        return [blender, "--command", "extension", "validate"], f"blender --command extension validate ({blender})"
    try:
        spec = importlib.util.find_spec("bpy")  # finds the module without importing (loading) it
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        return None, "Blender's validator not found (no bpy module, no --blender): our own checks only"
    base = Path(list(spec.submodule_search_locations)[0])
    clis = sorted(base.glob("*/scripts/addons_core/bl_pkg/cli/blender_ext.py"))
    if not clis:
        return None, "bpy found but not its bl_pkg/cli/blender_ext.py: our own checks only"
    cli = clis[-1]
    cmd = [sys.executable, str(cli), "validate"]
    tags = cli.parents[3] / "modules" / "_bpy_internal" / "extensions" / "tags.py"
    if tags.is_file():
        cmd += ["--valid-tags", str(tags)]
    return cmd, f"Blender's blender_ext.py validate ({cli.relative_to(base.parent)})"


def run_blender_validator(cmd: list[str], zip_path: Path) -> tuple[bool, str]:
    res = subprocess.run([*cmd, str(zip_path)], capture_output=True, text=True, timeout=300)
    return res.returncode == 0, (res.stdout + res.stderr).strip()


def print_report(rep: ZipReport, plan_notes: list[str] | None = None) -> None:
    print(f"\n== {rep.path}  ({human(rep.size)}, {len(rep.files)} files)")
    m = rep.manifest
    if m:
        print(f"   id={m.get('id')} version={m.get('version')} platforms={m.get('platforms', 'all')}")
    addon = [(n, s) for n, s in rep.files if not n.startswith("wheels/")]
    wheels = [(n, s) for n, s in rep.files if n.startswith("wheels/")]
    print(f"   add-on files ({len(addon)}, {human(sum(s for _, s in addon))}): "
          + ", ".join(n for n, _ in addon))
    print(f"   wheels ({len(wheels)}, {human(sum(s for _, s in wheels))}):")
    for n, s in sorted(wheels, key=lambda x: -x[1]):
        print(f"     {human(s):>10}  {n[len('wheels/'):]}")
    for note in (plan_notes or []) + rep.notes:
        print(f"   note: {note}")
    for w in rep.warnings:
        print(f"   WARNING: {w}")
    for e in rep.errors:
        print(f"   ERROR: {e}")
    print("   valid" if not rep.errors else f"   INVALID ({len(rep.errors)} errors)")


# --- Main ---------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--platform", action="append", choices=sorted(PLATFORMS),
                    help="full zip(s) to build (repeatable); default: the manifest's platforms")
    ap.add_argument("--light", action="store_true", help="build only the light zip (no torch, every platform)")
    ap.add_argument("--variant", choices=("full", "light", "both"), default=None,
                    help="which zips (default: both; with --platform: full)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default: dist/)")
    ap.add_argument("--wheels-cache", type=Path, default=DEFAULT_CACHE,
                    help="downloaded wheels are kept and looked up here (default: .whl/)")
    ap.add_argument("--offline", action="store_true", help="never run pip; use the cache and --torch-wheel only")
    ap.add_argument("--torch-wheel", type=Path, action="append", default=[],
                    help="a torch wheel file, or a folder holding torch wheels (repeatable)")
    ap.add_argument("--torch-index-url", default=None,
                    help=f"download torch from this index (e.g. {TORCH_CPU_INDEX})")
    ap.add_argument("--no-numpy", action="store_true", help="do not bundle numpy (use Blender's)")
    ap.add_argument("--blender", default=None, help="a Blender binary for `--command extension validate`")
    ap.add_argument("--max-file-mb", type=float, default=250.0, help="largest file allowed in a zip (MB)")
    ap.add_argument("--validate", type=Path, nargs="+", metavar="ZIP", help="only validate existing zips")
    args = ap.parse_args(argv)
    if args.light:
        if args.variant not in (None, "light"):
            ap.error("--light conflicts with --variant " + args.variant)
        args.variant = "light"
    if args.variant is None:
        args.variant = "full" if args.platform else "both"
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    t_start = time.perf_counter()
    validator, validator_desc = find_blender_validator(args.blender)

    if args.validate:
        failed = 0
        for z in args.validate:
            rep = validate_zip(z, max_file_mb=args.max_file_mb)
            if validator and not rep.errors:
                ok, text = run_blender_validator(validator, z)
                rep.notes.append(f"{validator_desc}: {text.splitlines()[-1] if text else ''}")
                if not ok:
                    rep.errors.append(f"Blender's validator rejected it: {text}")
            print_report(rep)
            failed += bool(rep.errors)
        if not validator:
            print(f"\n{validator_desc}")
        return 1 if failed else 0

    source_text = SOURCE_MANIFEST.read_text(encoding="utf-8")
    try:
        source = tomllib.loads(source_text)
    except tomllib.TOMLDecodeError as exc:
        print(f"error: blender_manifest.toml does not parse: {exc}", file=sys.stderr)
        return 1
    problems = validate_manifest({k: v for k, v in source.items() if k != "wheels"})
    if "wheels" in source:
        problems.append("the source manifest must not list wheels: build_addon.py fills them per zip")
    project = read_pyproject()
    problems += check_pins_against_pyproject(project)
    if core_version() != source["version"] or project.get("project", {}).get("version") != source["version"]:
        print(f"warning: versions differ: manifest {source['version']}, ins_core {core_version()}, "
              f"pyproject {project.get('project', {}).get('version')}")
    if problems:
        for p in problems:
            print(f"error: {p}", file=sys.stderr)
        return 1

    patterns = list(source.get("build", {}).get("paths_exclude_pattern", []))
    try:
        files = addon_files(patterns)
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    date_time = zip_date_time([p for p, _ in files] + [SOURCE_MANIFEST] + sorted(CORE_DIR.rglob("*.py")))
    platforms = args.platform or list(source.get("platforms", []))
    base = f"{source['id']}-{source['version']}"
    results: list[tuple[str, Path | None, str]] = []  # (variant, zip, status)

    print(f"INS for Blender extension build: {source['id']} {source['version']}")
    print(f"  add-on files: {len(files)} from ins_blender/; wheels cache: {args.wheels_cache}"
          + ("; offline" if args.offline else ""))
    with tempfile.TemporaryDirectory() as tmp:
        core_wheel = build_core_wheel(Path(tmp), date_time)
        print(f"  built {core_wheel.name} ({human(core_wheel.stat().st_size)})")
        variants: list[tuple[str, str | None]] = []
        if args.variant in ("full", "both"):
            variants += [("full", p) for p in platforms]
        if args.variant in ("light", "both"):
            variants.append(("light", None))
        if args.variant == "light" and args.platform:
            print("  note: the light zip has no compiled wheels and installs on every platform; --platform ignored")

        for kind, platform in variants:
            label = f"{kind} {platform}" if platform else kind
            t0 = time.perf_counter()
            try:
                notes: list[str] = []
                if kind == "light":
                    wheels = [core_wheel]
                    zip_platforms = None
                    out = args.out / f"{base}-light.zip"
                else:
                    plan = plan_full(platform, cache=args.wheels_cache, torch_paths=args.torch_wheel,
                                     torch_index_url=args.torch_index_url, offline=args.offline,
                                     with_numpy=not args.no_numpy)
                    notes = plan.notes
                    if plan.missing:
                        raise BuildError(
                            f"{platform}: wheels not found{' (offline)' if args.offline else ''}: "
                            + ", ".join(plan.missing) + ("; " + "; ".join(notes) if notes else "")
                        )
                    wheels = [core_wheel] + plan.wheels
                    zip_platforms = [platform]
                    out = args.out / f"{base}-{platform.replace('-', '_')}.zip"
                manifest_text = render_manifest(
                    source_text, platforms=zip_platforms, wheels=[f"./wheels/{w.name}" for w in wheels])
                write_extension_zip(out, manifest_text, files, wheels, date_time)
                t_write = time.perf_counter() - t0
                rep = validate_zip(out, max_file_mb=args.max_file_mb, expect_platforms=zip_platforms)
                if validator and not rep.errors:
                    ok, text = run_blender_validator(validator, out)
                    rep.notes.append(f"{validator_desc}: {text.splitlines()[-1] if text else 'no output'}")
                    if not ok:
                        rep.errors.append(f"Blender's validator rejected it: {text}")
                rep.notes.append(f"written in {t_write:.1f} s, validated in {time.perf_counter() - t0 - t_write:.1f} s")
                print_report(rep, notes)
                if rep.errors:
                    results.append((label, out, "INVALID"))
                else:
                    results.append((label, out, "ok"))
            except BuildError as exc:
                print(f"\n== {label}: NOT BUILT\n   {exc}")
                results.append((label, None, "not built"))

    if not validator:
        print(f"\n{validator_desc}")
    print(f"\nSummary ({time.perf_counter() - t_start:.1f} s):")
    for label, out, status in results:
        size = f"{human(out.stat().st_size)}" if out and out.exists() else "-"
        print(f"  {status:>9}  {label:<20} {size:>10}  {out or ''}")
    return 0 if all(s == "ok" for _, _, s in results) else 1


if __name__ == "__main__":
    sys.exit(main())
