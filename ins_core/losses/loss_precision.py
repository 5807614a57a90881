"""What the loss network computes in: bfloat16 where the hardware has it natively, else float32."""

from __future__ import annotations

import re
from pathlib import Path

import torch

from ins_core.errors import InputError

LOSS_PRECISIONS = ("auto", "float32", "bfloat16")
_CPU_BF16_FLAGS = re.compile(r"\b(avx512_bf16|amx_bf16)\b")


def native_bfloat16(device: torch.device) -> bool:
    """Whether `device` runs bfloat16 convolutions in hardware: a CUDA GPU that supports it, or a
    CPU with AVX512-BF16 or AMX (read from /proc/cpuinfo; elsewhere the answer is no, since
    emulated bfloat16 is slower than float32)."""
    if device.type == "cuda":  # Ampere and later have bfloat16 tensor cores; earlier GPUs emulate it
        return torch.cuda.get_device_capability(device)[0] >= 8
    if device.type != "cpu":
        return False
    try:
        return cpu_flags_have_bfloat16(Path("/proc/cpuinfo").read_text(errors="replace"))
    except OSError:
        return False


def cpu_flags_have_bfloat16(cpuinfo: str) -> bool:
    """Whether a /proc/cpuinfo text lists bfloat16 instructions (AVX512-BF16 or AMX)."""
    return bool(_CPU_BF16_FLAGS.search(cpuinfo))


def loss_network_dtype(precision: str, device: torch.device) -> torch.dtype:
    """The dtype the loss network computes in for a precision setting ("auto": bfloat16 where
    `native_bfloat16`, else float32)."""
    if precision not in LOSS_PRECISIONS:
        raise InputError(f"The loss network's precision '{precision}' is not one of {', '.join(LOSS_PRECISIONS)}.")
    if precision == "auto":
        return torch.bfloat16 if native_bfloat16(device) else torch.float32
    return torch.bfloat16 if precision == "bfloat16" else torch.float32


def resolved_loss_precision(precision: str, device: torch.device) -> str:
    """"float32" or "bfloat16": what `precision` ("auto" included) means on `device`, to record in a
    run so that a resumed run computes the same way."""
    return "bfloat16" if loss_network_dtype(precision, device) == torch.bfloat16 else "float32"


def emulated_bfloat16_note(precision: str, device: torch.device) -> str | None:
    """A note for a run whose loss network computes in bfloat16 (`precision` as resolved) on a
    device that only emulates it, else None: asked for on such a CPU, each pass takes several
    times float32's (6x at 192 px on a 2-core AVX2 EPYC)."""
    if precision != "bfloat16" or native_bfloat16(device):
        return None
    return (f"the loss network computes in bfloat16, which this {device.type.upper()} emulates: several times slower than "
            "float32 (--loss-precision auto takes float32 here).")
