"""Choosing the torch device: auto = cuda, then mps, then cpu."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from .errors import InputError

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def resolve_device(name: str) -> torch.device:
    if name not in DEVICE_CHOICES:
        raise InputError(f"Device '{name}' is not known; use one of {', '.join(DEVICE_CHOICES)}.")
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("Device 'cuda' was asked for but this torch has no CUDA GPU; install a CUDA build of torch (see README) or use --device cpu.")
    if name == "mps" and not (getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()):
        raise InputError("Device 'mps' was asked for but Apple's Metal backend is not available here; use --device cpu.")
    return torch.device(name)


@contextmanager
def subnormals_flushed() -> Iterator[None]:
    """Treat float32 subnormals (below 1.2e-38) as zero on this thread while the block runs.

    NeuS's sharp softplus (beta 100) and the exponentials of empty space produce them by the
    million, and the CPU takes a slow path for each: softplus ran 8x slower, a fifth of an SDF
    frame. Values that small change no picture. Never process-wide: scipy's cKDTree crashes
    (segmentation fault) with the flag on, so it is cleared again on the way out (torch's default).
    """
    import numpy

    # numpy measures each float type's limits once, on first use, and warns when it finds the
    # smallest subnormal flushed to zero: measure them outside.
    for kind in (numpy.float16, numpy.float32, numpy.float64):
        numpy.finfo(kind)
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


def hardware_description(device: torch.device) -> dict:
    """What a benchmark figure ran on."""
    import os
    import platform

    info = {"device": str(device), "torch": torch.__version__, "cpu_threads": torch.get_num_threads(), "cpu_cores": os.cpu_count()}
    try:
        with open("/proc/cpuinfo") as handle:
            info["cpu"] = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), platform.processor())
    except OSError:
        info["cpu"] = platform.processor()
    # Machines of one model name differ in what they compute with: the vector instructions torch
    # uses (AVX2, AVX512) and whether bfloat16 is native, which sets the loss network's precision
    # ("auto") and so a stylization step's time several-fold.
    from .losses.loss_precision import native_bfloat16

    info["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    info["cpu_bfloat16"] = native_bfloat16(torch.device("cpu"))
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info
