"""A Python function ``module:function`` (or ``path/to/file.py:function``) as an encoder."""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

import numpy as np


def load_callable(target: str):
    """Import ``target`` and return it as ``images -> tuple of arrays``."""
    module_name, sep, attribute = target.rpartition(":")
    if not sep or not module_name or not attribute:
        raise ValueError(f"--callable takes MODULE:FUNCTION or FILE.py:FUNCTION, got {target!r}")
    if module_name.endswith(".py"):
        path = Path(module_name)
        if not path.exists():
            raise FileNotFoundError(f"no Python file at {path} (from --callable {target})")
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(module_name)
        except ImportError as error:
            raise ValueError(f"cannot import {module_name!r} for --callable {target}: {error}") from None
    function = getattr(module, attribute, None)
    if function is None or not callable(function):
        raise ValueError(f"{module_name} has no callable {attribute!r} (from --callable {target})")

    def run(images: np.ndarray) -> tuple[np.ndarray, ...]:
        output = function(images)
        outputs = output if isinstance(output, tuple | list) else (output,)
        return tuple(o.detach().cpu().numpy() if hasattr(o, "detach") else np.asarray(o) for o in outputs)

    run.deterministic = getattr(function, "deterministic", None)  # a declaration the cache honours
    return run
