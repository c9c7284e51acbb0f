"""The typed records the report templates render: pictures embedded as ``data:`` URIs and tables of
already formatted cells.  They carry plain text only; the templates escape every field."""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from pathlib import Path

_MIME = {".png": "image/png", ".gif": "image/gif", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}


def data_uri(path: str | os.PathLike) -> str:
    """``data:<mime>;base64,...`` of an image file."""
    path = Path(path)
    mime = _MIME.get(path.suffix.lower())
    if mime is None:
        raise ValueError(f"cannot embed {path.name}: unknown image type {path.suffix!r}")
    return _encode(mime, path.read_bytes())


def _encode(mime: str, data: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


@dataclass(frozen=True)
class Picture:
    """One image of a report; ``uri`` is ``None`` when its file is missing (the page says so)."""

    source: str  # the file, relative to the report's picture folder
    uri: str | None
    alt: str
    caption: str = ""
    pixels: bool = False  # scale without smoothing (decoded images, not plots)
    numbers: str | None = None  # the CSV of the numbers a plot shows, relative to the report

    @classmethod
    def from_file(
        cls, root: Path, relative: str, caption: str = "", alt: str = "", pixels: bool = False
    ) -> Picture:
        path = root / relative
        uri = data_uri(path) if path.exists() else None
        return cls(relative, uri, alt or caption or relative, caption, pixels)

    @classmethod
    def from_png(cls, name: str, data: bytes, caption: str, numbers: str | None = None) -> Picture:
        return cls(name, _encode("image/png", data), caption, caption, numbers=numbers)


@dataclass(frozen=True)
class Cell:
    text: str
    numeric: bool = False  # right-aligned, tabular figures
    link: str | None = None  # an anchor on the page ("#metric-mig")


@dataclass(frozen=True)
class Table:
    header: tuple[str, ...]
    rows: list[tuple[Cell, ...]]
