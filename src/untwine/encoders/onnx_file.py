"""An ONNX encoder file as a batch function ``images -> tuple of arrays``, run by onnxruntime."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def load_onnx(path: Path):
    """An onnxruntime CPU session of the model at ``path``, fed on its first input."""
    try:
        import onnxruntime
    except ImportError:
        raise ValueError(
            "scoring an ONNX encoder needs onnxruntime: pip install 'untwine[onnx]' (or onnxruntime)"
        ) from None
    try:
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own exception types for unreadable models
        raise ValueError(
            f"{path} is not an ONNX model onnxruntime can load ({type(error).__name__}: "
            f"{str(error).splitlines()[0][:200]}); export it with torch.onnx.export(model, example, path)"
        ) from None
    inputs = session.get_inputs()
    if len(inputs) != 1:
        raise ValueError(
            f"{path} takes {len(inputs)} inputs ({[i.name for i in inputs]}); an encoder takes one"
        )
    name = inputs[0].name

    def run(images: np.ndarray) -> tuple[np.ndarray, ...]:
        return tuple(
            np.asarray(o) for o in session.run(None, {name: np.ascontiguousarray(images, dtype=np.float32)})
        )

    return run
