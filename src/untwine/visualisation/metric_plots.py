"""Metric results of a run: a flat table of scores and latent-by-factor heatmaps.

Results are read from ``RUN_DIR/metrics/<representation>/<metric>.json``; each holds at least
``{"metric": name, "values": {key: number, ...}}``.  Matrices (the mutual-information matrix behind
MIG, DCI's importance matrix, ...) are any 2-D numeric lists found under ``"matrices"`` or
``"values"`` (nested dictionaries are searched too).  Everything is read defensively: unreadable files
and entries of unknown shape are skipped, never fatal.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from untwine.visualisation.figures import new_figure, save_figure
from untwine.visualisation.traversals import INACTIVE_KL

METRICS_DIR = "metrics"


def load_metric_results(run_dir: str | os.PathLike) -> dict[str, dict[str, dict[str, Any]]]:
    """``{representation: {metric: result}}`` for every readable JSON under ``RUN_DIR/metrics``."""
    root = Path(run_dir) / METRICS_DIR
    results: dict[str, dict[str, dict[str, Any]]] = {}
    if not root.is_dir():
        return results
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        for path in sorted(folder.glob("*.json")):
            try:
                result = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError):
                continue
            if isinstance(result, dict):
                results.setdefault(folder.name, {})[str(result.get("metric", path.stem))] = result
    return results


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def metric_scalars(result: dict[str, Any]) -> dict[str, float]:
    """The numeric scalars of ``result["values"]``, nested keys joined with dots (lists are skipped)."""
    out: dict[str, float] = {}

    def walk(prefix: str, value: Any) -> None:
        if _is_number(value):
            out[prefix] = float(value)
        elif isinstance(value, dict):
            for key, item in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), item)

    values = result.get("values")
    if isinstance(values, dict):
        walk("", values)
    elif _is_number(values):
        out["value"] = float(values)
    return out


def _as_matrix(value: Any) -> np.ndarray | None:
    if not isinstance(value, list) or not value or not all(isinstance(row, list) and row for row in value):
        return None
    if len({len(row) for row in value}) != 1:
        return None
    if not all(_is_number(x) or x is None for row in value for x in row):
        return None
    matrix = np.asarray(
        [[math.nan if x is None else float(x) for x in row] for row in value], dtype=np.float64
    )
    return matrix if matrix.ndim == 2 else None


def metric_matrices(result: dict[str, Any]) -> dict[str, np.ndarray]:
    """Every 2-D numeric matrix under ``result["matrices"]`` or ``result["values"]``, by (dotted) key."""
    found: dict[str, np.ndarray] = {}

    def walk(prefix: str, value: Any) -> None:
        matrix = _as_matrix(value)
        if matrix is not None:
            found.setdefault(prefix, matrix)
        elif isinstance(value, dict):
            for key, item in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), item)

    for section in ("matrices", "values"):
        if isinstance(result.get(section), dict):
            walk("", result[section])
    return found


def orient_latents_by_factors(matrix: np.ndarray, num_factors: int | None) -> np.ndarray:
    """Rows = latents, columns = factors: transpose a ``(num_factors, d)`` matrix when that is unambiguous."""
    if num_factors and matrix.shape[0] == num_factors and matrix.shape[1] != num_factors:
        return matrix.T
    return matrix


def _active_rows(result: dict[str, Any], rows: int, num_latents: int | None) -> list[str]:
    """Row labels ``z<i>``; when a matrix covers only the active latents (IRS), name those latents."""
    matrices = result.get("matrices") if isinstance(result.get("matrices"), dict) else {}
    values = result.get("values") if isinstance(result.get("values"), dict) else {}
    active = matrices.get("active_dims", values.get("active_dims"))
    if isinstance(active, list) and num_latents and rows < num_latents:
        if len(active) == num_latents and all(isinstance(a, bool) or a in (0, 1) for a in active):
            indices = [i for i, a in enumerate(active) if a]
        else:
            indices = [int(a) for a in active if _is_number(a)]
        if len(indices) == rows:
            return [f"z{i}" for i in indices]
    return [f"z{i}" for i in range(rows)]


def matrix_axes(
    matrix: np.ndarray, factor_names: Sequence[str] | None, num_latents: int | None
) -> tuple[np.ndarray, str, list[str] | None]:
    """(oriented matrix, column axis name, column tick labels) for a metric matrix.

    Latents x factors (transposed when stored the other way) get the factor names; a square
    ``d x d`` matrix over the latents (covariance, pairwise mutual information) gets latent labels.
    """
    num_factors = len(factor_names) if factor_names is not None else None
    matrix = orient_latents_by_factors(matrix, num_factors)
    if num_factors and matrix.shape[1] == num_factors:
        return matrix, "factor", list(factor_names)
    if num_latents and matrix.shape == (num_latents, num_latents):
        return matrix, "latent", [f"z{i}" for i in range(num_latents)]
    return matrix, "column", None


def plot_matrix(
    matrix,
    title: str,
    factor_names: Sequence[str] | None = None,
    annotate: bool | None = None,
    row_names: Sequence[str] | None = None,
    column_label: str = "factor",
    row_kl: Sequence[float] | None = None,
):
    """Heatmap of a latents x factors matrix (``matrix[i, k]`` = latent ``i``, factor ``k``).

    ``factor_names`` label the columns (when there are as many), ``row_names`` the rows (default
    ``z0, z1, ...``); ``column_label`` names the column axis.  ``row_kl``: each row's latent KL, added
    to its label; rows of collapsed latents (KL below ``INACTIVE_KL``) are greyed out.
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    rows, columns = matrix.shape
    figure = new_figure(max(3.8, 0.75 * columns + 2.4), max(2.8, 0.36 * rows + 1.6))
    axis = figure.subplots()
    finite = matrix[np.isfinite(matrix)]
    vmax = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
    vmin = min(0.0, float(finite.min())) if finite.size else 0.0
    image = axis.imshow(matrix, cmap="viridis", vmin=vmin, vmax=vmax, aspect="auto", interpolation="nearest")
    figure.colorbar(image, ax=axis, shrink=0.9)
    rows_named = list(row_names) if row_names is not None and len(row_names) == rows else None
    labels = rows_named or [f"z{i}" for i in range(rows)]
    collapsed = [False] * rows
    if row_kl is not None and len(row_kl) == rows:
        collapsed = [float(kl) < INACTIVE_KL for kl in row_kl]
        labels = [f"{label}  KL {float(kl):.2f}" for label, kl in zip(labels, row_kl, strict=True)]
    axis.set_yticks(range(rows), labels, fontsize=8)
    for tick, grey in zip(axis.get_yticklabels(), collapsed, strict=True):
        if grey:
            tick.set_color("#999999")
    for i in (i for i, grey in enumerate(collapsed) if grey):  # a collapsed latent: its row veiled
        axis.axhspan(i - 0.5, i + 0.5, color="white", alpha=0.7, linewidth=0)
    names = list(factor_names) if factor_names is not None and len(factor_names) == columns else None
    axis.set_xticks(
        range(columns),
        names if names else [str(k) for k in range(columns)],
        fontsize=8,
        rotation=30 if names else 0,
        ha="right" if names else "center",
    )
    axis.set_xlabel(column_label)
    axis.set_ylabel("latent")
    axis.set_title(title, fontsize=10)
    if annotate if annotate is not None else rows * columns <= 160:
        for i in range(rows):
            for k in range(columns):
                value = matrix[i, k]
                if np.isfinite(value):
                    bright = (value - vmin) / (vmax - vmin or 1.0) > 0.6
                    axis.text(
                        k,
                        i,
                        f"{value:.2f}",
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="black" if bright else "white",
                    )
    return figure


