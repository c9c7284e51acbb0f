"""What the runner hands each metric: :class:`EvaluationContext` (codes, shared sample, fit engine, seed)."""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import numpy as np

from untwine.metrics._estimators import FitEngine, FitResult
from untwine.metrics.representation import CodeSource


def metric_rng(seed: int, name: str) -> np.random.Generator:
    """The generator of one metric (or of the shared sample): independent of the other metrics."""
    return np.random.default_rng([int(seed), zlib.crc32(name.encode())])


@dataclass
class EvaluationContext:
    source: CodeSource
    engine: FitEngine
    seed: int
    fast: bool
    num_test: int = 0  # size of the shared test sample
    train: tuple[np.ndarray, np.ndarray] | None = None  # shared (factors, codes)
    test: tuple[np.ndarray, np.ndarray] | None = None
    sample_seconds: float = 0.0
    fit_keys: dict = field(default_factory=dict)  # metric -> {group (a size, or "all"): [keys]}

    def split(self, num_train: int, num_test: int | None = None) -> list[np.ndarray]:
        """``[codes, factors]`` of the first ``num_train`` shared training points, plus ``[test_codes,
        test_factors]`` of the first ``num_test`` shared test points when asked."""
        factors, codes = self.train
        out = [codes[:num_train], factors[:num_train]]
        if num_test is not None:
            test_factors, test_codes = self.test
            out += [test_codes[:num_test], test_factors[:num_test]]
        return out

    def rng(self, name: str) -> np.random.Generator:
        return metric_rng(self.seed, name)

    def add_fits(self, metric: str, groups: dict) -> None:
        """Queue ``metric``'s keyed fits, ``{group: [(key, task), ...]}``, on the engine."""
        self.fit_keys[metric] = {group: [key for key, _ in tasks] for group, tasks in groups.items()}
        for tasks in groups.values():
            for key, task in tasks:
                self.engine.add(key, task)

    def fit_results(self, metric: str) -> dict[object, list[FitResult]]:
        """``{group: [FitResult, ...]}`` of the fits ``metric`` queued (waits for them)."""
        return {group: self.engine.results(keys) for group, keys in self.fit_keys[metric].items()}
