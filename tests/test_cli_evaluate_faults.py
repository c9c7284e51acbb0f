"""`untwine evaluate` under faults: killed, interrupted or stopped during its classifier fits, and output
folders it cannot write (under a file, read-only, full).  Nothing may outlive it holding its pipes, and
no result already written may be lost."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import untwine
from untwine.cli import main

SRC = str(Path(untwine.__file__).resolve().parents[1])
HAS_PROC = Path("/proc/self/stat").exists()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A tiny trained run (20 steps); its evaluation's DCI fits take minutes, long enough to be killed."""
    out = tmp_path_factory.mktemp("evaluate_faults") / "run"
    argv = ["train", "model=beta_vae", "dataset=procedural_dsprites", "steps=20", "batch_size=16"]
    assert main([*argv, "--out", str(out)]) == 0
    return out


def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for a reaper that never comes, in some containers, counts as gone)."""
    stat = _stat(pid)
    return stat is not None and stat[0] != "Z"


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
            children.setdefault(int(stat[1]), []).append(int(entry.name))
    found, stack = [], [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ")
    except (FileNotFoundError, ProcessLookupError):
        return ""


def _cpu_seconds(pid: int) -> float:
    stat = _stat(pid)
    return (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK") if stat else 0.0


def _wait_for_fits(process: subprocess.Popen, timeout: float = 240.0) -> list[int]:
    """The descendants of ``process`` once both fit workers have spent 3 s of CPU (their imports take
    about one): the classifier fits are then running."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read()
        family = _descendants(process.pid)
        workers = [pid for pid in family if "spawn_main" in _cmdline(pid)]
        if len(workers) == 2 and all(_cpu_seconds(pid) > 3.0 for pid in workers):
            return family
        time.sleep(0.2)
    raise AssertionError("the evaluation's fits did not start in time")


def _read_to_eof(process: subprocess.Popen, timeout: float) -> tuple[str, str]:
    """Read stdout and stderr until both reach end of file (every writer gone) or ``timeout`` passes."""
    streams = {process.stdout.fileno(): b"", process.stderr.fileno(): b""}
    open_fds = set(streams)
    deadline = time.monotonic() + timeout
    while open_fds and time.monotonic() < deadline:
        ready, _, _ = select.select(list(open_fds), [], [], 0.1)
        for fd in ready:
            chunk = os.read(fd, 65536)
            if chunk:
                streams[fd] += chunk
            else:
                open_fds.discard(fd)
    assert not open_fds, f"a process still holds the evaluation's output pipe {timeout} s after it stopped"
    out, err = streams.values()
    return out.decode(), err.decode()


@pytest.mark.skipif(not HAS_PROC, reason="reads process trees and states from /proc")
@pytest.mark.parametrize(
    "stop",
    [
        "SIGKILL",
        "Ctrl-C",
        pytest.param("SIGTERM", marks=pytest.mark.slow),
    ],
)
def test_stopping_evaluate_during_the_fits_leaves_nothing_holding_its_pipes(run_dir, stop):
    """The issue's scenario: the real CLI with piped stdout/stderr, stopped while its workers fit."""
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "untwine", "evaluate", str(run_dir), "--metrics", "dci"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        start_new_session=True,  # its own process group, as a shell job: Ctrl-C reaches all of it
    )
    try:
        family = _wait_for_fits(process)
        if stop == "SIGKILL":
            process.kill()
        elif stop == "SIGTERM":
            process.terminate()
        else:  # a terminal's Ctrl-C: SIGINT to the whole foreground group, workers included
            os.killpg(process.pid, signal.SIGINT)
        out, err = _read_to_eof(process, timeout=10.0)
        status = process.wait(timeout=10)
        deadline = time.monotonic() + 5.0
        while any(_alive(pid) for pid in family) and time.monotonic() < deadline:
            time.sleep(0.1)
        survivors = {pid: _cmdline(pid) for pid in family if _alive(pid)}
        assert not survivors, f"outlived the stopped evaluation: {survivors}"
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    if stop == "SIGKILL":
        assert status == -signal.SIGKILL
        return
    expected = {"Ctrl-C": 130, "SIGTERM": 143}[stop]
    assert status == expected, err
    assert out == ""
    assert err.strip().splitlines() == [
        f"untwine evaluate: stopped ({stop}); metrics finished before the stop are in "
        f"{run_dir / 'metrics' / 'mean'}; run the command again to score the rest"
    ], err
