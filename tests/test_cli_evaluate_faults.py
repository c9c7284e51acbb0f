"""`untwine evaluate` under faults: killed, interrupted or stopped during its classifier fits, and output
folders it cannot write (under a file, read-only, full).  Nothing may outlive it holding its pipes, and
no result already written may be lost."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import select
import shutil
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


def _sigint_as_in_a_terminal() -> None:
    """Run in the child before exec: SIGINT back to its default.  A suite started as a background job of a
    non-interactive shell (``make test &``) runs with SIGINT ignored, which every child inherits, so the
    simulated Ctrl-C would never arrive."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


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
        preexec_fn=_sigint_as_in_a_terminal,
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


@pytest.fixture
def run_copy(run_dir, tmp_path) -> Path:
    """A copy of the trained run without metric results, for a test to break."""
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("metrics"))
    return copy


@contextlib.contextmanager
def _tmpfs(path: Path, options: str):
    """A small tmpfs mounted at ``path`` (root in a sandbox that allows mounts), else the test is skipped."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.decode().strip()})")
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=True)


def _error_line(capsys) -> str:
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def test_output_folder_under_a_file_is_named(run_copy, capsys):
    (run_copy / "metrics").write_text("a file where the results folder belongs")
    assert main(["evaluate", str(run_copy), "--metrics", "mig"]) == 1
    assert _error_line(capsys) == (
        f"untwine evaluate: error: cannot write metric results to {run_copy / 'metrics' / 'mean'}: "
        f"{run_copy / 'metrics'} is a file, not a folder; move or remove it, or evaluate a copy of the run "
        "elsewhere"
    )


def test_read_only_output_folder_is_named_before_any_work(run_copy, capsys):
    with _tmpfs(run_copy / "metrics", "ro,size=100k"):
        start = time.perf_counter()
        assert main(["evaluate", str(run_copy), "--metrics", "mig"]) == 1
        assert time.perf_counter() - start < 10.0  # before sampling and encoding 10,000 images
    assert _error_line(capsys) == (
        f"untwine evaluate: error: cannot write metric results to {run_copy / 'metrics' / 'mean'}: "
        "Read-only file system; the file system is read-only: evaluate a copy of the run on a writable one"
    )


def test_full_disk_is_named_and_the_previous_result_stays_intact(run_copy, capsys):
    out_dir = run_copy / "metrics" / "mean"
    with _tmpfs(out_dir, "size=100k"):
        previous = '{"metric": "mig", "values": {"discrete_mig": 0.5}}\n'
        (out_dir / "mig.json").write_text(previous)
        with open(out_dir / "filler", "wb", buffering=0) as filler:  # fill the file system to the last block
            with contextlib.suppress(OSError):
                while True:
                    filler.write(b"\0" * 4096)
        assert main(["evaluate", str(run_copy), "--metrics", "mig"]) == 1
        assert (out_dir / "mig.json").read_text() == previous
        assert sorted(p.name for p in out_dir.iterdir()) == ["filler", "mig.json"]  # no temporary left
    assert _error_line(capsys) == (
        f"untwine evaluate: error: cannot write metric results to {out_dir / 'mig.json'}: No space left on "
        "device; free space on that file system, or evaluate a copy of the run on another one"
    )


def test_results_written_before_a_failing_write_stay(run_copy, capsys, monkeypatch):
    """A write failing after others succeeded (simulated ENOSPC on the second metric): the first stays."""
    import untwine.metrics.output as output

    real = output.atomic_write_json

    def second_fails(path, result):
        if Path(path).name == "sap_score.json":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        real(path, result)

    monkeypatch.setattr(output, "atomic_write_json", second_fails)
    assert main(["evaluate", str(run_copy), "--metrics", "mig,sap"]) == 1
    assert "sap_score.json: No space left on device" in _error_line(capsys)
    written = json.loads((run_copy / "metrics" / "mean" / "mig.json").read_text())
    assert written["metric"] == "mig" and 0.0 <= written["values"]["discrete_mig"] <= 1.0


def test_corrupt_config_is_named(run_copy, capsys):
    (run_copy / "config.json").write_text('{"config": {"model": ')  # cut short, as a power loss leaves it
    assert main(["evaluate", str(run_copy), "--metrics", "mig"]) == 1
    assert str(run_copy / "config.json") in _error_line(capsys)
