"""Counting the convergence warnings of the classifier fits, so that a score says when it came from fits
that did not converge.

:func:`counting_fit_warnings` records every scikit-learn ``ConvergenceWarning`` raised in its block
(``LogisticRegression(CV)``'s lbfgs, ``LinearSVC``, ``Lasso``...) into a :class:`WarningTally`; every
other warning goes on as usual (the filters in force decide whether it is shown, ignored or raised).
The runner stores the tally of each metric under the result's ``"warnings"`` key:
``{"ConvergenceWarning": {"count": 12, "first_message": "lbfgs failed to converge..."}}``, or ``{}``.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field


def counted_categories() -> tuple[type[Warning], ...]:
    from sklearn.exceptions import ConvergenceWarning

    return (ConvergenceWarning,)


@dataclass
class WarningTally:
    """How many warnings of each counted category were raised, and the first message of each."""

    counts: dict[str, int] = field(default_factory=dict)
    first_messages: dict[str, str] = field(default_factory=dict)

    def add(self, category: str, message: str, count: int = 1) -> None:
        self.counts[category] = self.counts.get(category, 0) + count
        self.first_messages.setdefault(category, message)

    def merge(self, other: WarningTally | None) -> None:
        if other is not None:
            for category, count in other.counts.items():
                self.add(category, other.first_messages[category], count)

    def as_record(self) -> dict:
        return {
            category: {"count": count, "first_message": self.first_messages[category]}
            for category, count in self.counts.items()
        }


@contextlib.contextmanager
def counting_fit_warnings() -> Iterator[WarningTally]:
    """Count the convergence warnings raised in the block; let every other warning through."""
    counted = counted_categories()
    tally = WarningTally()
    caught: list = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            for category in counted:
                # Every occurrence, not only the first per code location: the count is the point.
                warnings.simplefilter("always", category)
            yield tally
    finally:
        for warning in caught:
            if issubclass(warning.category, counted):
                tally.add(warning.category.__name__, str(warning.message).strip())
            else:
                warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)


def warn_about_fits(fits, stacklevel: int = 2) -> None:
    """For the array-layer functions called on their own (no result record to hold the count): one
    warning per counted category that the fits (FitResults) raised, with the count and the first message."""
    tally = WarningTally()
    for fit in fits:
        tally.merge(fit.warnings)
    categories = {category.__name__: category for category in counted_categories()}
    for name, count in tally.counts.items():
        warnings.warn(
            f"{count} warning(s) from the classifier fits; the first: {tally.first_messages[name]}",
            categories[name],
            stacklevel=stacklevel + 1,
        )
