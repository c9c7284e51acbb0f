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
import sys
import time
import traceback as traceback_module
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from untwine.studies.definitions import Study
from untwine.studies.grid import RunSpec, Selection, expand
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
) -> dict:
    """Everything a worker needs for one model, as plain data (it crosses process and machine borders)."""
    return {
        "model_num": spec.model_num,
        "run_dir": str(run_dir_for(study_dir, spec.model_num).resolve()),
        "config": dict(spec.config),
        "config_hash": spec.config_hash,
        "machine": {"device": device, "threads": int(threads)},
        "metrics": list(study.metrics),
        "metric_params": {name: dict(p) for name, p in study.metric_params.items()},
        "representations": list(study.representations),
        "metric_seed": int(study.metric_seed),
        "fast": bool(study.fast),
    }


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


def _train_or_resume(task: dict, run_dir: Path) -> None:
    from untwine.studies.grid import config_hash
    from untwine.training import TrainConfig, load_run_config, train
    from untwine.training.loop import CONFIG_NAME, FINAL_EVAL_NAME

    if (run_dir / CONFIG_NAME).exists():
        saved = load_run_config(run_dir).to_dict()
        if config_hash(saved) != task["config_hash"]:
            raise ValueError(
                f"{run_dir} holds a run with another config (hash {config_hash(saved)}, "
                f"expected {task['config_hash']}); move it away to train this model again"
            )
        if not (run_dir / FINAL_EVAL_NAME).exists():
            train(None, run_dir, resume=True)
        return
    config = TrainConfig.from_dict({**task["config"], **task["machine"], "progress": False})
    train(config, run_dir)


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _reusable(saved: dict, task: dict, metric: str) -> bool:
    """A metric file from an earlier (interrupted) attempt counts if it was computed the same way."""
    if "values" not in saved or saved.get("seed", task["metric_seed"]) != task["metric_seed"]:
        return False
    if "mode" in saved and saved["mode"] != ("fast" if task["fast"] else "faithful"):
        return False
    parameters = saved.get("parameters") or {}
    wanted = task.get("metric_params", {}).get(metric, {})
    return all(key in parameters and parameters[key] == value for key, value in wanted.items())


