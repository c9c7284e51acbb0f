"""Library versions and the git commit, recorded in every result file for reproducibility."""

from __future__ import annotations

import importlib.metadata
import platform
import subprocess
from pathlib import Path

_LIBRARIES = ("untwine", "torch", "numpy", "scipy", "scikit-learn", "h5py", "pandas")


def library_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in _LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_commit(path: str | Path | None = None) -> str | None:
    """The commit of the untwine checkout (``None`` when installed from a wheel or git is absent)."""
    where = Path(path) if path is not None else Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=5, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None