def metric_table(results: dict[str, dict[str, dict[str, Any]]]) -> list[tuple[str, str, str, float]]:
    """``(representation, metric, key, value)`` rows for every scalar score, sorted."""
    rows = []
    for representation, metrics in sorted(results.items()):
        for metric, result in sorted(metrics.items()):
            for key, value in metric_scalars(result).items():
                rows.append((representation, metric, key, value))
    return rows


def write_metric_plots(
    run_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    factor_names: Sequence[str] | None = None,
    results: dict[str, dict[str, dict[str, Any]]] | None = None,
    num_latents: int | None = None,
    kl_per_latent: Sequence[float] | None = None,
) -> list[dict[str, Any]]:
    """Write one heatmap PNG per matrix found; return ``[{representation, metric, name, path}]``.

    ``kl_per_latent`` (the run's KL of each latent) labels the rows of latents x factors matrices and
    greys out the collapsed latents."""
    results = load_metric_results(run_dir) if results is None else results
    out_dir = Path(out_dir)
    written = []
    for representation, metrics in sorted(results.items()):
        for metric, result in sorted(metrics.items()):
            for name, matrix in metric_matrices(result).items():
                matrix, column_label, columns = matrix_axes(matrix, factor_names, num_latents)
                rows = _active_rows(result, matrix.shape[0], num_latents)
                row_kl = None
                if kl_per_latent is not None and column_label == "factor":
                    indices = [int(r[1:]) for r in rows]
                    if all(i < len(kl_per_latent) for i in indices):
                        row_kl = [float(kl_per_latent[i]) for i in indices]
                safe = "".join(
                    ch if ch.isalnum() or ch in "-_" else "_" for ch in f"{representation}_{metric}_{name}"
                )
                figure = plot_matrix(
                    matrix,
                    f"{metric}: {name} ({representation})",
                    columns,
                    row_names=rows,
                    column_label=column_label,
                    row_kl=row_kl,
                )
                path = save_figure(figure, out_dir / f"{safe}.png")
                written.append(
                    {"representation": representation, "metric": metric, "name": name, "path": path}
                )
    return written
