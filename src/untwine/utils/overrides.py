"""``key=value`` overrides, the one syntax of every setting on the command line.

The same parser serves ``untwine train model.beta=4``, ``untwine study run --set learning_rate=5e-4`` and
``--metric-param dci.num_train=2000``: the text after ``=`` is read as JSON where it is JSON (numbers,
lists, ``null``), ``true``/``false`` in any case as booleans, and anything else stays a string.
"""

from __future__ import annotations

import json
from typing import Any


def split_override(text: str) -> tuple[str, str]:
    """``'model.beta = 4'`` -> ``('model.beta', '4')``; an item without ``=`` is an error naming it."""
    if "=" not in text:
        raise ValueError(f"overrides look like key=value, got {text!r}")
    key, value = text.split("=", 1)
    return key.strip(), value.strip()


def parse_value(value: Any) -> Any:
    """``'4'`` -> 4, ``'1e-4'`` -> 0.0001, ``'true'`` -> True, ``'[1,2]'`` -> [1, 2], other text stays."""
    if not isinstance(value, str):
        return value
    lowered = value.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        try:
            return float(value)
        except ValueError:
            return value


def parse_override(text: str) -> tuple[str, Any]:
    """``'dci.num_train=2000'`` -> ``('dci.num_train', 2000)``."""
    key, value = split_override(text)
    return key, parse_value(value)
