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

One driver per study directory: :func:`run_study` holds ``STUDY_DIR/.untwine-driver.lock`` while it runs,
and a second driver is refused at once, naming the holder (readers -- status, export, report -- take no
lock).  A run is checked (its study, its store's location, every stored model's config) before it writes
anything: a refused run leaves ``study.json`` and the store as they were.  ``study.json`` names a SQLite
store relative to the study directory (a copied directory uses its own copy) and an external database
by its URL.
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
from untwine.studies.store import ResultStore, is_database_url, open_store, sqlite_path
from untwine.utils.locks import directory_lock

STUDY_FILE = "study.json"
RUNS_DIR = "runs"
TRAIN_REPRESENTATION = "train"  # pseudo-representation of the held-out loss terms (final_eval.json)
FINAL_EVAL_METRIC = "final_eval"
LOCK_NAME = ".untwine-study.lock"  # a run directory's, taken by the worker that trains and evaluates it
# The study directory's, held by the driver.  A name of its own: flock locks on one file conflict even
# within one process, and the inline executor runs models (and their run locks) in the driver.
DRIVER_LOCK_NAME = ".untwine-driver.lock"


class StudyDirectoryError(ValueError):
    """A study directory that cannot take this run: it holds another study, or its ``study.json`` names
    a store that is not its own."""


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


VALIDATION_REPRESENTATION = "validation"  # few-label runs' scores on their labelled validation split


