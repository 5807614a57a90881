"""Checkpoints: written atomically, read back with weights_only=True (nothing is unpickled)."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..errors import InputError


def save_checkpoint(path: Path, state: dict) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over the old checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as handle:
            torch.save(state, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()


def load_checkpoint(path: Path, device: torch.device | str = "cpu") -> dict:
    if not path.is_file():
        raise InputError(f"Checkpoint '{path}' does not exist; train the run first (python -m ins_core fit ...).")
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except Exception as error:  # torch raises many kinds for a damaged or foreign file
        raise InputError(f"Checkpoint '{path}' cannot be read ({type(error).__name__}); delete it and train again.") from None
