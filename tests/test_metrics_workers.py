"""The fit workers die with the process that started them: a killed `untwine evaluate` leaves no orphan."""

from __future__ import annotations

import ast
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import untwine.metrics

TESTS = Path(__file__).resolve().parent

# Scores a model with fits in two workers, prints the workers' pids, then keeps them busy until killed.
EVALUATION = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {toy_dir!r})
    import toy
    from untwine.metrics import evaluate_representation
    from untwine.utils.workers import shared_worker_pool, worker_pids

    if __name__ == "__main__":
        dataset, fn = toy.ToyDataset("small"), toy.family_fn("small", "nonlinear")
        small = {{"dci": {{"num_train": 200, "num_test": 100}}}}
        evaluate_representation(dataset, fn, ["dci"], params=small, n_jobs=2)
        print(" ".join(map(str, worker_pids(shared_worker_pool(2, 1)))), flush=True)
        evaluate_representation(dataset, fn, "all", n_jobs=2)  # still running when killed
    """
)


def _sigint_as_in_a_terminal() -> None:
    """Run in the child before exec: SIGINT back to its default.  A suite started as a background job of a
    non-interactive shell (``make test &``) runs with SIGINT ignored, which every child inherits, so the
    simulated Ctrl-C would never arrive."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for a reaper that never comes, in some containers, counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states from /proc")
def test_sigkill_of_an_evaluation_leaves_no_worker_alive(tmp_path):
    script = tmp_path / "evaluate.py"
    script.write_text(EVALUATION.format(toy_dir=str(TESTS / "data" / "reference")))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(untwine.metrics.__file__).parents[2])])}
    process = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        line = process.stdout.readline()
        pids = [int(pid) for pid in line.split()]
        assert len(pids) == 2 and all(_alive(pid) for pid in pids), line
        time.sleep(0.5)  # the workers are fitting the second evaluation's classifiers
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        deadline = time.monotonic() + 5.0
        while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [pid for pid in pids if _alive(pid)], "fit workers outlived the killed evaluation"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_metrics_use_the_one_worker_pool():
    """No second pool mechanism (joblib, loky) in the metrics: fits go through untwine.utils.workers."""
    for path in Path(untwine.metrics.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            assert not any(name.split(".")[0] in ("joblib", "loky") for name in names), path.name


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states from /proc")
def test_interrupted_evaluation_terminates_its_workers_at_once(tmp_path):
    """KeyboardInterrupt in the caller (the workers ignore SIGINT): the runner kills the fits, so the
    process exits at once instead of waiting at interpreter exit for fits that run for minutes."""
    script = tmp_path / "evaluate.py"
    script.write_text(EVALUATION.format(toy_dir=str(TESTS / "data" / "reference")))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(untwine.metrics.__file__).parents[2])])}
    process = subprocess.Popen(
        [sys.executable, str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        preexec_fn=_sigint_as_in_a_terminal,
    )
    try:
        pids = [int(pid) for pid in process.stdout.readline().split()]
        assert len(pids) == 2 and all(_alive(pid) for pid in pids)
        time.sleep(1.0)  # the workers are fitting the second evaluation's classifiers
        process.send_signal(signal.SIGINT)  # to the caller only: the workers would ignore it anyway
        process.wait(timeout=10)
        assert "KeyboardInterrupt" in process.stderr.read()
        deadline = time.monotonic() + 5.0
        while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [pid for pid in pids if _alive(pid)], "fit workers outlived the interrupted evaluation"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
