"""The one process-pool mechanism of untwine: metric fits, study models and experiment grids all run here.

:func:`worker_pool` returns a standard-library :class:`~concurrent.futures.ProcessPoolExecutor` with

* the ``spawn`` start method (no forked copies of torch's or OpenMP's thread state),
* ``threads`` OpenMP/BLAS/MKL threads per worker (set in the worker's environment before it imports
  numpy or torch),
* optionally one GPU per worker, round-robin over the visible devices,
* workers that die with the process that started them: the Linux parent-death signal where available,
  plus a watchdog thread everywhere, so a killed driver (``untwine evaluate``, a study) leaves no orphan
  holding its output pipe or writing into a run directory.

:func:`shared_worker_pool` keeps one such pool per ``(workers, threads)`` for the life of the process, so
successive evaluations (the mean and the sampled representation of a model, say) reuse warm workers.
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
import signal
import threading
from concurrent.futures import ProcessPoolExecutor

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
# Exit status of a worker whose parent is gone.
ORPHAN_EXIT_STATUS = 70


def _watch_parent(parent_pid: int) -> None:
    """Exit this worker as soon as the process that started it is gone."""
    try:  # Linux: the kernel delivers SIGKILL when the parent dies
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
    except Exception:  # not Linux: the watchdog below does the job
        pass
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(ORPHAN_EXIT_STATUS)

    def loop() -> None:
        import time

        while True:
            time.sleep(1.0)
            if os.getppid() != parent_pid:
                os._exit(ORPHAN_EXIT_STATUS)

    threading.Thread(target=loop, name="untwine-parent-watch", daemon=True).start()


def _init_worker(threads: int, parent_pid: int, counter, gpus: int, ignore_interrupt: bool = False) -> None:
    if ignore_interrupt:
        # Ctrl-C reaches the whole foreground process group: the parent decides what stops (and
        # terminates the workers), so a worker prints no KeyboardInterrupt traceback of its own.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    for name in THREAD_VARIABLES:
        os.environ[name] = str(threads)
    if gpus:  # worker i sees GPU i mod gpus only (before torch touches CUDA)
        with counter.get_lock():
            index = counter.value
            counter.value += 1
        visible = [d for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()] or [
            str(i) for i in range(gpus)
        ]
        os.environ["CUDA_VISIBLE_DEVICES"] = visible[index % len(visible)]
    _watch_parent(parent_pid)


def worker_pool(
    workers: int, threads: int = 1, gpus: int = 0, *, ignore_interrupt: bool = False
) -> ProcessPoolExecutor:
    """A new pool of ``workers`` spawned processes, ``threads`` threads each, dying with this process.

    ``ignore_interrupt``: the workers ignore SIGINT, for a caller that terminates them itself on
    KeyboardInterrupt (:func:`terminate_workers`); otherwise a terminal's Ctrl-C interrupts them too.
    """
    if workers < 1 or threads < 1:
        raise ValueError(f"workers and threads must be >= 1, got workers={workers}, threads={threads}")
    context = multiprocessing.get_context("spawn")
    return ProcessPoolExecutor(
        max_workers=int(workers),
        mp_context=context,
        initializer=_init_worker,
        initargs=(int(threads), os.getpid(), context.Value("i", 0), int(gpus), bool(ignore_interrupt)),
    )


def worker_pids(pool: ProcessPoolExecutor) -> list[int]:
    """The process ids of the pool's live workers (for tests and for terminating them)."""
    processes = getattr(pool, "_processes", None) or {}
    return [process.pid for process in list(processes.values()) if process.is_alive()]


def terminate_workers(pool: ProcessPoolExecutor) -> None:
    """Kill the pool's workers now (running tasks are lost), then shut the pool down."""
    processes = getattr(pool, "_processes", None) or {}
    for process in list(processes.values()):
        if process.is_alive():
            process.terminate()
    pool.shutdown(wait=False, cancel_futures=True)


_SHARED: dict[tuple[int, int], ProcessPoolExecutor] = {}
_SHARED_LOCK = threading.Lock()


def _usable(pool: ProcessPoolExecutor) -> bool:
    return not getattr(pool, "_broken", False) and not getattr(pool, "_shutdown_thread", False)


def shared_worker_pool(workers: int, threads: int = 1) -> ProcessPoolExecutor:
    """The process-wide pool of ``workers`` x ``threads`` (made on first use, remade if it broke).

    Its workers ignore SIGINT: an interrupted user (the metrics runner) calls :func:`terminate_shared_pools`.
    """
    key = (int(workers), int(threads))
    with _SHARED_LOCK:
        pool = _SHARED.get(key)
        if pool is None or not _usable(pool):
            pool = _SHARED[key] = worker_pool(*key, ignore_interrupt=True)
        return pool


def terminate_shared_pools() -> None:
    """Kill the workers of every shared pool now (an interrupted evaluation: their running fits are lost)."""
    with _SHARED_LOCK:
        for pool in _SHARED.values():
            terminate_workers(pool)
        _SHARED.clear()


@atexit.register
def _shutdown_shared_pools() -> None:
    with _SHARED_LOCK:
        for pool in _SHARED.values():
            pool.shutdown(wait=False, cancel_futures=True)
        _SHARED.clear()
