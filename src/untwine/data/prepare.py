"""Dataset upkeep behind ``untwine data list / verify / prepare``: what is on disk, is it intact, and
conversion to the fast memory-mappable layout.

Every real dataset's loader module (named in its registry spec) provides the same four functions:

* ``missing(data_dir, **loader_kwargs) -> list[str]``: files it needs that are absent (a prepared file
  stands in for the published one it was made from);
* ``check_files(data_dir, **loader_kwargs) -> list[str]``: cheap layout checks (keys, headers, shapes,
  dtypes, grid order) of the present files, raising ValueError on a problem;
* ``prepare(data_dir, force=False, **loader_kwargs) -> Path``: write the prepared ``.npy`` atomically;
* ``prepared_file(data_dir, **loader_kwargs) -> Path``: where the prepared file goes.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from untwine.data import download
from untwine.data.paths import DatasetFileNotFoundError
from untwine.data.registry import DatasetSpec, get_spec


def _module(spec: DatasetSpec) -> ModuleType:
    return importlib.import_module(spec.loader.split(":")[0])


def _real(name: str) -> DatasetSpec:
    spec = get_spec(name)
    if spec.procedural:
        raise ValueError(f"{name} is procedural: nothing is stored on disk for it")
    return spec


def _kwargs(spec: DatasetSpec, extra: dict[str, Any]) -> dict[str, Any]:
    return {**spec.loader_kwargs, **{k: v for k, v in extra.items() if v is not None}}


def missing_files(name: str, root: str | os.PathLike | None = None, **loader_kwargs: Any) -> list[str]:
    """The files dataset ``name`` still needs (empty for procedural datasets and complete downloads)."""
    spec = get_spec(name)
    if spec.procedural:
        return []
    return _module(spec).missing(spec.data_dir(root), **_kwargs(spec, loader_kwargs))


def prepared_file(name: str, root: str | os.PathLike | None = None, **loader_kwargs: Any) -> Path:
    spec = _real(name)
    return _module(spec).prepared_file(spec.data_dir(root), **_kwargs(spec, loader_kwargs))


def status(name: str, root: str | os.PathLike | None = None) -> str:
    """``procedural``, ``present``, ``present, prepared`` or ``missing: <files>``."""
    spec = get_spec(name)
    if spec.procedural:
        return "procedural"
    absent = missing_files(name, root)
    if absent:
        return "missing: " + ", ".join(absent)
    return "present, prepared" if prepared_file(name, root).exists() else "present"


def prepare_dataset(
    name: str, root: str | os.PathLike | None = None, force: bool = False, **loader_kwargs: Any
) -> Path:
    """Convert dataset ``name`` to its memory-mappable layout; return the file loads will use."""
    spec = _real(name)
    return _module(spec).prepare(spec.data_dir(root), force=force, **_kwargs(spec, loader_kwargs))


@dataclass
class VerifyReport:
    """One line per check: ``(status, message)`` with status ``ok``, ``unverified`` or ``FAILED``."""

    name: str
    lines: list[tuple[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(s != "FAILED" for s, _ in self.lines)

    def add(self, state: str, message: str) -> None:
        self.lines.append((state, message))


def _check_checksums(report: VerifyReport, directory: Path, name: str) -> None:
    recorded = download.recorded_checksums(directory)
    published = download.DOWNLOADS.get(name, ()) + download.ALTERNATIVES.get(name, ())
    for remote in published:
        archive = directory / remote.filename
        if archive.exists():
            md5 = download.file_md5(archive)
            if remote.md5 is None:
                report.add(
                    "unverified",
                    f"{remote.filename}: no published checksum ({remote.checksum_source}); MD5 {md5}",
                )
            elif md5 == remote.md5:
                report.add("ok", f"{remote.filename}: MD5 matches the published {remote.md5}")
            else:
                report.add("FAILED", f"{remote.filename}: MD5 {md5} differs from the published {remote.md5}")
        if not remote.extract:
            continue
        product = directory / remote.product
        if not product.exists():
            continue
        files = sorted(product.rglob("*")) if product.is_dir() else [product]
        files = [f for f in files if f.is_file()]
        names = [f.relative_to(directory).as_posix() for f in files]
        known = [n for n in names if n in recorded]
        if not known:
            report.add(
                "unverified",
                f"{remote.product}: no checksum is published for the extracted files, and none was recorded "
                "at download time; the layout checks below still apply",
            )
            continue
        changed = [n for n in known if download.file_md5(directory / n) != recorded[n]]
        vanished = [n for n, entry in recorded.items() if n.startswith(remote.product) and n not in names]
        if changed or vanished:
            detail = ", ".join([*(f"{n} changed" for n in changed), *(f"{n} missing" for n in vanished)][:5])
            report.add(
                "FAILED",
                f"{remote.product}: differs from what was extracted from {remote.filename}: {detail}",
            )
        else:
            report.add(
                "ok",
                f"{remote.product}: {len(known)} file(s) match the MD5s recorded when extracted "
                f"from the verified {remote.filename}",
            )


def verify_dataset(name: str, root: str | os.PathLike | None = None, **loader_kwargs: Any) -> VerifyReport:
    """Checksums of the present published files, then the loader's layout checks.

    Every problem found is a ``FAILED`` line naming the path and what to do, never an exception: a data
    folder that is a file, a folder where a file belongs, a file that cannot be read.
    """
    spec = _real(name)
    directory = spec.data_dir(root)
    report = VerifyReport(name)
    blocker = next((p for p in (directory, *directory.parents) if p.exists()), None)
    if blocker is not None and not blocker.is_dir():
        report.add(
            "FAILED", f"{blocker} is a file, not a folder: pass --root (or set UNTWINE_DATA) to a data folder"
        )
        return report
    absent = missing_files(name, root, **loader_kwargs)
    if absent:
        report.add(
            "FAILED",
            f"missing in {directory}: {', '.join(absent)} (get them with `untwine data download {name}`)",
        )
        return report
    try:
        _check_checksums(report, directory, name)
        for line in _module(spec).check_files(directory, **_kwargs(spec, loader_kwargs)):
            report.add("ok", line)
    except (ValueError, DatasetFileNotFoundError) as error:
        report.add("FAILED", str(error))
    except IsADirectoryError as error:
        report.add(
            "FAILED",
            f"{error.filename}: a folder where a file belongs; remove it and run `untwine data download {name}`",
        )
    except OSError as error:  # unreadable (permissions, I/O error): name the file, not a traceback
        path = error.filename or directory
        report.add(
            "FAILED",
            f"{path}: cannot be read ({error.strerror or error}); fix its permissions or run "
            f"`untwine data download {name} --force`",
        )
    return report
