"""Run a study: train -> postprocess -> evaluate every model of the grid, storing results as they come.

A study directory::

    STUDY_DIR/study.json        the study definition, the selection (flags) and the evaluation, as JSON
    STUDY_DIR/results.sqlite    the results store (unless a PostgreSQL URL is given)
    STUDY_DIR/runs/<model_num>/ one run directory per model (``untwine.training`` layout, plus metrics/)
    STUDY_DIR/report/           ``untwine study report``
    STUDY_DIR/export/           ``untwine study export``

Resumable and idempotent: a model whose run is ``done`` and has every requested evaluation is skipped;
a model that was interrupted continues from its last checkpoint (training) and from its finished
metric files (evaluation); a model that fails is recorded with its error and traceback and the others
go on (``retry_failed`` runs failed ones again).  Killing the driver loses only the progress of the
models that were in flight since their last checkpoint.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from untwine.studies.definitions import Study
from untwine.studies.executors import Executor, TaskFunction
from untwine.studies.grid import RunSpec, Selection, expand
from untwine.studies.progress import StudyProgress, format_duration
from untwine.studies.records import Evaluation, ModelResult, ModelTask
from untwine.studies.store import ResultStore, open_store

STUDY_FILE = "study.json"
RUNS_DIR = "runs"
TRAIN_REPRESENTATION = "train"  # pseudo-representation of the held-out loss terms (final_eval.json)
FINAL_EVAL_METRIC = "final_eval"
LOCK_NAME = ".untwine-study.lock"


def run_dir_for(study_dir: str | Path, model_num: int) -> Path:
    return Path(study_dir) / RUNS_DIR / f"{model_num:05d}"


# -- one model (runs in a worker) ---------------------------------------------------------------------
def make_task(
    spec: RunSpec, study: Study, study_dir: str | Path, device: str = "auto", threads: int = 1
) -> ModelTask:
    """Everything a worker needs for one model (it crosses process and machine borders)."""
    return ModelTask(
        model_num=spec.model_num,
        run_dir=str(run_dir_for(study_dir, spec.model_num).resolve()),
        config=dict(spec.config),
        config_hash=spec.config_hash,
        device=device,
        threads=int(threads),
        metrics=tuple(study.metrics),
        metric_params={name: dict(p) for name, p in study.metric_params.items()},
        representations=tuple(study.representations),
        metric_seed=int(study.metric_seed),
        fast=bool(study.fast),
    )


@contextlib.contextmanager
def _run_lock(run_dir: Path):
    """Exclusive lock on a run directory: two processes never train or evaluate the same model at once
    (an orphan of a killed driver, say, is still finishing when the re-run starts it again)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no lock
        yield
        return
    with open(run_dir / LOCK_NAME, "a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _train_or_resume(task: ModelTask, run_dir: Path) -> None:
    from untwine.studies.grid import config_hash
    from untwine.training import TrainConfig, load_run_config, train
    from untwine.training.loop import CONFIG_NAME, FINAL_EVAL_NAME

    if (run_dir / CONFIG_NAME).exists():
        saved = load_run_config(run_dir).to_dict()
        if config_hash(saved) != task.config_hash:
            raise ValueError(
                f"{run_dir} holds a run with another config (hash {config_hash(saved)}, "
                f"expected {task.config_hash}); move it away to train this model again"
            )
        if not (run_dir / FINAL_EVAL_NAME).exists():
            train(None, run_dir, resume=True)
        return
    config = TrainConfig.from_dict(
        {**task.config, "device": task.device, "threads": task.threads, "progress": False}
    )
    train(config, run_dir)


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _reusable(saved: dict, task: ModelTask, metric: str) -> bool:
    """A metric file from an earlier (interrupted) attempt counts if it was computed the same way."""
    if "values" not in saved or saved.get("seed", task.metric_seed) != task.metric_seed:
        return False
    if "mode" in saved and saved["mode"] != task.mode:
        return False
    parameters = saved.get("parameters") or {}
    wanted = task.metric_params.get(metric, {})
    return all(key in parameters and parameters[key] == value for key, value in wanted.items())


def _evaluate(task: ModelTask, run_dir: Path) -> list[Evaluation]:
    """Every (representation, metric) of the task; metric files already written are reused."""
    from untwine.metrics.representation import CodeCache
    from untwine.studies.pipeline import evaluate_run, metrics_dir

    evaluations = []
    code_cache = CodeCache()  # mean and sampled codes come from the same encoder: encode each image once
    for representation in task.representations:
        folder = metrics_dir(run_dir, representation)
        results: dict[str, dict] = {}
        for metric in task.metrics:
            saved = _read_json(folder / f"{metric}.json")
            if saved is not None and _reusable(saved, task, metric):
                results[metric] = saved
        missing = [m for m in task.metrics if m not in results]
        if missing:
            started = time.perf_counter()
            params = {m: dict(p) for m, p in task.metric_params.items() if m in missing}
            # Parallelism comes from the study's workers: classifier fits run in the worker process.
            fresh = evaluate_run(
                run_dir,
                metrics=missing,
                representation=representation,
                seed=task.metric_seed,
                fast=task.fast,
                device=task.device,
                params=params,
                n_jobs=1,
                code_cache=code_cache,
            )
            elapsed = time.perf_counter() - started
            for metric in missing:
                if metric not in fresh:
                    raise RuntimeError(
                        f"the metrics runner returned no result for {metric!r} (got {sorted(fresh)})"
                    )
                result = fresh[metric]
                result.setdefault("seconds", elapsed / len(missing))
                results[metric] = result
        evaluations += [
            Evaluation(representation, metric, results[metric].get("seconds"), results[metric])
            for metric in task.metrics
        ]
    return evaluations


def _final_eval(run_dir: Path) -> Evaluation:
    from untwine.training.loop import FINAL_EVAL_NAME

    data = _read_json(run_dir / FINAL_EVAL_NAME) or {}
    return Evaluation(
        TRAIN_REPRESENTATION,
        FINAL_EVAL_METRIC,
        None,
        {"values": data.get("terms", {}), "finite": data.get("finite")},
    )


def run_model(task: ModelTask) -> ModelResult:
    """Train (or resume), postprocess and evaluate one model; never raises for the model's own errors
    (a failure comes back as a :class:`ModelResult` with ``error`` and ``traceback``)."""
    from untwine.utils.versions import git_commit, library_versions

    worker = f"{socket.gethostname()}:{os.getpid()}"
    run_dir = Path(task.run_dir)
    started = time.perf_counter()
    train_seconds = None
    try:
        limits = contextlib.nullcontext()
        if task.threads:
            import torch
            from threadpoolctl import threadpool_limits

            torch.set_num_threads(task.threads)
            limits = threadpool_limits(task.threads)
        with _run_lock(run_dir), limits:
            _train_or_resume(task, run_dir)
            train_seconds = time.perf_counter() - started
            middle = time.perf_counter()
            evaluations = (_final_eval(run_dir), *_evaluate(task, run_dir))
            eval_seconds = time.perf_counter() - middle
        return ModelResult(
            model_num=task.model_num,
            worker=worker,
            evaluations=evaluations,
            train_seconds=train_seconds,
            eval_seconds=eval_seconds,
            versions=library_versions(),
            git_commit=git_commit(),
        )
    except Exception as error:  # recorded in the store; the study goes on
        if train_seconds is None:
            train_seconds = time.perf_counter() - started
        return ModelResult.failure(task.model_num, error, worker, train_seconds)


# -- the driver ------------------------------------------------------------------------------------------
@dataclass
class StudySummary:
    study_dir: Path
    total: int
    done: int
    failed: int
    ran: int  # models run in this session
    seconds: float
    failures: list[ModelResult] = field(default_factory=list)

    def __str__(self) -> str:
        text = (
            f"{self.done}/{self.total} models done, {self.failed} failed; {self.ran} run in this session "
            f"({format_duration(self.seconds)})"
        )
        for failure in self.failures[:10]:
            text += f"\n  failed model {failure.model_num}: {failure.error}"
        return text


def required_evaluations(study: Study) -> set[tuple[str, str]]:
    return {(TRAIN_REPRESENTATION, FINAL_EVAL_METRIC)} | {
        (r, m) for r in study.representations for m in study.metrics
    }


def open_study_store(
    study_dir: str | Path, store: ResultStore | str | None = None
) -> tuple[ResultStore, bool]:
    """(store, opened_here) of a study directory: ``store`` if given (a store, URL or path), else the store
    recorded in ``study.json`` (a PostgreSQL URL, or the SQLite file if it is still there), else
    ``study_dir/results.sqlite``."""
    from untwine.studies.store import is_database_url

    if isinstance(store, ResultStore):
        return store, False
    if store is None:
        path = Path(study_dir) / STUDY_FILE
        saved = json.loads(path.read_text()).get("store") if path.exists() else None
        if saved and (is_database_url(saved) or Path(saved).exists()):
            store = saved
    return open_store(store if store is not None else study_dir, Path(study_dir).resolve().name), True


def write_study_file(study_dir: Path, study: Study, selection: Selection, store_location: str) -> None:
    from untwine.utils.io import atomic_write_json
    from untwine.utils.versions import git_commit, library_versions

    atomic_write_json(
        study_dir / STUDY_FILE,
        {
            "study": study.to_dict(),
            "selection": selection.to_dict(),
            "store": store_location,
            "versions": library_versions(),
            "git_commit": git_commit(),
        },
    )


def load_study_file(study_dir: str | Path) -> tuple[Study, Selection, str | None]:
    path = Path(study_dir) / STUDY_FILE
    if not path.exists():
        raise FileNotFoundError(
            f"{study_dir} is not a study directory: {STUDY_FILE} is missing "
            "(start one with `untwine study run STUDY --dir DIR`)"
        )
    data = json.loads(path.read_text())
    return Study.from_dict(data["study"]), Selection.from_dict(data["selection"]), data.get("store")


def run_study(
    study: Study,
    study_dir: str | Path,
    selection: Selection | None = None,
    executor: Executor | None = None,
    store: ResultStore | str | None = None,
    retry_failed: bool = False,
    progress: bool = True,
    device: str = "auto",
    max_attempts: int = 3,
    stream: TextIO | None = None,
    task_fn: TaskFunction | None = None,
) -> StudySummary:
    """Run (or continue) ``study`` under ``selection`` in ``study_dir``; see the module docstring.

    Everything is validated (:func:`untwine.studies.planning.plan_runs`) before anything is written.
    ``executor``: a :mod:`untwine.studies.executors` executor (default: a local pool sized for the
    machine).  ``store``: a store, a ``postgresql://`` URL, or None for ``study_dir/results.sqlite``.
    A worker that dies is retried up to ``max_attempts`` times in all, then the model is recorded as failed.
    ``progress``: a bar on terminals, and messages about failed and retried models.
    """
    from untwine.studies.executors import LocalExecutor, WorkerLost
    from untwine.studies.planning import plan_runs

    selection = selection or Selection()
    study_dir = Path(study_dir)
    specs = plan_runs(study, selection)
    study_dir.mkdir(parents=True, exist_ok=True)
    store, owns_store = open_study_store(study_dir, store)
    owns_executor = executor is None
    executor = executor or LocalExecutor()
    task_fn = task_fn or run_model
    started = time.perf_counter()
    try:
        write_study_file(study_dir, study, selection, store.target)
        store.set_meta("study", study.to_dict())
        store.set_meta("selection", selection.to_dict())
        store.register_runs(specs)
        store.reset_interrupted()
        rows = {r["model_num"]: r for r in store.runs([s.model_num for s in specs])}
        evaluated = store.evaluated_all()
        needed = required_evaluations(study)
        todo, done, failed = [], 0, 0
        for spec in specs:
            row = rows[spec.model_num]
            if row["status"] == "done" and needed <= evaluated.get(spec.model_num, set()):
                done += 1
            elif row["status"] == "failed" and not retry_failed:
                failed += 1
            else:
                todo.append(spec)
        display = StudyProgress(len(specs), done, failed, stream=stream, enabled=progress)
        display.message(
            f"{study.name}: {len(specs)} models in {study_dir} ({len(todo)} to run, {done} done, "
            f"{failed} failed{'' if retry_failed or not failed else ' -- --retry-failed runs them again'}); "
            f"{executor.describe()}"
        )
        attempts: dict[int, int] = {}
        in_flight: dict[Any, RunSpec] = {}
        queue = list(todo)
        failures: list[ModelResult] = []
        ran = 0
        try:
            while queue or in_flight:
                while queue and len(in_flight) < executor.slots:
                    spec = queue.pop(0)
                    attempts[spec.model_num] = attempts.get(spec.model_num, 0) + 1
                    store.mark_running(spec.model_num, executor.name)
                    task = make_task(spec, study, study_dir, device, executor.threads)
                    in_flight[executor.submit(task_fn, task)] = spec
                    display.started()
                for completion in executor.wait(list(in_flight), timeout=5.0):
                    spec = in_flight.pop(completion.handle)
                    result = completion.result
                    if completion.error is not None:
                        if (
                            isinstance(completion.error, WorkerLost)
                            and attempts[spec.model_num] < max_attempts
                        ):
                            queue.insert(0, spec)  # resumes from its checkpoint
                            display.requeued(f"model {spec.model_num}: {completion.error}; retrying")
                            continue
                        result = ModelResult.failure(spec.model_num, completion.error, executor.name)
                    ran += 1
                    store.record(result)
                    if result.ok:
                        display.finished(ok=True)
                    else:
                        failures.append(result)
                        display.finished(ok=False, message=f"model {spec.model_num} failed: {result.error}")
        except (
            BaseException
        ):  # Ctrl-C, or an error of the driver itself: the models in flight go back to pending
            executor.shutdown(cancel=True)
            store.reset_interrupted()
            raise
        finally:
            display.close()
        counts = store.status_counts([s.model_num for s in specs])
        return StudySummary(
            study_dir,
            len(specs),
            counts["done"],
            counts["failed"],
            ran,
            time.perf_counter() - started,
            failures,
        )
    finally:
        if owns_executor:
            executor.shutdown()
        if owns_store:
            store.close()


def study_status(study_dir: str | Path, store: ResultStore | str | None = None) -> dict[str, Any]:
    """Counts by status, plus failed runs with their errors, for the selection last run in ``study_dir``."""
    study, selection, _ = load_study_file(study_dir)
    store, owns = open_study_store(study_dir, store)
    try:
        specs = expand(study, selection)
        numbers = [s.model_num for s in specs]
        runs = store.runs(numbers)
        counts = store.status_counts(numbers)
        counts["pending"] += len(specs) - len(runs)  # selected but never registered
        finished = [r for r in runs if r["status"] == "done" and r["train_seconds"] is not None]
        seconds = [r["train_seconds"] + (r["eval_seconds"] or 0) for r in finished]
        return {
            "study": study.name,
            "total": len(specs),
            "counts": counts,
            "mean_model_seconds": sum(seconds) / len(seconds) if seconds else None,
            "failed": [
                {"model_num": r["model_num"], "error": r["error"]} for r in runs if r["status"] == "failed"
            ],
            "results": store.num_results(),
            "store": store.location,
        }
    finally:
        if owns:
            store.close()


def describe_spec(spec: RunSpec, study: Study) -> Mapping[str, Any]:
    sweep = study.model(spec.model)
    return {
        "model_num": spec.model_num,
        "dataset": spec.dataset,
        "model": spec.model,
        "label": sweep.display,
        "parameter": spec.parameter,
        "value": spec.value,
        "value_index": spec.value_index,
        "seed": spec.seed,
        "config_hash": spec.config_hash,
        "train": "untwine train " + " ".join(spec.overrides()),
    }


def load_results(study_dir: str | Path, wide: bool = False, store: ResultStore | str | None = None):
    """The study's results as a pandas DataFrame (see ``ResultStore.results_frame``)."""
    store, owns = open_study_store(study_dir, store)
    try:
        return store.results_frame(wide=wide)
    finally:
        if owns:
            store.close()


@dataclass(frozen=True)
class Export:
    """What :func:`export_study` wrote, and why a format was left out (None when none was)."""

    paths: list[Path]
    skipped: str | None = None


def export_study(
    study_dir: str | Path, out_dir: str | Path | None = None, formats: tuple[str, ...] = ("csv", "parquet")
) -> Export:
    """Runs and results as CSV and/or Parquet in ``out_dir`` (default ``study_dir/export``).  The default
    pair falls back to CSV alone when Parquet cannot be written (no pyarrow), saying why."""
    load_study_file(study_dir)  # a clear error for a folder that is not a study
    out = Path(out_dir) if out_dir is not None else Path(study_dir) / "export"
    store, _ = open_study_store(study_dir)
    with store:
        try:
            return Export(store.export(out, formats))
        except RuntimeError as error:
            if not ("parquet" in formats and "csv" in formats):
                raise
            return Export(store.export(out, ("csv",)), skipped=f"{error}; wrote CSV only")
