"""The files of a run directory: their names, the run's lock, reading them back, and write failures
turned into errors that name the path and what to do.

    RUN_DIR/config.json        written once at the start (atomically)
    RUN_DIR/checkpoint.pt      replaced atomically; a killed write leaves ``.checkpoint.pt.*.tmp``
    RUN_DIR/log.jsonl          appended; a power loss can leave a partial last line
    RUN_DIR/final_eval.json    written at the end (atomically)
    RUN_DIR/.untwine-run.lock  held by the process that writes the run (see ``untwine.utils.locks``)
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path
from typing import Any

from untwine.training.checkpoint import CHECKPOINT_NAME

CONFIG_NAME = "config.json"
LOG_NAME = "log.jsonl"
FINAL_EVAL_NAME = "final_eval.json"
#: Not the study runner's ``.untwine-study.lock``: a study worker holds that one while it calls train(),
#: and two flock locks on one file conflict even within a process.
LOCK_NAME = ".untwine-run.lock"
#: The files train() writes atomically; their temporaries (``.NAME.*.tmp``) are removed on resume.
ATOMIC_NAMES = (CONFIG_NAME, CHECKPOINT_NAME, LOG_NAME, FINAL_EVAL_NAME)


class RunDirectoryError(OSError):
    """The run directory cannot be used as asked: it holds a run already, lies under a file, is not
    writable, or its disk is full.  The message names the path and what to do."""


class RunExistsError(RunDirectoryError, FileExistsError):
    """A new run was asked for in a directory that already holds one."""


def describe_write_error(
    error: OSError, run_dir: Path, resumable_from: int | None
) -> RunDirectoryError | None:
    """A one-line :class:`RunDirectoryError` for a failed write into ``run_dir``, or None when ``error``
    is not about the run directory (e.g. a dataset file that cannot be read).

    ``resumable_from``: the step of the last checkpoint written (None: none yet), for what to do next.
    """
    path = error.filename
    if path is not None and not _is_within(Path(path), run_dir):
        return None
    where = path if path is not None else run_dir
    if resumable_from is None and not (run_dir / CONFIG_NAME).exists():
        after = "then start again"
    elif resumable_from is None:
        after = f"then continue with `untwine train --resume {run_dir}` (from step 0: no checkpoint yet)"
    else:
        after = (
            f"then continue with `untwine train --resume {run_dir}` (the checkpoint of step "
            f"{resumable_from} is intact)"
        )
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return RunDirectoryError(f"no space left on the device of {where}: free some space, {after}")
    if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return RunDirectoryError(
            f"cannot write {where} ({error.strerror}): choose a writable directory with --out"
            + ("" if resumable_from is None else f", or make it writable, {after}")
        )
    if error.errno in (errno.ENOTDIR, errno.EEXIST) and not Path(where).is_dir():
        return RunDirectoryError(
            f"cannot create the run directory {run_dir}: {_first_file_on(run_dir)} is a file, not a "
            "folder; choose another --out"
        )
    return None


def _is_within(path: Path, folder: Path) -> bool:
    path, folder = Path(os.path.abspath(path)), Path(os.path.abspath(folder))
    return path == folder or folder in path.parents


def _first_file_on(path: Path) -> Path:
    """The first component of ``path`` that exists and is not a folder (or ``path`` itself)."""
    for part in reversed([path, *path.parents]):
        if part.exists() and not part.is_dir():
            return part
    return path


def remove_stale_temporaries(run_dir: Path) -> list[Path]:
    """Remove what killed atomic writes of the run's own files left behind (``.checkpoint.pt.*.tmp``,
    up to a checkpoint's size each); call only while holding the run's lock."""
    removed = []
    for name in ATOMIC_NAMES:
        for path in run_dir.glob(f".{name}.*.tmp"):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def read_config_file(run_dir: Path) -> dict[str, Any]:
    """``config.json`` of ``run_dir`` as a dict; a missing or corrupt file is an error naming it."""
    path = Path(run_dir) / CONFIG_NAME
    if not path.exists():
        raise FileNotFoundError(f"{run_dir} is not a run directory: {CONFIG_NAME} is missing")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:  # same type (callers may tell it apart), the file named
        raise json.JSONDecodeError(f"{path} is corrupt, {error.msg}", error.doc, error.pos) from None
    except UnicodeDecodeError as error:
        raise ValueError(f"{path} is corrupt ({error})") from None
    if not isinstance(data, dict) or not isinstance(data.get("config"), dict):
        raise ValueError(f"{path} has no 'config' object; it is not a config.json written by untwine train")
    return data


def read_log_lines(path: Path, keep_up_to_step: int) -> list[str]:
    """The lines of ``log.jsonl`` up to ``keep_up_to_step`` (later ones will be redone on resume).

    A last line that is not complete JSON is what a power loss or a full disk leaves mid-write: it is
    dropped.  A bad line anywhere else is an error naming the file and the line.
    """
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    kept = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            step = json.loads(line)["step"]
        except (ValueError, KeyError, TypeError) as error:
            if number == len(lines):
                break  # partial last line
            raise ValueError(
                f"{path}, line {number}: not a log record ({type(error).__name__}: {error}); remove or "
                "repair that line, then resume"
            ) from None
        if step <= keep_up_to_step:
            kept.append(line)
    return kept
