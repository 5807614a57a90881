"""Choosing the torch device: auto = cuda, then mps, then cpu."""

from __future__ import annotations

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
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info
