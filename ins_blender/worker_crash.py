"""One sentence for a worker that stopped without a result: torch or another package missing
from the worker Python (with what to do), a signal, an exit status, and the log's last line.
No bpy, no subprocess.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

from .worker_launch import PREFERENCES_HINT, bundled_python, bundled_torch_advice, same_file


def missing_module(lines: list[str]) -> str | None:
    for line in reversed(lines):
        marker = "No module named "
        if marker in line:
            name = line.split(marker, 1)[1].strip().strip("'\"")
            return name.split(".")[0] if name.startswith(("torch", "numpy", "PIL")) else name
    return None


def log_tail(path: Path, n: int = 40) -> list[str]:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 16384))
            text = f.read().decode("utf-8", errors="replace")
    except OSError:
        return []
    return [line for line in text.splitlines() if line.strip()][-n:]


def crash_report(python: str, label: str, stderr_path: Path, stray: list[str], returncode: int | None) -> str:
    """The sentence for the `label` ("worker", "render server", ...) run by `python` that stopped
    with `returncode`, from the end of its stderr log and the `stray` lines it printed."""
    lines = log_tail(stderr_path) + list(stray)
    missing = missing_module(lines)
    if missing == "torch" and same_file(python, bundled_python()):
        return f"{bundled_torch_advice()} (details in the log '{stderr_path}')."
    if missing == "torch":
        return (f"The worker Python '{python}' has no torch; install torch into it "
                f"(pip install torch) or choose a Python with torch in {PREFERENCES_HINT} "
                f"(details in the log '{stderr_path}').")
    if missing is not None:
        return (f"The worker Python '{python}' cannot import '{missing}'; install the INS "
                f"extension with its bundled packages or choose a Python that has them in "
                f"{PREFERENCES_HINT} (details in the log '{stderr_path}').")
    how = "without a result" if returncode == 0 else f"with exit status {returncode}"
    if returncode is not None and returncode < 0:
        try:
            how = f"killed by signal {signal.Signals(-returncode).name}"
        except ValueError:
            how = f"killed by signal {-returncode}"
    errors = [line.strip() for line in log_tail(stderr_path) if not line.startswith("=== ")]
    last = (errors or [line.strip() for line in stray] or [""])[-1]
    detail = f" ({last[:200]})" if last else ""
    return f"The {label} stopped unexpectedly {how}{detail}; see the log '{stderr_path}'."
