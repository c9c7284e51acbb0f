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
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from untwine import __version__
from untwine.report.page import render
from untwine.report.records import Cell, Picture, Table
from untwine.utils.io import atomic_write_text
from untwine.visualisation.animations import CYCLES
from untwine.visualisation.metric_plots import load_metric_results, metric_scalars, metric_table
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


# The study's scores, first in the report: (label, metric, key, one-line meaning).
HEADLINE = (
    (
        "BetaVAE score",
        "beta_vae_sklearn",
        "eval_accuracy",
        "accuracy of predicting which factor was fixed from code differences",
    ),
    (
        "FactorVAE score",
        "factor_vae_metric",
        "eval_accuracy",
        "majority vote: the least-varying latent names the fixed factor",
    ),
    (
        "MIG",
        "mig",
        "discrete_mig",
        "gap in mutual information between a factor's best and second-best latent",
    ),
    (
        "DCI disentanglement",
        "dci",
        "disentanglement",
        "each latent predicts one factor (boosted-tree importances)",
    ),
    ("DCI completeness", "dci", "completeness", "each factor is predicted by one latent"),
    (
        "DCI informativeness",
        "dci",
        "informativeness_test",
        "test accuracy of boosted trees predicting the factors",
    ),
    ("SAP", "sap_score", "SAP_score", "gap in single-latent predictability between the best two latents"),
    (
        "Modularity",
        "modularity_explicitness",
        "modularity_score",
        "each latent depends on at most one factor",
    ),
    (
        "Explicitness",
        "modularity_explicitness",
        "explicitness_score_test",
        "factors are linearly decodable (AUC)",
    ),
    (
        "Gaussian total correlation",
        "unsupervised",
        "gaussian_total_correlation",
        "dependence between latents (lower: more factorised)",
    ),
    (
        "Downstream accuracy (LR)",
        "downstream_task_logistic_regression",
        "10000:mean_test_accuracy",
        "logistic regression on 10,000 codes, mean over factors",
    ),
    (
        "Downstream accuracy (GBT)",
        "downstream_task_boosted_trees",
        "10000:mean_test_accuracy",
        "boosted trees on 10,000 codes, mean over factors",
    ),
    (
        "Sample efficiency (LR)",
        "downstream_task_logistic_regression",
        "sample_efficiency",
        "accuracy with 100 codes / with 10,000",
    ),
)
# Sections that show a trained model; an outside encoder's evaluation has none of them.
MODEL_SECTIONS = ("config", "curves", "final-eval", "traversals", "animations", "reconstructions", "samples")
_FACTOR_INDEX = re.compile(r"(factor_|pred|sens)(\d+)")


def with_factor_names(key: str, names: list[str] | None) -> str:
    """``"10000:test_accuracy_factor_3"`` -> ``"10000:test_accuracy_posX"`` (also fairness' pred/sens)."""
    if not names:
        return key

    def name(match: re.Match) -> str:
        j = int(match.group(2))
        prefix = "" if match.group(1) == "factor_" else match.group(1) + ":"
        return prefix + names[j] if j < len(names) else match.group(0)

    return _FACTOR_INDEX.sub(name, key)


@dataclass(frozen=True)
class MetricDetail:
    """One metric's keys, factor names in place of indices, mean and sampled side by side."""

    metric: str
    anchor: str
    table: Table
    folded: bool  # long lists start folded away


def non_default_parameters(results: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    """``"beta_vae_sklearn: num_train=500 (study: 10000)"`` for every metric parameter that differs from
    disentanglement_lib's study default, and the metrics computed in fast mode."""
    from untwine.metrics.registry import METRICS

    notes = []
    for metric in sorted({m for reps in results.values() for m in reps}):
        spec = METRICS.get(metric)
        result = next(reps[metric] for reps in results.values() if metric in reps)
        given = result.get("parameters") or {}
        if spec is None or not isinstance(given, dict):
            continue
        changed = [
            f"{key}={given[key]} (study: {default})"
            for key, default in spec.defaults.items()
            if key in given and given[key] != default
        ]
        if result.get("mode") == "fast":
            changed.append("fast mode")
        if changed:
            notes.append(f"{metric}: {', '.join(changed)}")
    return notes


def headline_table(results: dict[str, dict[str, dict[str, Any]]]) -> Table | None:
    rows = []
    for label, metric, key, meaning in HEADLINE:
        values = [
            metric_scalars(results.get(rep, {}).get(metric, {"values": {}})).get(key)
            for rep in ("mean", "sampled")
        ]
        if all(v is None for v in values):
            continue
        rows.append(
            (
                Cell(label, link=f"#metric-{metric}"),
                Cell(meaning),
                *(Cell(_score(v), numeric=True) for v in values),
            )
        )
    return Table(("score", "what it measures", "mean", "sampled"), rows) if rows else None


def metric_details(
    results: dict[str, dict[str, dict[str, Any]]], names: list[str] | None
) -> list[MetricDetail]:
    out = []
    metrics = sorted({m for reps in results.values() for m in reps})
    for metric in metrics:
        per_rep = {
            rep: metric_scalars(results[rep][metric])
            for rep in ("mean", "sampled")
            if metric in results.get(rep, {})
        }
        keys = sorted({k for values in per_rep.values() for k in values})
        rows = [
            (
                Cell(with_factor_names(k, names)),
                *(Cell(_score(per_rep.get(rep, {}).get(k)), numeric=True) for rep in ("mean", "sampled")),
            )
            for k in keys
        ]
        out.append(
            MetricDetail(metric, f"metric-{metric}", Table(("key", "mean", "sampled"), rows), len(rows) > 12)
        )
    return out


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
    headline: Table | None
    metric_details: list[MetricDetail]
    evaluation_notes: list[str]  # metric settings that differ from the study's
    sections: tuple[str, ...]  # the ids of the sections shown
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


def _score(value: Any) -> str:
    """A score cell: the number, or a dash where the representation was not evaluated."""
    return "\u2013" if value is None else _format(value)


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
    results = load_metric_results(run_dir)
    scores = metric_table(results)
    curves = manifest.get("curves", {})
    values = manifest.get("traversal_values", [])
    animations = manifest.get("animations", {})
    kl = manifest.get("kl_per_latent")
    encoder = manifest.get("encoder")
    factor_names = list((dataset or {}).get("factor_names", [])) if isinstance(dataset, dict) else []
    if encoder and not factor_names:
        try:
            from untwine.data import get_spec

            factor_names = list(get_spec(encoder["dataset"]).factor_names)
        except (KeyError, ValueError, FileNotFoundError):
            factor_names = []  # codes without a named dataset: indices stay
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
        headline=headline_table(results),
        evaluation_notes=non_default_parameters(results),
        metric_details=metric_details(results, factor_names or None),
        sections=tuple(
            s
            for s in (
                "config",
                "curves",
                "final-eval",
                "metrics",
                "traversals",
                "animations",
                "reconstructions",
                "samples",
            )
            if not (encoder and s in MODEL_SECTIONS)
        ),
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
        ]
        + (
            [
                AnimationGroup(
                    "training pairs",
                    "What this weakly-supervised model trained on: chains in which each frame resamples 1 or "
                    "k factors of the previous one (one training pair per step); the caption names the "
                    "factors that changed ('=' when the new values equal the old).",
                    [Picture.from_file(out_dir, manifest["pair_animation"], "training pairs", pixels=True)],
                )
            ]
            if manifest.get("pair_animation")
            else []
        ),
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
