"""The per-run HTML report: one self-contained file that opens from the file system.

``write_run_report(run_dir)`` draws the run's pictures (:func:`untwine.visualisation.run_visuals.visualise_run`)
and writes ``RUN_DIR/report.html`` with: the config, training curves, the held-out evaluation, metric
scores and matrices, latent traversals, the animated latent cycles, reconstructions and prior samples.
Every image is embedded as a base64 ``data:`` URI and the styles are inline; a Content-Security-Policy
forbids anything else, so the report never reaches for the network and shows the same everywhere.

This module gathers what the page shows into a :class:`RunReportPage`; the markup is
``templates/run_report.html``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from untwine import __version__
from untwine.report.page import render
from untwine.report.records import Cell, Picture, Table
from untwine.utils.io import atomic_write_text
from untwine.visualisation.animations import CYCLES
from untwine.visualisation.metric_plots import load_metric_results, metric_table
from untwine.visualisation.run_visuals import (
    VisualisationSettings,
    default_out_dir,
    read_manifest,
    visualise_run,
)
from untwine.visualisation.traversals import INACTIVE_KL

REPORT_NAME = "report.html"

CYCLE_DESCRIPTIONS = {
    "std_gaussian": "Quantiles of the prior N(0, 1), linear in probability (0.1% .. 99.9%).",
    "fitted_gaussian": "Quantiles of a Gaussian fitted to each latent's codes over the batch.",
    "fixed_interval": "Linear through the fixed interval [-2, 2].",
    "conf_interval": "Linear through mean ± 2 standard deviations of the fitted Gaussian.",
    "minmax_interval": "Linear between the smallest and largest code of each latent in the batch.",
}
CURVE_CAPTIONS = {
    "loss_terms": "Loss terms against the step",
    "kl_per_latent": "KL per latent against the step",
    "capacity": "AnnealedVAE: capacity target C(t) and total KL",
}


@dataclass(frozen=True)
class AnimationGroup:
    title: str
    description: str
    pictures: list[Picture]


@dataclass(frozen=True)
class RunReportPage:
    """Everything ``templates/run_report.html`` shows; ``None`` where the run has not written it."""

    title: str
    run_name: str
    steps: Any
    seed: Any
    version: str
    config: Table | None
    dataset: Table | None
    environment: Table | None
    curves: list[Picture]
    final_eval_note: str | None
    final_eval: Table | None
    metric_scores: Table | None
    metric_plots: list[Picture]
    traversal_interval: str
    num_images: Any
    traversals: list[Picture]
    kl_per_latent: Table | None
    num_frames: Any
    fps: Any
    animations: list[AnimationGroup]
    reconstructions: Picture | None
    samples: Picture | None
    sample_seed: Any


def _format(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list) and value and all(isinstance(v, int | float) for v in value):
        return "[" + ", ".join(f"{v:.3g}" for v in value) + "]"
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True)
    return str(value)


def _table(rows: list[tuple[Any, ...]], header: tuple[str, ...], numeric: tuple[int, ...] = ()) -> Table:
    return Table(
        header, [tuple(Cell(_format(value), i in numeric) for i, value in enumerate(row)) for row in rows]
    )


def _key_values(mapping: dict[str, Any]) -> Table:
    return _table(list(mapping.items()), ("key", "value"))


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _picture(root: Path, relative: str | None, caption: str = "", alt: str = "", pixels: bool = False):
    return Picture.from_file(root, relative, caption, alt, pixels) if relative else None


def run_report_page(run_dir: str | os.PathLike, out_dir: str | os.PathLike | None = None) -> RunReportPage:
    """What the report of ``run_dir`` shows, from the run's files and the pictures already in ``out_dir``."""
    run_dir = Path(run_dir)
    out_dir = Path(out_dir) if out_dir is not None else default_out_dir(run_dir)
    manifest = read_manifest(out_dir)
    run_info = _read_json(run_dir / "config.json") or {}
    final_eval = _read_json(run_dir / "final_eval.json")
    config = run_info.get("config", {})
    settings = manifest.get("settings", {})

    dataset = run_info.get("dataset")
    environment = {k: run_info[k] for k in ("device", "git_commit", "seeds", "versions") if k in run_info}
    terms = (final_eval or {}).get("terms", {})
    scores = metric_table(load_metric_results(run_dir))
    curves = manifest.get("curves", {})
    values = manifest.get("traversal_values", [])
    animations = manifest.get("animations", {})
    kl = manifest.get("kl_per_latent")
    encoder = manifest.get("encoder")
    title = f"{config.get('model', 'model')} on {config.get('dataset', 'dataset')}"
    if encoder:  # an outside encoder's evaluation: no config, curves or pictures of a model
        title = f"{encoder['kind']} encoder {Path(encoder['source']).name} on {encoder['dataset']}"
        config = {"encoder": encoder["source"], "outputs": encoder["outputs"], "layout": encoder["layout"]}
    return RunReportPage(
        title=title,
        run_name=run_dir.resolve().name,
        steps=config.get("steps", "?"),
        seed=config.get("seed", "?"),
        version=__version__,
        config=_key_values(config) if run_info or encoder else None,
        dataset=_key_values(dataset) if isinstance(dataset, dict) else None,
        environment=_key_values(environment) if environment else None,
        curves=[
            Picture.from_file(out_dir, curves[name], CURVE_CAPTIONS[name])
            for name in CURVE_CAPTIONS
            if name in curves
        ],
        final_eval_note=", ".join(
            f"{k} = {final_eval[k]}"
            for k in ("step", "num_batches", "batch_size", "seed", "finite")
            if k in final_eval
        )
        if final_eval
        else None,
        final_eval=_table(list(terms.items()) if isinstance(terms, dict) else [], ("term", "value"), (1,))
        if final_eval
        else None,
        metric_scores=_table(scores, ("representation", "metric", "score", "value"), (3,))
        if scores
        else None,
        metric_plots=[
            Picture.from_file(out_dir, p["path"], f"{p['metric']}: {p['name']} ({p['representation']})")
            for p in manifest.get("metric_plots", [])
        ],
        traversal_interval=f"[{values[0]:g}, {values[-1]:g}] in {len(values)} steps" if values else "",
        num_images=settings.get("num_images", ""),
        traversals=[
            Picture.from_file(out_dir, p, f"base image {i}", pixels=True)
            for i, p in enumerate(manifest.get("traversals", []))
        ],
        kl_per_latent=_table(
            [(f"z{j}", v, "inactive" if v < INACTIVE_KL else "active") for j, v in enumerate(kl)],
            ("latent", "KL (nats)", ""),
            (1,),
        )
        if kl
        else None,
        num_frames=settings.get("num_frames", ""),
        fps=settings.get("fps", ""),
        animations=[
            AnimationGroup(
                kind.replace("_", " "),
                CYCLE_DESCRIPTIONS[kind],
                [
                    Picture.from_file(out_dir, p, f"base image {i}", pixels=True)
                    for i, p in enumerate(animations[kind])
                ],
            )
            for kind in CYCLES
            if animations.get(kind)
        ],
        reconstructions=_picture(
            out_dir, manifest.get("reconstructions"), alt="reconstructions", pixels=True
        ),
        samples=_picture(out_dir, manifest.get("samples"), alt="samples", pixels=True),
        sample_seed=settings.get("seed", ""),
    )


def render_run_report(run_dir: str | os.PathLike, out_dir: str | os.PathLike | None = None) -> str:
    """The HTML text of the report, from the run's files and the pictures already in ``out_dir``."""
    return render("run_report.html", page=run_report_page(run_dir, out_dir))


def write_run_report(
    run_dir: str | os.PathLike,
    out_dir: str | os.PathLike | None = None,
    report_path: str | os.PathLike | None = None,
    settings: VisualisationSettings | None = None,
    device: str = "cpu",
    model=None,
    dataset=None,
) -> Path:
    """Draw the run's pictures into ``out_dir`` (default ``RUN_DIR/visualisation``) and write the report
    (default ``RUN_DIR/report.html``); return the report's path."""
    run_dir = Path(run_dir)
    out_dir = Path(out_dir) if out_dir is not None else default_out_dir(run_dir)
    visualise_run(run_dir, out_dir, settings=settings, device=device, model=model, dataset=dataset)
    path = Path(report_path) if report_path is not None else run_dir / REPORT_NAME
    atomic_write_text(path, render_run_report(run_dir, out_dir))
    return path
