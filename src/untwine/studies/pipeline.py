"""The per-model pipeline that connects the stages through files, as in disentanglement_lib.

``evaluate_run(run_dir)`` loads a trained run's representation and scores it with the metrics, writing
``RUN_DIR/metrics/<representation>/<metric>.json`` (values, parameters, seed, versions, seconds).  Metrics
know nothing of models: this module is the only place where the two meet.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from untwine.data import get_dataset
from untwine.training.loop import load_run_config
from untwine.training.representation import REPRESENTATIONS, representation_function


def headline(values: dict[str, Any]) -> str:
    """The summary keys of a metric result, for printing (per-factor details stay in the JSON file)."""
    shown = {
        k: v
        for k, v in values.items()
        if isinstance(v, int | float) and not any(part in k for part in ("factor_", "min_", "mean_train"))
    }
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in shown.items())


def metrics_dir(run_dir: str | Path, representation: str) -> Path:
    return Path(run_dir) / "metrics" / representation


def evaluate_run(
    run_dir: str | Path,
    metrics: str | list[str] = "study",
    representation: str = "mean",
    seed: int = 0,
    fast: bool = False,
    device: str = "auto",
    params: dict[str, dict[str, Any]] | None = None,
    n_jobs: int | None = None,
    code_cache=None,
) -> dict[str, dict[str, Any]]:
    """Score the run in ``run_dir``; returns ``{metric: result}`` and writes one JSON per metric.

    ``params`` (per-metric parameter overrides, e.g. ``{"mig": {"num_train": 1000}}``), ``n_jobs``
    (processes for classifier fits) and ``code_cache`` (a ``CodeCache`` shared by the evaluations of
    this run's representations) go to ``evaluate_representation`` when given.
    """
    from untwine.metrics.runner import evaluate_representation

    if representation not in REPRESENTATIONS:
        raise ValueError(f"representation must be one of {REPRESENTATIONS}, got {representation!r}")
    config = load_run_config(run_dir)
    dataset = get_dataset(config.dataset)
    representation_fn = representation_function(run_dir, representation, seed=seed, device=device)
    return evaluate_representation(
        dataset,
        representation_fn,
        metrics=metrics,
        seed=seed,
        out_dir=metrics_dir(run_dir, representation),
        fast=fast,
        **({"params": params} if params else {}),
        **({"n_jobs": n_jobs} if n_jobs is not None else {}),
        code_cache=code_cache,
    )
