"""The per-run HTML report: one self-contained file that opens from the file system.

``write_run_report(run_dir)`` draws the run's pictures (:func:`untwine.visualisation.run_visuals.visualize_run`)
and writes ``RUN_DIR/report.html`` with: the config, training curves, the held-out evaluation, metric
scores and matrices, latent traversals, the animated latent cycles, reconstructions and prior samples.
Every image is embedded as a base64 ``data:`` URI and the styles are inline; a Content-Security-Policy
forbids anything else, so the report never reaches for the network and shows the same everywhere.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

from untwine import __version__
from untwine.report.page import escape, page
from untwine.utils.io import atomic_write_text
from untwine.visualisation.animations import CYCLES
from untwine.visualisation.metric_plots import load_metric_results, metric_table
from untwine.visualisation.run_visuals import (
    VisualisationSettings,
    default_out_dir,
    read_manifest,
    visualize_run,
)

REPORT_NAME = "report.html"
_MIME = {".png": "image/png", ".gif": "image/gif", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}

CYCLE_DESCRIPTIONS = {
    "std_gaussian": "Quantiles of the prior N(0, 1), linear in probability (0.1% .. 99.9%).",
    "fitted_gaussian": "Quantiles of a Gaussian fitted to each latent's codes over the batch.",
    "fixed_interval": "Linear through the fixed interval [-2, 2].",
    "conf_interval": "Linear through mean &plusmn; 2 standard deviations of the fitted Gaussian.",
    "minmax_interval": "Linear between the smallest and largest code of each latent in the batch.",
}


def data_uri(path: str | os.PathLike) -> str:
    """``data:<mime>;base64,...`` of an image file."""
    path = Path(path)
    mime = _MIME.get(path.suffix.lower())
    if mime is None:
        raise ValueError(f"cannot embed {path.name}: unknown image type {path.suffix!r}")
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


_e = escape


def _format(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return _e(value)
    if isinstance(value, float):
        return _e(f"{value:.6g}")
    if isinstance(value, list) and value and all(isinstance(v, int | float) for v in value):
        return _e("[" + ", ".join(f"{v:.3g}" for v in value) + "]")
    if isinstance(value, dict | list):
        return _e(json.dumps(value, sort_keys=True))
    return _e(value)


def _table(rows: list[tuple[Any, ...]], header: tuple[str, ...], numeric: tuple[int, ...] = ()) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="num">{_format(c)}</td>' if i in numeric else f"<td>{_format(c)}</td>"
            for i, c in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


class _Images:
    """Embeds image files of the visualisation folder; missing ones become a visible note, not a broken <img>."""

    def __init__(self, root: Path):
        self.root = root

    def figure(self, relative: str | None, caption: str = "", alt: str = "", pixels: bool = False) -> str:
        if not relative:
            return ""
        path = self.root / relative
        if not path.exists():
            return f'<p class="missing">missing image: {_e(relative)}</p>'
        css = ' class="pixels"' if pixels else ""
        caption_html = f"<figcaption>{_e(caption)}</figcaption>" if caption else ""
        return (
            f'<figure><img{css} src="{data_uri(path)}" alt="{_e(alt or caption or relative)}">'
            f"{caption_html}</figure>"
        )


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _config_section(run_info: dict[str, Any] | None) -> str:
    if not run_info:
        return '<p class="missing">config.json is missing or unreadable.</p>'
    config = run_info.get("config", {})
    parts = [_table([(k, v) for k, v in config.items()], ("key", "value"))]
    dataset = run_info.get("dataset")
    if isinstance(dataset, dict):
        parts.append("<h3>Dataset</h3>" + _table([(k, v) for k, v in dataset.items()], ("key", "value")))
    extra = {k: run_info[k] for k in ("device", "git_commit", "seeds", "versions") if k in run_info}
    if extra:
        parts.append(
            "<details><summary>Environment</summary>"
            + _table([(k, v) for k, v in extra.items()], ("key", "value"))
            + "</details>"
        )
    return "".join(parts)


def _final_eval_section(final_eval: dict[str, Any] | None) -> str:
    if not final_eval:
        return '<p class="missing">final_eval.json is missing (the run has not finished).</p>'
    terms = final_eval.get("terms", {})
    meta = ", ".join(
        f"{k} = {final_eval[k]}"
        for k in ("step", "num_batches", "batch_size", "seed", "finite")
        if k in final_eval
    )
    rows = [(k, v) for k, v in terms.items()] if isinstance(terms, dict) else []
    return f'<p class="note">{_e(meta)}</p>' + _table(rows, ("term", "value"), numeric=(1,))


def _metrics_section(
    results: dict[str, dict[str, dict[str, Any]]], manifest: dict[str, Any], images: _Images
) -> str:
    rows = metric_table(results)
    if not rows and not manifest.get("metric_plots"):
        return (
            '<p class="missing">No metric results in RUN_DIR/metrics yet '
            "(<code>untwine evaluate RUN_DIR</code> writes them).</p>"
        )
    parts = [_table(rows, ("representation", "metric", "score", "value"), numeric=(3,))] if rows else []
    plots = manifest.get("metric_plots", [])
    if plots:
        parts.append("<h3>Latent &times; factor matrices</h3>")
        parts.extend(
            images.figure(p["path"], f"{p['metric']}: {p['name']} ({p['representation']})") for p in plots
        )
    return "".join(parts)


def _kl_table(kl: list[float]) -> str:
    from untwine.visualisation.traversals import INACTIVE_KL

    rows = [(f"z{j}", value, "inactive" if value < INACTIVE_KL else "active") for j, value in enumerate(kl)]
    return _table(rows, ("latent", "KL (nats)", ""), numeric=(1,))


def render_run_report(run_dir: str | os.PathLike, out_dir: str | os.PathLike | None = None) -> str:
    """The HTML text of the report, from the run's files and the pictures already in ``out_dir``."""
    run_dir = Path(run_dir)
    out_dir = Path(out_dir) if out_dir is not None else default_out_dir(run_dir)
    manifest = read_manifest(out_dir)
    images = _Images(out_dir)
    run_info = _read_json(run_dir / "config.json")
    final_eval = _read_json(run_dir / "final_eval.json")
    results = load_metric_results(run_dir)
    config = (run_info or {}).get("config", {})
    title = f"{config.get('model', 'model')} on {config.get('dataset', 'dataset')}"
    settings = manifest.get("settings", {})

    sections: list[tuple[str, str, str]] = []
    sections.append(("config", "Configuration", _config_section(run_info)))
    curves = manifest.get("curves", {})
    curve_captions = {
        "loss_terms": "Loss terms against the step",
        "kl_per_latent": "KL per latent against the step",
        "capacity": "AnnealedVAE: capacity target C(t) and total KL",
    }
    curves_html = "".join(
        images.figure(curves[name], curve_captions.get(name, name))
        for name in ("loss_terms", "kl_per_latent", "capacity")
        if name in curves
    )
    sections.append(
        ("curves", "Training curves", curves_html or '<p class="missing">log.jsonl is missing or empty.</p>')
    )
    sections.append(("final-eval", "Held-out evaluation", _final_eval_section(final_eval)))
    sections.append(("metrics", "Metrics", _metrics_section(results, manifest, images)))

    values = manifest.get("traversal_values", [])
    interval = f"[{values[0]:g}, {values[-1]:g}] in {len(values)} steps" if values else ""
    traversal_html = (
        f'<p class="note">Each row replaces one latent of an image\'s mean code by the values {_e(interval)} '
        "(column headers) and decodes; the label is the latent's KL to the prior averaged over "
        f"{_e(settings.get('num_images', ''))} images &mdash; grey rows marked inactive carry no information.</p>"
        + "".join(
            images.figure(p, f"base image {i}", pixels=True)
            for i, p in enumerate(manifest.get("traversals", []))
        )
    )
    if manifest.get("kl_per_latent"):
        traversal_html += (
            "<details><summary>KL per latent</summary>" + _kl_table(manifest["kl_per_latent"]) + "</details>"
        )
    sections.append(("traversals", "Latent traversals", traversal_html))

    animations = manifest.get("animations", {})
    animation_html = [
        f'<p class="note">One cell per latent; in each cell only that latent moves along a cycle from the '
        f"image's code to the top of the range, down to the bottom and back "
        f"({_e(settings.get('num_frames', ''))} frames at {_e(settings.get('fps', ''))} fps, looping).</p>"
    ]
    for kind in CYCLES:
        paths = animations.get(kind, [])
        if paths:
            animation_html.append(
                f'<h3>{_e(kind.replace("_", " "))}</h3><p class="note">{CYCLE_DESCRIPTIONS[kind]}</p>'
            )
            animation_html.extend(
                images.figure(p, f"base image {i}", pixels=True) for i, p in enumerate(paths)
            )
    sections.append(("animations", "Animated latent cycles", "".join(animation_html)))
    sections.append(
        (
            "reconstructions",
            "Reconstructions",
            '<p class="note">Pairs of (input | decoded mean code).</p>'
            + images.figure(manifest.get("reconstructions"), pixels=True, alt="reconstructions"),
        )
    )
    sections.append(
        (
            "samples",
            "Samples from the prior",
            f'<p class="note">Codes drawn from N(0, I) (seed {_e(settings.get("seed", ""))}), decoded.</p>'
            + images.figure(manifest.get("samples"), pixels=True, alt="samples"),
        )
    )

    subtitle = " &middot; ".join(
        _e(part)
        for part in (
            f"run {run_dir.resolve().name}",
            f"{config.get('steps', '?')} steps",
            f"seed {config.get('seed', '?')}",
        )
    )
    footer = f'<p class="note">Generated by untwine {_e(__version__)}.</p>'
    return page(f"untwine report: {title}", title, subtitle, sections, footer=footer)


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
    visualize_run(run_dir, out_dir, settings=settings, device=device, model=model, dataset=dataset)
    path = Path(report_path) if report_path is not None else run_dir / REPORT_NAME
    atomic_write_text(path, render_run_report(run_dir, out_dir))
    return path
