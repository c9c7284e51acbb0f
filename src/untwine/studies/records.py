"""The typed records that cross from the driver to a worker and back: :class:`ModelTask` (what one
model needs) and :class:`ModelResult` (what it produced, or how it failed).

Both are frozen dataclasses of plain values, so they pickle for process pools and Ray.  Workers never
touch the results store: the driver hands each ``ModelResult`` to ``ResultStore.record``.
"""

from __future__ import annotations

import traceback as traceback_module
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ModelTask:
    """Everything a worker needs to train, postprocess and evaluate one model of a study."""

    model_num: int
    run_dir: str  # absolute: the worker may run in another directory or on another machine
    config: Mapping[str, Any]  # RunSpec.config: TrainConfig.to_dict() without the machine keys
    config_hash: str
    device: str
    threads: int
    metrics: tuple[str, ...]
    metric_params: Mapping[str, Mapping[str, Any]]
    representations: tuple[str, ...]
    metric_seed: int
    fast: bool

    @property
    def mode(self) -> str:
        """How the metrics are computed, as metric files record it."""
        return "fast" if self.fast else "faithful"


@dataclass(frozen=True)
class Evaluation:
    """One (representation, metric) of a model: the metric's whole result (``values`` and the rest)."""

    representation: str
    metric: str
    seconds: float | None
    result: Mapping[str, Any]


@dataclass(frozen=True)
class ModelResult:
    """The outcome of one model: its evaluations when it succeeded, its error and traceback when not."""

    model_num: int
    worker: str  # host:pid, or the executor's name for a worker that died
    evaluations: tuple[Evaluation, ...] = ()
    train_seconds: float | None = None
    eval_seconds: float | None = None
    versions: Mapping[str, str] = field(default_factory=dict)
    git_commit: str | None = None
    error: str | None = None  # "Type: message"; None when the model succeeded
    traceback: str = ""

    @property
    def ok(self) -> bool:
        return self.error is None

    @classmethod
    def failure(
        cls, model_num: int, error: BaseException, worker: str, train_seconds: float | None = None
    ) -> ModelResult:
        return cls(
            model_num=model_num,
            worker=worker,
            train_seconds=train_seconds,
            error=f"{type(error).__name__}: {error}",
            traceback="".join(traceback_module.format_exception(error)),
        )