def _validation(run_dir: Path) -> tuple[Evaluation, ...]:
    """The run's validation-split scores (few-label models with ``train_percentage < 1``), one evaluation
    per metric under the representation ``validation``; none for other runs."""
    from untwine.training.validation import VALIDATION_NAME

    data = _read_json(run_dir / VALIDATION_NAME) or {}
    return tuple(
        Evaluation(VALIDATION_REPRESENTATION, metric, None, {"values": values})
        for metric, values in (data.get("values") or {}).items()
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
        # Two processes never train or evaluate the same model at once (an orphan of a killed driver,
        # say, is still finishing when the re-run starts it again): the second waits for the first.
        with directory_lock(run_dir, LOCK_NAME, f"the run directory {run_dir}", wait=True), limits:
            _train_or_resume(task, run_dir)
            train_seconds = time.perf_counter() - started
            middle = time.perf_counter()
            evaluations = (_final_eval(run_dir), *_validation(run_dir), *_evaluate(task, run_dir))
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


def _read_study_json(study_dir: Path) -> dict | None:
    """``study.json`` of ``study_dir`` as a dict (None if there is none); a damaged file is named."""
    path = study_dir / STUDY_FILE
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        raise StudyDirectoryError(
            f"{path} is not valid JSON ({error}); restore it from a backup, or move the study "
            "directory away and start the study again in a new one"
        ) from None


def saved_store_target(study_dir: str | Path, saved: str | None) -> str | Path:
    """What ``open_store`` opens for the store entry ``saved`` of ``study_dir``'s ``study.json``.

    * none: ``study_dir/results.sqlite``;
    * a database URL: that database;
    * a relative path (what untwine writes): that file inside ``study_dir``, wherever the directory
      was copied or moved;
    * an absolute path (written by earlier versions): as is when it lies inside ``study_dir``;
      otherwise the directory was copied or moved, and its own file of that name is used.  The named
      file is never opened from another directory (that would read and write the original study's
      store); without a file of its own the study is refused, saying so.
    """
    study_dir = Path(study_dir)
    if not saved:
        return study_dir
    if is_database_url(saved):
        return saved
    path = Path(saved)
    if not path.is_absolute():
        return study_dir / path
    if path.resolve().is_relative_to(study_dir.resolve()):
        return path
    own = study_dir / path.name
    if own.exists():
        return own
    raise StudyDirectoryError(
        f"{study_dir / STUDY_FILE} names the results store {path}, outside this study directory (was it "
        f"copied or moved?); a study only uses its own store: copy that file to {own} if it holds "
        "this study's results"
    )


def open_study_store(
    study_dir: str | Path, store: ResultStore | str | None = None
) -> tuple[ResultStore, bool]:
    """(store, opened_here) of a study directory: ``store`` if given (a store, URL or path), else the
    store recorded in ``study.json`` (see :func:`saved_store_target`), else ``study_dir/results.sqlite``."""
    if isinstance(store, ResultStore):
        return store, False
    if store is None:
        saved = _read_study_json(Path(study_dir)) or {}
        store = saved_store_target(study_dir, saved.get("store"))
    return open_store(store, Path(study_dir).resolve().name), True


def store_entry(study_dir: str | Path, target: str | Path) -> str:
    """How ``study.json`` names the store ``target`` (a URL, or a SQLite path as ``open_store`` takes
    it): a URL as is, a SQLite file by its path relative to ``study_dir``.  A SQLite file outside the
    study directory is refused: a copy of the directory would share it; name external databases by URL."""
    path = sqlite_path(target)
    if path is None:
        return str(target)
    home = Path(study_dir).resolve()
    try:
        return path.resolve().relative_to(home).as_posix()
    except ValueError:
        raise StudyDirectoryError(
            f"a SQLite results store lives in its study directory, and {path} is outside {study_dir}; "
            "leave --store out to use "
            f"{Path(study_dir) / 'results.sqlite'}, or name an external database with a postgresql:// URL"
        ) from None


def write_study_file(study_dir: Path, study: Study, selection: Selection, store_location: str) -> None:
    """``study_dir/study.json``, atomically; ``store_location`` as :func:`store_entry` gives it."""
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
    data = _read_study_json(Path(study_dir))
    if data is None:
        raise FileNotFoundError(
            f"{study_dir} is not a study directory: {STUDY_FILE} is missing "
            "(start one with `untwine study run STUDY --dir DIR`)"
        )
    return Study.from_dict(data["study"]), Selection.from_dict(data["selection"]), data.get("store")


def check_same_study(study_dir: str | Path, study: Study) -> None:
    """Refuse to run ``study`` in a directory whose ``study.json`` holds another study."""
    saved = (_read_study_json(Path(study_dir)) or {}).get("study")
    if saved is not None and saved.get("name") != study.name:
        raise StudyDirectoryError(
            f"{study_dir} holds the study {saved.get('name')!r} ({STUDY_FILE}); run {study.name!r} "
            "in another --dir"
        )


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
    Then the driver takes the study directory's lock (another driver there raises
    :class:`untwine.utils.locks.DirectoryLockedError`, naming it) and checks the run against what the
    directory holds -- the same study (:func:`check_same_study`), a store of its own
    (:func:`store_entry`), the stored models' training configs
    (:class:`untwine.studies.store.ConfigMismatchError`) -- still writing nothing; only an accepted run
    rewrites ``study.json`` and the store's meta data.
    ``executor``: a :mod:`untwine.studies.executors` executor (default: a local pool sized for the
    machine).  ``store``: a store, a ``postgresql://`` URL, or None for the store ``study.json`` names
    (``study_dir/results.sqlite`` for a new study).
    A worker that dies is retried up to ``max_attempts`` times in all, then the model is recorded as failed.
    ``progress``: a bar on terminals, and messages about failed and retried models.
    """
    from untwine.studies.executors import LocalExecutor
    from untwine.studies.planning import plan_runs

    selection = selection or Selection()
    study_dir = Path(study_dir)
    specs = plan_runs(study, selection)
    if store is not None:  # a store named here is checked before the directory is made
        store_entry(study_dir, store.target if isinstance(store, ResultStore) else store)
    owns_executor = executor is None
    executor = executor or LocalExecutor()
    try:
        with directory_lock(study_dir, DRIVER_LOCK_NAME, f"the study directory {study_dir}"):
            check_same_study(study_dir, study)
            store, owns_store = open_study_store(study_dir, store)
            try:
                store.check_integrity()
                store.check_configs(specs)
                # Accepted: from here on the run writes.
                write_study_file(study_dir, study, selection, store_entry(study_dir, store.target))
                store.set_meta("study", study.to_dict())
                store.set_meta("selection", selection.to_dict())
                store.register_runs(specs)
                store.reset_interrupted()
                return _drive(
                    study,
                    study_dir,
                    specs,
                    executor,
                    store,
                    retry_failed,
                    progress,
                    device,
                    max_attempts,
                    stream,
                    task_fn or run_model,
                )
            finally:
                if owns_store:
                    store.close()
    finally:
        if owns_executor:
            executor.shutdown()


def _drive(
    study: Study,
    study_dir: Path,
    specs: list[RunSpec],
    executor: Executor,
    store: ResultStore,
    retry_failed: bool,
    progress: bool,
    device: str,
    max_attempts: int,
    stream: TextIO | None,
    task_fn: TaskFunction,
) -> StudySummary:
    """The driver's loop over an accepted, registered run: hand the models to the executor, store what
    comes back, retry lost workers."""
    from untwine.studies.executors import WorkerLost

    started = time.perf_counter()
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
                    if isinstance(completion.error, WorkerLost) and attempts[spec.model_num] < max_attempts:
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
    except BaseException:  # Ctrl-C, or an error of the driver itself: the models in flight go back to pending
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
