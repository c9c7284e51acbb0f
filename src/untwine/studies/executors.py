"""Where the models of a study run: a local process pool (default) or a Ray cluster.

An executor runs ``untwine.studies.runner.run_model(task: ModelTask) -> ModelResult`` for the driver, at
most ``slots`` at a time.  The driver submits only as many tasks as there are slots, so a submitted task
is a running task.  Workers never touch the results store; they return a result and the driver stores it.
Every executor has the shape of :class:`Executor`.

* :class:`LocalExecutor` -- ``workers`` spawned processes with ``threads`` torch/BLAS threads each.  A worker
  exits when the driver dies (Linux parent-death signal, plus a watchdog thread everywhere), so a killed
  driver leaves no orphan writing into a run directory.  If a worker dies, the pool is rebuilt and
  the tasks that were in flight are reported as :class:`WorkerLost` (the driver retries them; training
  resumes from its checkpoint).
* :class:`InlineExecutor` -- in the driver process, one model at a time (debugging).
* :class:`RayExecutor` -- one Ray task per model with ``num_cpus=threads`` (and ``num_gpus`` if asked) on
  a running cluster (``address``) or on a local Ray instance started for the study.  The study
  directory must be on a filesystem every node sees (run directories hold the checkpoints).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from untwine.studies.records import ModelResult, ModelTask
from untwine.utils.workers import terminate_workers, worker_pool

TaskFunction = Callable[[ModelTask], ModelResult]


class WorkerLost(RuntimeError):
    """The process running a task died (killed, out of memory, ...) before returning."""


def default_parallelism(cpus: int | None = None, gpus: int | None = None) -> tuple[int, int]:
    """(workers, threads per worker) for this machine.

    CPU only: one thread per worker up to 4 cores (small convolutions scale poorly across threads, and
    independent models scale perfectly), then 2-4 threads per worker.  With GPUs: one worker per GPU and
    the cores shared among them.
    """
    cpus = cpus or os.cpu_count() or 1
    if gpus is None:
        gpus = _gpu_count()
    if gpus:
        return gpus, max(1, cpus // gpus)
    if cpus <= 4:
        return cpus, 1
    threads = 2 if cpus <= 16 else 4
    return cpus // threads, threads


def _gpu_count() -> int:
    try:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:  # pragma: no cover - torch always importable in practice
        return 0


@dataclass
class Completion:
    """A finished task: its result, or the error that kept it from returning one."""

    handle: Any
    result: ModelResult | None = None
    error: BaseException | None = None


@runtime_checkable
class Executor(Protocol):
    """What the driver needs of an executor."""

    name: str  # recorded with each run ("local", "ray", "inline")
    slots: int  # tasks that run at once
    threads: int  # torch/BLAS threads per task

    def describe(self) -> str: ...

    def submit(self, fn: TaskFunction, task: ModelTask) -> Any: ...

    def wait(self, handles: list[Any], timeout: float | None = None) -> list[Completion]: ...

    def shutdown(self, cancel: bool = False) -> None: ...


class LocalExecutor:
    name = "local"

    def __init__(self, workers: int | None = None, threads: int | None = None, gpus: int | None = None):
        if gpus is None:
            gpus = _gpu_count()
        self.gpus = int(gpus)
        auto_workers, auto_threads = default_parallelism(gpus=self.gpus)
        self.workers = int(workers or auto_workers)
        self.threads = int(
            threads or (auto_threads if workers is None else max(1, (os.cpu_count() or 1) // self.workers))
        )
        if self.workers < 1 or self.threads < 1:
            raise ValueError("workers and threads must be >= 1")
        self.slots = self.workers
        self._pool = None

    def describe(self) -> str:
        gpus = f", GPUs shared round-robin ({self.gpus})" if self.gpus else ""
        return f"local process pool: {self.workers} worker(s) x {self.threads} thread(s){gpus}"

    def _ensure_pool(self):
        if self._pool is None:
            self._pool = worker_pool(self.workers, self.threads, self.gpus)
        return self._pool

    def submit(self, fn: TaskFunction, task: ModelTask) -> Any:
        return self._ensure_pool().submit(fn, task)

    def wait(self, handles: list[Any], timeout: float | None = None) -> list[Completion]:
        from concurrent.futures import FIRST_COMPLETED
        from concurrent.futures import wait as futures_wait
        from concurrent.futures.process import BrokenProcessPool

        done, _ = futures_wait(handles, timeout=timeout, return_when=FIRST_COMPLETED)
        out, broken = [], False
        for future in done:
            try:
                out.append(Completion(future, result=future.result()))
            except BrokenProcessPool as error:
                broken = True
                out.append(Completion(future, error=WorkerLost(f"a worker process died ({error})")))
            except BaseException as error:  # the task function raised outside its own handling
                out.append(Completion(future, error=error))
        if broken:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
        return out

    def shutdown(self, cancel: bool = False) -> None:
        if self._pool is not None:
            if cancel:
                terminate_workers(self._pool)
            else:
                self._pool.shutdown(wait=True)
            self._pool = None


class RayExecutor:
    """Ray tasks, ``num_cpus=threads`` each.  ``address``: ``auto``, ``ray://host:10001``, ``host:6379``, or
    None to start a local instance with ``workers * threads`` CPUs."""

    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        workers: int | None = None,
        threads: int | None = None,
        gpus_per_task: float = 0.0,
        init_kwargs: dict[str, Any] | None = None,
    ):
        try:
            import ray
        except ImportError:
            raise RuntimeError("--executor ray needs Ray: pip install 'untwine[ray]'") from None
        self.ray = ray
        self.address = address
        auto_workers, auto_threads = default_parallelism()
        self.threads = int(threads or (1 if address is None else auto_threads))
        self.gpus_per_task = float(gpus_per_task)
        self._started_here = False
        kwargs = {
            "include_dashboard": False,
            "log_to_driver": False,
            "ignore_reinit_error": True,
            "configure_logging": False,
            **(init_kwargs or {}),
        }
        if not ray.is_initialized():
            if address is None:
                local_workers = int(workers or auto_workers)
                ray.init(num_cpus=local_workers * self.threads, **kwargs)
            else:
                ray.init(address=address, **kwargs)
            self._started_here = True
        cpus = int(ray.cluster_resources().get("CPU", 1))
        self.slots = int(workers or max(1, cpus // self.threads))
        self.workers = self.slots
        self._remote = ray.remote(num_cpus=self.threads, num_gpus=self.gpus_per_task, max_retries=0)
        self._functions: dict[Any, Any] = {}
        self._in_flight: set[Any] = set()

    def describe(self) -> str:
        where = self.address or "a local Ray instance"
        return f"Ray on {where}: {self.slots} task(s) at a time x {self.threads} CPU(s)"

    def submit(self, fn: TaskFunction, task: ModelTask) -> Any:
        remote = self._functions.get(fn)
        if remote is None:
            remote = self._functions[fn] = self._remote(fn)
        ref = remote.remote(task)
        self._in_flight.add(ref)
        return ref

    def wait(self, handles: list[Any], timeout: float | None = None) -> list[Completion]:
        ray = self.ray
        ready, _ = ray.wait(handles, num_returns=1, timeout=timeout)
        out = []
        for ref in ready:
            self._in_flight.discard(ref)
            try:
                out.append(Completion(ref, result=ray.get(ref)))
            except ray.exceptions.RayTaskError as error:  # the task function itself raised
                out.append(Completion(ref, error=error))
            except ray.exceptions.RayError as error:  # worker or node died, out of memory, object lost, ...
                out.append(
                    Completion(
                        ref, error=WorkerLost(f"the Ray worker died ({type(error).__name__}: {error})")
                    )
                )
        return out

    def shutdown(self, cancel: bool = False) -> None:
        if cancel:
            for ref in list(self._in_flight):
                try:
                    self.ray.cancel(ref, force=True)
                except Exception:  # already finished, or the cluster is gone
                    pass
            self._in_flight.clear()
        if self._started_here:
            self.ray.shutdown()
            self._started_here = False


class InlineExecutor:
    """Runs each task in the driver process, one at a time: for debugging (a breakpoint in a metric
    works) and for machines where spawning processes is not wanted."""

    name = "inline"
    slots = 1
    workers = 1

    def __init__(self, threads: int | None = None):
        self.threads = int(threads or 1)
        self._pending: dict[int, tuple[TaskFunction, ModelTask]] = {}
        self._next = 0

    def describe(self) -> str:
        return f"inline (in the driver process, {self.threads} thread(s))"

    def submit(self, fn: TaskFunction, task: ModelTask) -> Any:
        self._next += 1
        self._pending[self._next] = (fn, task)
        return self._next

    def wait(self, handles: list[Any], timeout: float | None = None) -> list[Completion]:
        handle = handles[0]
        fn, task = self._pending.pop(handle)
        try:
            return [Completion(handle, result=fn(task))]
        except Exception as error:
            return [Completion(handle, error=error)]

    def shutdown(self, cancel: bool = False) -> None:
        self._pending.clear()


def make_executor(
    kind: str = "local",
    address: str | None = None,
    workers: int | None = None,
    threads: int | None = None,
    gpus_per_task: float = 0.0,
) -> Executor:
    if kind == "local":
        if address:
            raise ValueError("--address is for --executor ray")
        return LocalExecutor(workers, threads)
    if kind == "ray":
        return RayExecutor(address, workers, threads, gpus_per_task)
    if kind == "inline":
        return InlineExecutor(threads)
    raise ValueError(f"executor must be local, ray or inline, got {kind!r}")
