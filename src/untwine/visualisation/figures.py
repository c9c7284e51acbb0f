"""Matplotlib figures without pyplot: each on its own Agg canvas, rendered to PNG bytes or files.

Nothing here selects a backend, changes ``rcParams`` or registers a figure with pyplot, so drawing a
report leaves the caller's matplotlib exactly as it was (an interactive session keeps its backend and
its open figures).
"""

from __future__ import annotations

import io
import os
from pathlib import Path

from untwine.utils.io import atomic_write_bytes

DPI = 100


def new_figure(width: float, height: float, layout: str | None = "constrained"):
    """A :class:`matplotlib.figure.Figure` of ``width`` x ``height`` inches at 100 dpi on an Agg canvas.

    ``layout=None`` leaves the layout to the caller (``figure.tight_layout()``).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=DPI, layout=layout)
    FigureCanvasAgg(figure)
    return figure


def figure_png(figure, tight: bool = False) -> bytes:
    """PNG bytes of ``figure`` at 100 dpi on white; ``tight`` crops the margins to what is drawn."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, facecolor="white", bbox_inches="tight" if tight else None)
    return buffer.getvalue()


def save_figure(figure, path: str | os.PathLike) -> Path:
    """Write :func:`figure_png` of ``figure`` to ``path`` atomically; return the path."""
    path = Path(path)
    atomic_write_bytes(path, figure_png(figure))
    return path
