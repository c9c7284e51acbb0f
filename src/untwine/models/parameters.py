"""Typed model parameters: each ``model.<name>`` has a type, a default and a valid range.

Every model class lists its parameters as :class:`Param` records (``param_specs``); its ``defaults`` are
derived from them, the model table shows them in ``untwine train --help``, and :func:`check_values`
refuses a bad value before anything is built or trained, in one line naming the key and what it takes::

    model.beta=-1 is not allowed: model.beta takes a number >= 0, got -1

Values are checked, never converted: what the user gave is what ``config.json`` stores.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Param", "check_values", "defaults_of"]


@dataclass(frozen=True)
class Param:
    """One model parameter.

    ``kind``: ``float`` (any finite real number, ints included), ``int`` (an integer: ``1e5`` is a float
    and is refused, write ``100000``), ``bool`` or ``str``.  ``low``/``high``: inclusive bounds of a number, except
    that ``low_open`` excludes ``low``.  ``choices``: the allowed words of a ``str`` parameter, or words a
    number parameter also takes (``embed_sigma=learn``).  ``nullable``: ``null`` (None) is allowed.
    """

    name: str
    default: Any
    kind: type
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    choices: tuple[str, ...] = ()
    nullable: bool = False

    def allowed(self) -> str:
        """What the parameter takes, in words (for errors and ``--help``)."""
        if self.kind is bool:
            text = "true or false"
        elif self.kind is str:
            text = "one of " + ", ".join(self.choices)
        else:
            text = "an integer" if self.kind is int else "a number"
            bounds = []
            if self.low is not None:
                bounds.append(f"{'>' if self.low_open else '>='} {_number_text(self.low)}")
            if self.high is not None:
                bounds.append(f"<= {_number_text(self.high)}")
            if bounds:
                text += " " + " and ".join(bounds)
            if self.choices:
                text += " or " + " or ".join(self.choices)
        return text + (" or null" if self.nullable else "")

    def accepts(self, value: Any) -> bool:
        if value is None:
            return self.nullable
        if self.kind is bool:
            return isinstance(value, bool)
        if isinstance(value, str):
            return value in self.choices
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if (self.kind is int and not isinstance(value, int)) or not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or value <= self.high


def _number_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def defaults_of(parameters: Iterable[Param]) -> dict[str, Any]:
    """``{name: default}`` of ``parameters`` (a model class's ``defaults``)."""
    return {p.name: p.default for p in parameters}


def check_values(
    model: str, parameters: Iterable[Param], values: Mapping[str, Any], prefix: str = "model."
) -> None:
    """Refuse unknown names and out-of-range values of ``model``'s parameters (ValueError naming the key).

    ``prefix``: how the keys are written where they came from (``model.beta`` in a config, ``beta`` as a
    keyword argument of ``build_model``).
    """
    specs = {p.name: p for p in parameters}
    unknown = sorted(set(values) - set(specs))
    if unknown:
        raise ValueError(
            f"unknown parameter(s) {', '.join(prefix + k for k in unknown)} for model {model!r}; valid: "
            f"{', '.join(prefix + k for k in specs) or 'none'}"
        )
    for name, value in values.items():
        spec = specs[name]
        if not spec.accepts(value):
            shown = "null" if value is None else repr(value)
            raise ValueError(
                f"{prefix}{name}={shown} is not allowed for model {model!r}: {prefix}{name} takes {spec.allowed()}"
            )
