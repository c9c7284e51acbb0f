"""What each metric declares to the runner: :class:`MetricSpec`.

A metric module (``mig.py``, ``dci.py``, ...) defines its ``SPEC`` next to the metric itself: canonical
name, aliases, parameters (disentanglement_lib's defaults, the allowed values, a one-line doc each),
what it samples (the runner's shared train/test sample and/or its own dataset-layer draws, and how many
images those draws request), the classifier fits it plans on the :class:`~untwine.metrics._estimators.
FitEngine`, how it computes its values from the :class:`~untwine.metrics.context.EvaluationContext`,
and its place in the run order.  :mod:`untwine.metrics.registry` lists the specs; the runner only
calls them.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from untwine.metrics.context import EvaluationContext


def _is_int(value) -> bool:
    return not isinstance(value, bool | np.bool_) and isinstance(value, numbers.Integral)


def _is_real(value) -> bool:
    return not isinstance(value, bool | np.bool_) and isinstance(value, numbers.Real) and np.isfinite(value)


@dataclass(frozen=True)
class Allowed:
    """The values a parameter accepts: a test, and the words that describe them in an error."""

    description: str
    test: Callable[[Any], bool]


def int_at_least(minimum: int) -> Allowed:
    return Allowed(f"an integer >= {minimum}", lambda v: _is_int(v) and v >= minimum)


POSITIVE_INT = Allowed("a positive integer", lambda v: _is_int(v) and v >= 1)
POSITIVE_INTS = Allowed(
    "a non-empty list of positive integers",
    lambda v: isinstance(v, list | tuple) and len(v) > 0 and all(_is_int(x) and x >= 1 for x in v),
)
QUANTILE = Allowed("a number in (0, 1]", lambda v: _is_real(v) and 0 < v <= 1)
NON_NEGATIVE = Allowed("a number >= 0", lambda v: _is_real(v) and v >= 0)
BOOLEAN = Allowed("true or false", lambda v: isinstance(v, bool | np.bool_))


@dataclass(frozen=True)
class Parameter:
    default: Any
    allowed: Allowed
    doc: str


@dataclass
class MetricOutput:
    """What a metric's ``compute`` returns: dlib's values, the matrices behind them, and the classifier
    fits they came from (their CPU time and warnings go into the result)."""

    values: dict
    matrices: dict = field(default_factory=dict)
    fits: list | None = None  # FitResults; None: the metric fits nothing on the engine


@dataclass(frozen=True)
class MetricSpec:
    """One metric as the runner sees it.

    ``compute(params, ctx)`` returns a :class:`MetricOutput`.  ``shared_sample``: the metric reads the
    runner's shared train/test sample (``num_train``/``num_test`` parameters size it).
    ``image_requests(params)``: images its own dataset-layer draws request, counted to decide whether
    the factor grid is encoded up front (None: none counted).  ``plan_fits(params, ctx)``: queue its
    classifier fits on ``ctx.engine`` before any metric computes (None: it fits none there).
    ``run_order``: metrics run in increasing order, cheap ones first, so that they run in the main
    process while the workers fit the classifiers.  ``intervenes``: besides the shared sample, the metric
    renders images of intervened factors (so it cannot run on precomputed codes).
    """

    name: str
    description: str
    parameters: Mapping[str, Parameter]
    compute: Callable[[dict, EvaluationContext], MetricOutput]
    run_order: int
    aliases: tuple[str, ...] = ()
    shared_sample: bool = False
    image_requests: Callable[[dict], int] | None = None
    plan_fits: Callable[[dict, EvaluationContext], None] | None = None
    intervenes: bool = False

    @property
    def defaults(self) -> dict:
        """disentanglement_lib's parameter values (a fresh dict)."""
        return {key: parameter.default for key, parameter in self.parameters.items()}

    @property
    def fits_classifiers(self) -> bool:
        return self.plan_fits is not None

    def requested_images(self, params: dict) -> int:
        return 0 if self.image_requests is None else int(self.image_requests(params))

    def check_parameters(self, given: dict) -> dict:
        """The defaults with ``given`` applied; unknown keys and values not allowed are errors."""
        unknown = set(given) - set(self.parameters)
        if unknown:
            raise ValueError(
                f"params[{self.name!r}] has unknown parameters {sorted(unknown)}; "
                f"known: {sorted(self.parameters)}"
            )
        for key, value in given.items():
            allowed = self.parameters[key].allowed
            if not allowed.test(value):
                raise ValueError(
                    f"params[{self.name!r}][{key!r}] = {value!r} is not allowed; "
                    f"{key} must be {allowed.description}"
                )
        merged = {**self.defaults, **given}
        return {k: list(v) if isinstance(v, list | tuple) else v for k, v in merged.items()}
