"""Where metric results go on disk: checked before any work, each JSON written atomically.

:func:`check_output_dir` runs before sampling and fitting start, so a folder that cannot be written
(a path under a file, a read-only folder or file system) is reported in one line instead of after minutes
of fits.  :func:`write_result` writes one ``<metric>.json`` through :func:`untwine.utils.io.atomic_write_json`:
a failed write (a full disk, say) leaves the previous file and every result written before intact.
Both raise :class:`ResultWriteError`, a ``RuntimeError`` whose message names the path and what to do.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path
from typing import Any

from untwine.utils.io import atomic_write_json


class ResultWriteError(RuntimeError):
    """A metric result cannot be written; the message names the path and what to do."""


_ADVICE = {
    errno.ENOSPC: "free space on that file system, or evaluate a copy of the run on another one",
    errno.EDQUOT: "free space within your quota, or evaluate a copy of the run on another file system",
    errno.EACCES: "make the folder writable, or evaluate a copy of the run directory",
    errno.EPERM: "make the folder writable, or evaluate a copy of the run directory",
    errno.EROFS: "the file system is read-only: evaluate a copy of the run on a writable one",
}


def _file_ancestor(path: Path) -> Path | None:
    """The nearest existing ancestor of ``path`` (or ``path`` itself) that is not a folder, if any."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return None if candidate.is_dir() else candidate
    return None


def _error(path: Path, error: OSError) -> ResultWriteError:
    if error.errno == errno.ENOTDIR or error.errno == errno.EEXIST:
        blocker = _file_ancestor(path)
        if blocker is not None:
            return ResultWriteError(
                f"cannot write metric results to {path}: {blocker} is a file, not a folder; "
                "move or remove it, or evaluate a copy of the run elsewhere"
            )
    reason = error.strerror or str(error)
    advice = _ADVICE.get(error.errno, "check the folder and the file system")
    return ResultWriteError(f"cannot write metric results to {path}: {reason}; {advice}")


def check_output_dir(out_dir: str | os.PathLike) -> Path:
    """Create ``out_dir`` if needed and prove a file can be created in it; returns it as a ``Path``."""
    out_dir = Path(out_dir)
    blocker = _file_ancestor(out_dir)
    if blocker is not None:
        raise _error(out_dir, OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR)))
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".untwine-write-check.", dir=out_dir)
        os.close(fd)
        os.unlink(probe)
    except OSError as error:
        raise _error(out_dir, error) from None
    return out_dir


def write_result(path: str | os.PathLike, result: dict[str, Any]) -> None:
    """Write one metric result atomically; the previous file, if any, stays until the new one is complete."""
    path = Path(path)
    try:
        atomic_write_json(path, result)
    except OSError as error:
        raise _error(path, error) from None
