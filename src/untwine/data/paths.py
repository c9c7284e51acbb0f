"""Where dataset files live: one folder per dataset under a single data root.

The root is ``$UNTWINE_DATA`` when set, else ``~/.cache/untwine``.
"""

from __future__ import annotations

import os
from pathlib import Path


class DatasetFileNotFoundError(FileNotFoundError):
    """A dataset file is missing; the message says which file, where it was looked for and how to get it."""


def data_root() -> Path:
    root = os.environ.get("UNTWINE_DATA")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "untwine"


def dataset_dir(folder: str, root: str | os.PathLike | None = None) -> Path:
    return (Path(root).expanduser() if root is not None else data_root()) / folder


def require_file(path: Path, dataset: str) -> Path:
    """Return ``path`` if it exists, else raise an error naming the file and the download command."""
    if not path.exists():
        raise DatasetFileNotFoundError(
            f"dataset '{dataset}' needs the file {path.name}, which was not found at {path} "
            f"(data root: {path.parent.parent}; set UNTWINE_DATA to use another root). "
            f"Get it with `untwine data download {dataset}`, or copy the published file there."
        )
    return path
