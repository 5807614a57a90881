"""Ask a Python whether it can be the worker: torch (and a GPU), ins_core, numpy and Pillow."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field

from .worker_launch import PREFERENCES_HINT, WorkerError, bundled_torch_advice, ins_core_root, resolve_python, worker_env

_CHECK_CODE = r"""
import json, sys
out = {"python": sys.version.split()[0], "executable": sys.executable}
try:
    torch = __import__("torch")  # in the child Python, never in Blender
except Exception as e:
    out["error"] = "torch"; out["detail"] = f"{type(e).__name__}: {e}"
else:
    out["torch"] = torch.__version__
    out["cuda"] = bool(torch.cuda.is_available())
    out["cuda_device"] = torch.cuda.get_device_name(0) if out["cuda"] else None
    mps = getattr(torch.backends, "mps", None)
    out["mps"] = bool(mps is not None and mps.is_available())
    try:
        import ins_core, ins_core.job
        out["ins_core"] = getattr(ins_core, "__version__", "?")
    except Exception as e:
        out["error"] = "ins_core"; out["detail"] = f"{type(e).__name__}: {e}"
    else:
        for name in ("numpy", "PIL"):
            try:
                __import__(name)
            except Exception as e:
                out["error"] = "module"; out["module"] = name; out["detail"] = f"{type(e).__name__}: {e}"
                break
print("INS_CHECK " + json.dumps(out), flush=True)
"""


@dataclass
class WorkerCheck:
    ok: bool
    message: str
    torch_version: str | None = None
    cuda: bool = False
    details: dict = field(default_factory=dict)


def check_worker(setting: str | None, timeout: float = 120.0) -> WorkerCheck:
    """Run `PYTHON -c "import torch, ins_core ..."` (no shell, with a timeout) and explain."""
    try:
        python, bundled = resolve_python(setting)
    except WorkerError as error:
        return WorkerCheck(False, str(error))
    try:
        # The same path order as the worker: an external Python's own packages first.
        code = _CHECK_CODE if bundled else f"import sys; sys.path.append({ins_core_root()!r})\n" + _CHECK_CODE
        done = subprocess.run([python, "-c", code], capture_output=True, timeout=timeout,
                              env=worker_env(bundled), stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        return WorkerCheck(False, f"The worker Python '{python}' does not exist; choose a Python with torch in {PREFERENCES_HINT}.")
    except subprocess.TimeoutExpired:
        return WorkerCheck(False, f"The worker Python '{python}' did not answer within {timeout:g} s; try again, or choose another Python in {PREFERENCES_HINT}.")
    except OSError as error:
        return WorkerCheck(False, f"Cannot run the worker Python '{python}' ({error.strerror or error}); choose a Python with torch in {PREFERENCES_HINT}.")
    out = None
    for line in done.stdout.decode("utf-8", "replace").splitlines():
        if line.startswith("INS_CHECK "):
            try:
                out = json.loads(line[len("INS_CHECK "):])
            except ValueError:
                pass
    if out is None:
        last = (done.stderr.decode("utf-8", "replace").strip().splitlines() or ["no output"])[-1]
        return WorkerCheck(False, f"The worker Python '{python}' failed to run (exit status {done.returncode}: {last[:200]}); choose a working Python with torch in {PREFERENCES_HINT}.")
    error = out.get("error")
    if error == "torch":
        if bundled:
            return WorkerCheck(False, f"{bundled_torch_advice()}.", details=out)
        return WorkerCheck(False, f"The worker Python '{python}' has no torch: install it there (pip install torch), or choose a Python with torch in {PREFERENCES_HINT}.", details=out)
    if error == "ins_core":
        return WorkerCheck(False, f"The worker Python '{python}' has torch {out.get('torch')} but cannot import ins_core ({out.get('detail')}); reinstall the INS extension.", out.get("torch"), details=out)
    if error == "module":
        return WorkerCheck(False, f"The worker Python '{python}' lacks the package '{out.get('module')}'; install it there (pip install {'pillow' if out.get('module') == 'PIL' else out.get('module')}).", out.get("torch"), details=out)
    if out.get("cuda"):
        device = f"CUDA available ({out.get('cuda_device')})"
    elif out.get("mps"):
        device = "Apple GPU (MPS) available"
    else:
        device = "no GPU: runs on the CPU"
    return WorkerCheck(True, f"Worker OK: Python {out.get('python')}, torch {out.get('torch')}, {device}.",
                       out.get("torch"), bool(out.get("cuda")), details=out)
