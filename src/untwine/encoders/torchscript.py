"""A TorchScript encoder file as a batch function ``images -> tuple of arrays``."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def load_torchscript(path: Path, device: str = "cpu"):
    """The module saved at ``path`` (``torch.jit.save``), in eval mode, as ``images -> outputs``."""
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    from untwine.training.representation import _torchscript_deprecation_ignored

    try:
        with _torchscript_deprecation_ignored():
            module = torch.jit.load(str(path), map_location=device).eval()
    except Exception as error:  # torch raises RuntimeError or a zip error for any non-TorchScript file
        raise ValueError(
            f"{path} is not a TorchScript file ({type(error).__name__}: {str(error).splitlines()[0]}); "
            "save the encoder with torch.jit.save(torch.jit.trace(model, example), path)"
        ) from None

    @torch.inference_mode()
    def run(images: np.ndarray) -> tuple[np.ndarray, ...]:
        output = module(torch.from_numpy(np.ascontiguousarray(images)).to(device))
        outputs = output if isinstance(output, tuple | list) else (output,)
        return tuple(
            o.detach().float().cpu().numpy() if hasattr(o, "detach") else np.asarray(o) for o in outputs
        )

    return run
