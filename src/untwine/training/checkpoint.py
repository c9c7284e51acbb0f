"""Checkpoints: everything needed to continue a run bit-identically, written atomically.

A checkpoint holds the step, the model and optimizer states, the torch generator that draws the
reparameterisation noise and FactorVAE permutations, and the data stream's numpy generator state.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from untwine.utils.io import atomic_write_bytes

CHECKPOINT_NAME = "checkpoint.pt"


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}; the run has not reached its first checkpoint yet")
    try:
        # weights_only=False: the file also holds numpy generator states (plain dicts of ints).
        return torch.load(path, map_location=map_location, weights_only=False)
    except Exception as error:  # truncated or foreign file
        raise ValueError(f"checkpoint {path} cannot be read ({error}); it may be corrupt") from error
