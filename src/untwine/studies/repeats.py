"""Repeated evaluation with other seeds and sample sizes: the JMLR extension of Locatello et al.'s study.

The JMLR version of "Challenging Common Assumptions..." adds that the metrics "exhibit systematic
differences in the estimation": disentanglement_lib's ``dlib_reproduce_jmlr`` scores each model
``num_eval`` times with new evaluation seeds, binding ``<metric>.num_train`` to several sample sizes.
Here a repeated evaluation is keyed by (representation, metric, evaluation seed, num_train) and stored
beside the run's own evaluation, never over it:

* in the run directory: ``RUN_DIR/metrics/<representation>/repeats/<metric>/seed=<s>,num_train=<n>.json``
  (the metric's whole result, like the run's own ``metrics/<representation>/<metric>.json``);
* in a study's store: the ``repeats`` table (``ResultStore.record_repeat``).

Work is resumable: a key whose file exists (and, in a study, whose numbers are stored) is skipped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from untwine.metrics.output import write_result


@dataclass(frozen=True, order=True)
class RepeatKey:
    representation: str
    metric: str
    eval_seed: int
    num_train: int

    def path(self, run_dir: str | Path) -> Path:
        return (
            Path(run_dir)
            / "metrics"
            / self.representation
            / "repeats"
            / self.metric
            / f"seed={self.eval_seed},num_train={self.num_train}.json"
        )


def plan_parameters(
    metrics: Sequence[str], num_trains: Sequence[int], params: dict | None
) -> dict[int, dict]:
    """``{num_train: {metric: parameters}}``, every metric and size checked before any work."""
    from untwine.metrics.registry import resolve_metrics, resolve_parameters, with_num_train

    names = resolve_metrics(list(metrics))
    base = resolve_parameters(names, params)
    if not num_trains:
        raise ValueError("give at least one sample size (--num-train)")
    return {int(n): {name: with_num_train(name, base[name], int(n)) for name in names} for n in num_trains}


def evaluate_repeats(
    run_dir: str | Path,
    metrics: Sequence[str],
    seeds: Sequence[int],
    num_trains: Sequence[int],
    *,
    representations: Sequence[str] = ("mean",),
    params: dict | None = None,
    fast: bool = False,
    device: str = "cpu",
    n_jobs: int | None = None,
    on_result: Callable[[RepeatKey, dict[str, Any]], None] | None = None,
) -> list[RepeatKey]:
    """Score the trained run in ``run_dir`` for every seed x sample size x representation; returns the
    keys computed now (those already on disk are left alone, and handed to ``on_result`` with None)."""
    from untwine.data import get_dataset
    from untwine.metrics.runner import evaluate_representation
    from untwine.training.loop import load_run_config
    from untwine.training.representation import REPRESENTATIONS, representation_function

    plan = plan_parameters(metrics, num_trains, params)
    for rep in representations:
        if rep not in REPRESENTATIONS:
            raise ValueError(f"representation must be one of {REPRESENTATIONS}, got {rep!r}")
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("give at least one evaluation seed (--seeds)")
    config = load_run_config(run_dir)
    dataset = get_dataset(config.dataset)
    done = []
    for rep in representations:
        for seed in seeds:
            encoder = None
            for num_train, parameters in plan.items():
                keys = {name: RepeatKey(rep, name, seed, num_train) for name in parameters}
                todo = [name for name, key in keys.items() if not key.path(run_dir).exists()]
                for name, key in keys.items():
                    if name not in todo and on_result is not None and key.path(run_dir).exists():
                        on_result(key, None)  # on disk: let a store catch up
                if not todo:
                    continue
                if encoder is None:
                    encoder = representation_function(run_dir, rep, seed=seed, device=device)
                results = evaluate_representation(
                    dataset,
                    encoder,
                    metrics=todo,
                    seed=seed,
                    fast=fast,
                    params={name: parameters[name] for name in todo},
                    **({"n_jobs": n_jobs} if n_jobs is not None else {}),
                )
                for name in todo:
                    write_result(keys[name].path(run_dir), results[name])
                    if on_result is not None:
                        on_result(keys[name], results[name])
                    done.append(keys[name])
    return done


def study_reevaluate(
    study_dir: str | Path,
    metrics: Sequence[str],
    seeds: Sequence[int],
    num_trains: Sequence[int],
    *,
    representations: Sequence[str] = ("mean",),
    params: dict | None = None,
    fast: bool = False,
    device: str = "cpu",
    store=None,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Repeated evaluations of every finished model of the study in ``study_dir``, into the run
    directories and the store's ``repeats`` table; resumable.  Returns how many keys were computed."""
    import json

    from untwine.studies.runner import load_study_file, open_study_store, run_dir_for

    plan_parameters(metrics, num_trains, params)  # names, parameters and sizes: checked first
    load_study_file(study_dir)
    store, opened = open_study_store(study_dir, store)
    computed = 0
    try:
        stored = store.repeated()
        finished = [r["model_num"] for r in store.runs() if r["status"] == "done"]
        for position, num in enumerate(finished):
            run_dir = run_dir_for(study_dir, num)

            def in_store(key: RepeatKey, num=num) -> bool:
                return (num, key.representation, key.metric, key.eval_seed, key.num_train) in stored

            def record(key: RepeatKey, result, num=num, run_dir=run_dir) -> None:
                if in_store(key):
                    return
                if result is None:  # computed earlier, stopped before it reached the store
                    result = json.loads(key.path(run_dir).read_text())
                store.record_repeat(
                    num,
                    key.representation,
                    key.metric,
                    key.eval_seed,
                    key.num_train,
                    result.get("values", {}),
                )

            computed += len(
                evaluate_repeats(
                    run_dir,
                    metrics,
                    seeds,
                    num_trains,
                    representations=representations,
                    params=params,
                    fast=fast,
                    device=device,
                    on_result=record,
                )
            )
            if progress is not None:
                progress(position + 1, len(finished))
    finally:
        if opened:
            store.close()
    return computed
