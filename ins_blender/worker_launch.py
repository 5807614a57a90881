"""Which Python runs the worker, with which paths and which command line (no bpy, no torch).

The Worker Python preference names an interpreter (empty: Blender's own). Blender's own Python
gets the whole current sys.path (the extension's bundled wheels live there); an external Python
keeps its own packages first and only appends ins_core's folder, so a user's CUDA torch wins.
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

WORKER_MODULE = "ins_core.worker"  # what `python -m` runs; tests point it at a stand-in
EXTRA_PATHS: list[str] = []  # prepended to the worker's PYTHONPATH (tests, development)
PREFERENCES_HINT = "Preferences > Add-ons > INS for Blender > Worker Python"
# Python versions each platform's full extension zip bundles torch for (build_addon.py; Blender
# installs only the wheels of its own platform and Python). linux-x64 lacks 3.13: PyPI has no cp313
# CPU torch for Linux. macos-x64 has no full zip (no torch wheels after 2.2).
BUNDLED_TORCH_PYTHONS: dict[str, tuple[tuple[int, int], ...]] = {
    "linux-x64": ((3, 11),),
    "windows-x64": ((3, 11), (3, 13)),
    "macos-arm64": ((3, 11), (3, 13)),
}
PYTHON_BLENDERS = {(3, 11): "Blender 4.2 - 5.0", (3, 13): "Blender 5.1+"}  # the Python each embeds
MACHINES = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64"}  # platform.machine() -> Blender's names


class WorkerError(Exception):
    """The worker could not be started or used; the message is one sentence for the user."""


def bundled_python() -> str:
    """Blender's own Python (in module mode: the Python running bpy)."""
    return sys.executable


def resolve_python(setting: str | None) -> tuple[str, bool]:
    """(python executable, is_bundled) for the Worker Python preference (empty = bundled).

    Raises WorkerError when a chosen path is missing, a folder, or not executable.
    """
    text = (setting or "").strip()
    if not text:
        return bundled_python(), True
    path = Path(os.path.expanduser(text))
    if path.is_dir():
        for candidate in (path / "bin" / "python3", path / "bin" / "python", path / "python.exe",
                          path / "Scripts" / "python.exe", path / "python3", path / "python"):
            if candidate.is_file():
                path = candidate
                break
        else:
            raise WorkerError(f"The worker Python '{text}' is a folder without a Python in it; choose the python executable (with torch) in {PREFERENCES_HINT}, or leave it empty to use Blender's own.")
    if not path.exists():
        raise WorkerError(f"The worker Python '{text}' does not exist; choose a Python with torch in {PREFERENCES_HINT}, or leave it empty to use Blender's own.")
    if os.name != "nt" and not os.access(path, os.X_OK):
        raise WorkerError(f"The worker Python '{text}' is not executable; choose a Python with torch in {PREFERENCES_HINT}.")
    same = same_file(path, sys.executable)
    return str(path), same


def blender_platform() -> str:
    """This machine as Blender's extension platforms name it: linux-x64, windows-x64, macos-arm64..."""
    system = {"win32": "windows", "darwin": "macos"}.get(sys.platform, sys.platform)
    machine = platform.machine().lower()
    return f"{system}-{MACHINES.get(machine, machine)}"


def bundled_torch_advice(version: tuple[int, int] | None = None, where: str | None = None) -> str:
    """What to do when Blender's own Python (`version`, on platform `where`; default: the running
    one) cannot import torch: the full zips bundle torch only for some platforms and Pythons."""
    version = tuple(version or sys.version_info[:2])
    where = where or blender_platform()
    bundled = BUNDLED_TORCH_PYTHONS.get(where, ())
    worker_python = f"set {PREFERENCES_HINT} to a Python that has torch (pip install torch)"
    if not bundled:
        return f"The INS extension bundles torch for no Blender on {where}; {worker_python}"
    if version not in bundled:
        pythons = ", ".join(f"{major}.{minor} ({PYTHON_BLENDERS.get((major, minor), 'Blender')})"
                            for major, minor in bundled)
        return (f"Blender's own Python is {version[0]}.{version[1]}, and the INS extension bundles torch "
                f"on {where} only for Python {pythons}; {worker_python}")
    # torch is in the full zip for this Blender: the light zip, or a broken install of the full one.
    return (f"Blender's own Python has no torch: install the INS extension build that bundles torch (the "
            f"full {where} zip; if it is installed, reinstall it), or {worker_python}")


def same_file(a, b) -> bool:
    # Compare paths, not inodes: a venv's python is a symlink to the base interpreter, but only
    # the venv path gives the venv's packages.
    return os.path.normcase(os.path.abspath(a)) == os.path.normcase(os.path.abspath(b))


def ins_core_root() -> str:
    """The folder holding the `ins_core` package this add-on uses (the extension's copy)."""
    import ins_core

    return str(Path(ins_core.__file__).resolve().parent.parent)


def worker_env(bundled: bool = True, base: dict | None = None) -> dict[str, str]:
    """Environment for a worker: PYTHONPATH so that it imports this add-on's ins_core.

    For Blender's own Python the whole current sys.path travels too (the extension's bundled
    wheels live there). An external Python keeps its own packages first: ins_core's folder (which,
    in a full extension zip, also holds the bundled CPU torch) is only appended to its path by
    `worker_argv`, so the user's CUDA torch is the one imported.
    """
    env = dict(os.environ if base is None else base)
    paths = list(EXTRA_PATHS)
    if bundled:
        paths += [ins_core_root()] + [p for p in sys.path if p and os.path.isdir(p)]
    else:
        env.pop("PYTHONHOME", None)
    if env.get("PYTHONPATH"):
        paths += env["PYTHONPATH"].split(os.pathsep)
    seen, ordered = set(), []
    for p in paths:
        if p not in seen:
            seen.add(p)
            ordered.append(p)
    env["PYTHONPATH"] = os.pathsep.join(ordered)
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONIOENCODING"] = "utf-8"
    env.pop("PYTHONSTARTUP", None)
    return env


# Runs the worker module with ins_core's folder appended (not prepended) to sys.path.
_APPENDED_PATH_BOOTSTRAP = "import runpy, sys; sys.path.append(sys.argv.pop(1)); runpy.run_module({module!r}, run_name='__main__', alter_sys=True)"


def worker_argv(python: str, job_dir, *, serve: bool = False, bundled: bool = True) -> list[str]:
    if bundled:
        argv = [python, "-m", WORKER_MODULE, str(Path(job_dir).resolve())]
    else:
        argv = [python, "-c", _APPENDED_PATH_BOOTSTRAP.format(module=WORKER_MODULE), ins_core_root(), str(Path(job_dir).resolve())]
    if serve:
        argv.append("--serve")
    return argv
