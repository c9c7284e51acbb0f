"""Directory locks: a run or study directory is written by one process at a time.

:func:`directory_lock` takes an exclusive ``flock`` on ``DIR/<name>`` and writes who holds it (pid,
host, command, start time) into that file.  A second process is refused at once with
:class:`DirectoryLockedError`, whose message names the holder; with ``wait=True`` it waits instead.
The kernel drops the lock when the holder exits, however it exits (SIGKILL included), so a stale lock
file never blocks anyone: only a live holder does.

``flock`` locks belong to an open file, so two ``directory_lock`` calls on the same file conflict even
within one process; nest locks on different files (a study driver's lock and a run's lock) instead.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path


class DirectoryLockedError(RuntimeError):
    """Another live process holds the lock of a directory."""


def _holder_text(path: Path) -> str:
    try:
        holder = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return "another process (no holder recorded)"
    if not holder:
        return "another process (no holder recorded)"
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.get("started", 0)))
    return (
        f"process {holder.get('pid')} on {holder.get('host')} since {started} ({holder.get('command', '?')})"
    )


@contextlib.contextmanager
def directory_lock(directory: str | os.PathLike, name: str, what: str, wait: bool = False) -> Iterator[Path]:
    """Hold the exclusive lock ``directory/name`` for the block (the directory is created if needed).

    ``what`` says what the lock protects, for the error message (e.g. "the run directory runs/b4").
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no locking
        yield path
        return
    with open(path, "a+", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            raise DirectoryLockedError(
                f"{what} is in use by {_holder_text(path)}; wait for it to finish or stop it "
                f"(the lock is {path})"
            ) from None
        try:
            handle.seek(0)
            handle.truncate()
            handle.write(
                json.dumps(
                    {
                        "pid": os.getpid(),
                        "host": socket.gethostname(),
                        "command": " ".join(sys.argv) or sys.executable,
                        "started": time.time(),
                    }
                )
            )
            handle.flush()
            yield path
        finally:
            with contextlib.suppress(OSError):
                handle.seek(0)
                handle.truncate()
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
