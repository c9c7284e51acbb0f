"""Training curves from a run's ``log.jsonl`` (matplotlib, Agg canvas; no pyplot, no global state).

* :func:`plot_loss_terms`: every scalar term against the step, one small panel each (scales differ);
* :func:`plot_kl_per_latent`: the KL of each latent against the step -- the picture of Burgess et al.
  (2018) where latents switch on one after another;
* :func:`plot_capacity`: AnnealedVAE's target capacity C(t) against the total KL it pulls towards.

Each function returns a :class:`matplotlib.figure.Figure`, or ``None`` when the log has nothing to
draw (:mod:`untwine.visualisation.figures` renders and writes it).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from untwine.visualisation.figures import new_figure, save_figure

LOG_NAME = "log.jsonl"
# Keys of a log record that are not loss terms (or are drawn elsewhere).
_NOT_TERMS = {"step", "kl_per_latent", "c"}


def read_log(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Records of a ``log.jsonl`` (or of ``RUN_DIR/log.jsonl`` when given a directory), sorted by step.

    Blank lines and a truncated last line (a run killed mid-write) are skipped.
    """
    path = Path(path)
    if path.is_dir():
        path = path / LOG_NAME
    if not path.exists():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and "step" in record:
            records.append(record)
    return sorted(records, key=lambda r: r["step"])


def scalar_series(records: list[dict[str, Any]]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{term: (steps, values)}`` for every numeric scalar in the records (NaN where a record lacks it)."""
    keys: list[str] = []
    for record in records:
        for key, value in record.items():
            if (
                key not in keys
                and key not in _NOT_TERMS
                and isinstance(value, int | float)
                and not isinstance(value, bool)
            ):
                keys.append(key)
    steps = np.asarray([r["step"] for r in records], dtype=np.float64)
    series = {}
    for key in keys:
        values = np.asarray([_number(r.get(key)) for r in records], dtype=np.float64)
        series[key] = (steps, values)
    return series


def _number(value: Any) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return math.nan


def _marker(num_points: int) -> str | None:
    return "o" if num_points <= 30 else None


def _order(key: str) -> tuple[int, str]:
    first = ("loss", "reconstruction", "kl", "regularizer", "elbo")
    return (first.index(key), key) if key in first else (len(first), key)


def plot_loss_terms(records: list[dict[str, Any]], columns: int = 3):
    """One panel per scalar term (loss, reconstruction, kl, ..., images_per_second) against the step."""
    series = scalar_series(records)
    if not series:
        return None
    keys = sorted(series, key=_order)
    columns = min(columns, len(keys))
    rows = -(-len(keys) // columns)
    figure = new_figure(3.6 * columns, 2.5 * rows)
    axes = figure.subplots(rows, columns, squeeze=False)
    for index, key in enumerate(keys):
        axis = axes[index // columns][index % columns]
        steps, values = series[key]
        axis.plot(steps, values, marker=_marker(len(steps)), markersize=3, linewidth=1.2, color="C0")
        axis.set_title(key, fontsize=10)
        axis.set_xlabel("step", fontsize=8)
        axis.tick_params(labelsize=8)
        axis.grid(alpha=0.3)
    for index in range(len(keys), rows * columns):
        axes[index // columns][index % columns].set_visible(False)
    return figure


def kl_matrix(records: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray] | None:
    """``(steps, kl)`` with ``kl[t, j]`` the KL of latent ``j`` at the ``t``-th logged step, or None."""
    rows = [(r["step"], r["kl_per_latent"]) for r in records if isinstance(r.get("kl_per_latent"), list)]
    if not rows:
        return None
    width = max(len(kl) for _, kl in rows)
    steps = np.asarray([s for s, _ in rows], dtype=np.float64)
    kl = np.full((len(rows), width), np.nan)
    for t, (_, values) in enumerate(rows):
        kl[t, : len(values)] = [_number(v) for v in values]
    return steps, kl


def plot_kl_per_latent(records: list[dict[str, Any]]):
    """KL of each latent against the step (Burgess et al. 2018, Fig. 3): informative latents rise."""
    matrix = kl_matrix(records)
    if matrix is None:
        return None
    steps, kl = matrix
    figure = new_figure(7.0, 3.8)
    axis = figure.subplots()
    colours = _latent_colours(kl.shape[1])
    for j in range(kl.shape[1]):
        axis.plot(
            steps,
            kl[:, j],
            marker=_marker(len(steps)),
            markersize=3,
            linewidth=1.3,
            color=colours[j],
            label=f"z{j}",
        )
    axis.set_xlabel("step")
    axis.set_ylabel("KL (nats)")
    axis.set_title("KL per latent")
    axis.grid(alpha=0.3)
    axis.legend(
        fontsize=7, ncols=max(1, -(-kl.shape[1] // 12)), loc="center left", bbox_to_anchor=(1.01, 0.5)
    )
    return figure


def _latent_colours(count: int):
    from matplotlib import colormaps

    cmap = colormaps["tab10" if count <= 10 else "tab20"]
    return [cmap(j % cmap.N) for j in range(count)]


def plot_capacity(records: list[dict[str, Any]]):
    """AnnealedVAE: the capacity target C(t) and the total KL against the step; None without ``c``."""
    rows = [r for r in records if isinstance(r.get("c"), int | float)]
    if not rows:
        return None
    steps = np.asarray([r["step"] for r in rows], dtype=np.float64)
    capacity = np.asarray([float(r["c"]) for r in rows])
    kl = np.asarray([_number(r.get("kl")) for r in rows])
    figure = new_figure(6.0, 3.6)
    axis = figure.subplots()
    axis.plot(steps, capacity, marker=_marker(len(steps)), markersize=3, color="C3", label="C(t) target")
    axis.plot(steps, kl, marker=_marker(len(steps)), markersize=3, color="C0", label="total KL")
    axis.set_xlabel("step")
    axis.set_ylabel("nats")
    axis.set_title("AnnealedVAE: capacity C(t) vs total KL")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    return figure


def write_training_curves(run_dir: str | os.PathLike, out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write ``loss_terms.png``, ``kl_per_latent.png`` and (AnnealedVAE) ``capacity.png``; return what was written."""
    records = read_log(run_dir)
    out_dir = Path(out_dir)
    written = {}
    for name, plot in (
        ("loss_terms", plot_loss_terms),
        ("kl_per_latent", plot_kl_per_latent),
        ("capacity", plot_capacity),
    ):
        figure = plot(records)
        if figure is not None:
            written[name] = save_figure(figure, out_dir / f"{name}.png")
    return written