def _evaluate(task: dict, run_dir: Path) -> list[dict]:
    """Every (representation, metric) of the task; metric files already written are reused."""
    from untwine.metrics.representation import CodeCache
    from untwine.studies.pipeline import evaluate_run, metrics_dir

    evaluations = []
    code_cache = CodeCache()  # mean and sampled codes come from the same encoder: encode each image once
    for representation in task["representations"]:
        folder = metrics_dir(run_dir, representation)
        results: dict[str, dict] = {}
        for metric in task["metrics"]:
            saved = _read_json(folder / f"{metric}.json")
            if saved is not None and _reusable(saved, task, metric):
                results[metric] = saved
        missing = [m for m in task["metrics"] if m not in results]
        if missing:
            started = time.perf_counter()
            params = {m: p for m, p in task.get("metric_params", {}).items() if m in missing}
            # Parallelism comes from the study's workers: classifier fits run in the worker process.
            fresh = evaluate_run(
                run_dir,
                metrics=missing,
                representation=representation,
                seed=task["metric_seed"],
                fast=task["fast"],
                device=task["machine"].get("device", "auto"),
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
        for metric in task["metrics"]:
            result = results[metric]
            evaluations.append(
                {
                    "representation": representation,
                    "metric": metric,
                    "seconds": result.get("seconds"),
                    "result": result,
                }
            )
    return evaluations


def _final_eval(run_dir: Path) -> dict:
    from untwine.training.loop import FINAL_EVAL_NAME

    data = _read_json(run_dir / FINAL_EVAL_NAME) or {}
    return {
        "representation": TRAIN_REPRESENTATION,
        "metric": FINAL_EVAL_METRIC,
        "seconds": None,
        "result": {"values": data.get("terms", {}), "finite": data.get("finite")},
    }


def run_model(task: dict) -> dict:
    """Train (or resume), postprocess and evaluate one model; never raises for the model's own errors.

    Returns a payload: ``ok``, ``model_num``, ``evaluations`` (see ``ResultStore.record_success``),
    ``train_seconds``, ``eval_seconds``, ``versions``, ``git_commit``, ``worker`` -- or, when ``ok`` is
    false, ``error`` and ``traceback``.
    """
    from untwine.utils.versions import git_commit, library_versions

    worker = f"{socket.gethostname()}:{os.getpid()}"
    run_dir = Path(task["run_dir"])
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    try:
        threads = int(task["machine"].get("threads") or 0)
        limits = contextlib.nullcontext()
        if threads:
            import torch
            from threadpoolctl import threadpool_limits

            torch.set_num_threads(threads)
            limits = threadpool_limits(threads)
        with _run_lock(run_dir), limits:
            _train_or_resume(task, run_dir)
            seconds["train"] = time.perf_counter() - started
            middle = time.perf_counter()
            evaluations = [_final_eval(run_dir), *_evaluate(task, run_dir)]
            seconds["eval"] = time.perf_counter() - middle
        return {
            "ok": True,
            "model_num": task["model_num"],
            "evaluations": evaluations,
            "train_seconds": seconds["train"],
            "eval_seconds": seconds["eval"],
            "versions": library_versions(),
            "git_commit": git_commit(),
            "worker": worker,
        }
    except Exception as error:  # recorded in the store; the study goes on
        seconds.setdefault("train", time.perf_counter() - started)
        return {
            "ok": False,
            "model_num": task["model_num"],
            "error": f"{type(error).__name__}: {error}",
            "traceback": traceback_module.format_exc(),
            "worker": worker,
            "seconds": seconds,
        }


# -- progress ---------------------------------------------------------------------------------------------
def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class Progress:
    """One status line: done/running/failed/pending, elapsed and ETA (from this session's throughput)."""

    def __init__(self, total: int, done: int, failed: int, stream=None, enabled: bool = True, slots: int = 1):
        self.total, self.done, self.failed, self.running = total, done, failed, 0
        self.slots = max(1, slots)
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.started = time.perf_counter()
        self.finished_here = 0
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self._last = ""

    @property
    def pending(self) -> int:
        return self.total - self.done - self.failed - self.running

    def line(self) -> str:
        elapsed = time.perf_counter() - self.started
        remaining = self.pending + self.running
        if remaining == 0:
            eta = "0s"
        elif self.finished_here:
            eta = _duration(elapsed / self.finished_here * remaining)
        else:
            eta = "?"
        return (
            f"study: {self.done}/{self.total} done, {self.running} running, {self.failed} failed, "
            f"{self.pending} pending | elapsed {_duration(elapsed)}, ETA {eta}"
        )

    def update(self, message: str = "") -> None:
        if not self.enabled:
            return
        line = self.line()
        if self.tty:
            self.stream.write("\r\033[K" + (message + "\n\033[K" if message else "") + line)
        else:
            if message:
                self.stream.write(message + "\n")
            if line != self._last:
                self.stream.write(line + "\n")
        self._last = line
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.tty:
            self.stream.write("\n")
            self.stream.flush()


# -- the driver ------------------------------------------------------------------------------------------
@dataclass
class StudySummary:
    study_dir: Path
    total: int
    done: int
    failed: int
    ran: int  # models run in this session
    seconds: float
    failures: list[dict[str, Any]] = field(default_factory=list)

    def __str__(self) -> str:
        text = (
            f"{self.done}/{self.total} models done, {self.failed} failed; {self.ran} run in this session "
            f"({_duration(self.seconds)})"
        )
        for failure in self.failures[:10]:
            text += f"\n  failed model {failure['model_num']}: {failure['error']}"
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


def check_data_available(specs: list[RunSpec]) -> None:
    from untwine.data.registry import get_spec

    missing = {}
    for name in sorted({s.dataset for s in specs}):
        files = get_spec(name).missing_files()
        if files:
            missing[name] = files
    if missing:
        lines = "; ".join(
            f"{name}: {', '.join(str(f) for f in files[:2])}" for name, files in missing.items()
        )
        raise FileNotFoundError(
            f"dataset files are missing ({lines}); fetch them with "
            f"`untwine data download NAME` or choose procedural datasets with --datasets"
        )


def run_study(
    study: Study,
    study_dir: str | Path,
    selection: Selection | None = None,
    executor: Any = None,
    store: ResultStore | str | None = None,
    retry_failed: bool = False,
    progress: bool = True,
    device: str = "auto",
    max_attempts: int = 3,
    stream=None,
    task_fn: Callable[[dict], dict] | None = None,
) -> StudySummary:
    """Run (or continue) ``study`` under ``selection`` in ``study_dir``; see the module docstring.

    ``executor``: a :mod:`untwine.studies.executors` executor (default: a local pool sized for the
    machine).  ``store``: a store, a ``postgresql://`` URL, or None for ``study_dir/results.sqlite``.
    A worker that dies is retried up to ``max_attempts`` times in all, then the model is recorded as failed.
    """
    from untwine.studies.executors import LocalExecutor, WorkerLost

    selection = selection or Selection()
    study_dir = Path(study_dir)
    study_dir.mkdir(parents=True, exist_ok=True)
    specs = expand(study, selection)
    if not specs:
        raise ValueError("the selection contains no runs")
    check_data_available(specs)
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
        threads = getattr(executor, "threads", 1)
        display = Progress(len(specs), done, failed, stream=stream, enabled=progress, slots=executor.slots)
        display.update(
            f"{study.name}: {len(specs)} models in {study_dir} ({len(todo)} to run, {done} done, "
            f"{failed} failed{'' if retry_failed or not failed else ' -- --retry-failed runs them again'}); "
            f"{executor.describe()}"
        )
        attempts: dict[int, int] = {}
        in_flight: dict[Any, RunSpec] = {}
        queue = list(todo)
        failures: list[dict[str, Any]] = []
        ran = 0
        try:
            while queue or in_flight:
                while queue and len(in_flight) < executor.slots:
                    spec = queue.pop(0)
                    attempts[spec.model_num] = attempts.get(spec.model_num, 0) + 1
                    store.mark_running(spec.model_num, executor.name)
                    handle = executor.submit(task_fn, make_task(spec, study, study_dir, device, threads))
                    in_flight[handle] = spec
                    display.running += 1
                    if display.tty:
                        display.update()
                for completion in executor.wait(list(in_flight), timeout=5.0):
                    spec = in_flight.pop(completion.handle)
                    display.running -= 1
                    payload = completion.payload
                    if completion.error is not None:
                        if (
                            isinstance(completion.error, WorkerLost)
                            and attempts[spec.model_num] < max_attempts
                        ):
                            queue.insert(0, spec)  # resumes from its checkpoint
                            display.update(f"model {spec.model_num}: {completion.error}; retrying")
                            continue
                        payload = {
                            "ok": False,
                            "error": f"{type(completion.error).__name__}: {completion.error}",
                            "traceback": "".join(traceback_module.format_exception(completion.error)),
                            "worker": executor.name,
                        }
                    ran += 1
                    display.finished_here += 1
                    if payload.get("ok"):
                        store.record_success(spec.model_num, payload)
                        display.done += 1
                        display.update()
                    else:
                        store.record_failure(
                            spec.model_num,
                            payload.get("error", "unknown error"),
                            payload.get("traceback", ""),
                            payload.get("worker", ""),
                            payload.get("seconds"),
                        )
                        failures.append({"model_num": spec.model_num, "error": payload.get("error")})
                        display.failed += 1
                        display.update(f"model {spec.model_num} failed: {payload.get('error')}")
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
