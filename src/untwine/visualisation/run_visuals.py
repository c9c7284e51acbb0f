"""Every picture of a trained run, written to one folder with a ``manifest.json`` that lists them.

``visualise_run(run_dir)`` writes to ``RUN_DIR/visualisation/``::

    reconstructions.png            (input | reconstruction) pairs
    samples.png                    decoded codes drawn from the prior N(0, I)
    traversals/traversal<i>.png    one row per latent, labelled with its KL
    animations/<kind>_cycle<i>.gif the five latent cycles of disentanglement_lib
    animations/pairs.gif           pair models only: chains of training pairs, changed factors named
    curves/*.png                   training curves from log.jsonl
    metrics/*.png                  latent x factor matrices of the metric results, when present
    manifest.json                  what was written (paths relative to the folder) and the settings

All randomness (which images are shown, prior samples) comes from ``seed``; the same run and seed give
the same pictures.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from untwine.utils.io import atomic_write_json
from untwine.visualisation.animations import CYCLES, write_latent_cycles
from untwine.visualisation.curves import write_training_curves
from untwine.visualisation.images import save_png
from untwine.visualisation.metric_plots import write_metric_plots
from untwine.visualisation.pair_animation import write_pair_animation
from untwine.visualisation.traversals import (
    DEFAULT_INTERVAL,
    DEFAULT_STEPS,
    encode,
    kl_per_latent,
    latent_traversal,
    reconstruct,
    reconstruction_pairs,
    sample_grid,
    sample_prior,
    traversal_figure,
    traversal_grid_values,
)

VISUALISATION_DIR = "visualisation"
MANIFEST_NAME = "manifest.json"


@dataclass(frozen=True)
class VisualisationSettings:
    """What ``untwine visualise`` draws; the defaults follow disentanglement_lib where it has one."""

    seed: int = 0
    num_images: int = 64  # encoded batch: fits the animation ranges and the KL per latent
    num_reconstructions: int = 24
    num_samples: int = 32
    num_traversals: int = 3  # base images with a traversal picture
    traversal_interval: tuple[float, float] = DEFAULT_INTERVAL
    traversal_steps: int = DEFAULT_STEPS
    num_animations: int = 3  # base images per animation kind
    num_frames: int = 20
    fps: float = 10.0
    columns: int = 8  # samples per row
    reconstruction_columns: int = 6  # (input | reconstruction) pairs per row

    def validate(self) -> None:
        for name in ("num_images", "num_frames", "columns", "reconstruction_columns", "traversal_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("num_reconstructions", "num_samples", "num_traversals", "num_animations"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not self.fps > 0:
            raise ValueError(f"fps must be > 0, got {self.fps}")


def default_out_dir(run_dir: str | os.PathLike) -> Path:
    return Path(run_dir) / VISUALISATION_DIR


def _relative(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def visualise_run(
    run_dir: str | os.PathLike,
    out_dir: str | os.PathLike | None = None,
    settings: VisualisationSettings | None = None,
    device: str = "cpu",
    model=None,
    dataset=None,
) -> dict[str, Any]:
    """Write every picture of the run in ``run_dir`` to ``out_dir`` (default ``RUN_DIR/visualisation``).

    ``model``/``dataset`` replace the run's trained model and dataset when given (any object with
    ``encode``/``decode``; a ground-truth dataset).  Returns the manifest, also written as ``manifest.json``.
    """
    from untwine.data import get_dataset
    from untwine.encoders.record import read_encoder_record
    from untwine.training.loop import load_run_config
    from untwine.training.representation import load_trained_model

    settings = settings or VisualisationSettings()
    settings.validate()
    run_dir = Path(run_dir)
    out_dir = Path(out_dir) if out_dir is not None else default_out_dir(run_dir)
    record = read_encoder_record(run_dir)
    if record is not None and model is None:
        return _visualise_scores_only(run_dir, out_dir, settings, record)
    config = load_run_config(run_dir)
    if model is None:
        _, model = load_trained_model(run_dir, device)
    dataset = dataset if dataset is not None else get_dataset(config.dataset)
    rng = np.random.default_rng(settings.seed)
    count = max(
        settings.num_images, settings.num_reconstructions, settings.num_traversals, settings.num_animations
    )
    images = dataset.sample_observations(count, rng)
    manifest: dict[str, Any] = {
        "run_dir": str(run_dir),
        "settings": asdict(settings),
        "num_channels": int(images.shape[-1]),
    }

    means, logvars = encode(model, images)
    kl = kl_per_latent(means[: settings.num_images], logvars[: settings.num_images])
    manifest["kl_per_latent"] = [float(v) for v in kl]

    if settings.num_reconstructions:
        shown = images[: settings.num_reconstructions]
        path = out_dir / "reconstructions.png"
        save_png(
            path,
            reconstruction_pairs(shown, reconstruct(model, shown), columns=settings.reconstruction_columns),
        )
        manifest["reconstructions"] = _relative(path, out_dir)
    if settings.num_samples:
        _, samples = sample_prior(model, settings.num_samples, seed=settings.seed, num_latents=means.shape[1])
        path = out_dir / "samples.png"
        save_png(path, sample_grid(samples, columns=settings.columns))
        manifest["samples"] = _relative(path, out_dir)

    values = traversal_grid_values(settings.traversal_interval, settings.traversal_steps)
    manifest["traversal_values"] = [float(v) for v in values]
    manifest["traversals"] = []
    for i in range(settings.num_traversals):
        path = out_dir / "traversals" / f"traversal{i}.png"
        save_png(path, traversal_figure(latent_traversal(model, means[i], values), values, kl))
        manifest["traversals"].append(_relative(path, out_dir))

    animations = write_latent_cycles(
        model,
        means[: settings.num_images],
        logvars[: settings.num_images],
        out_dir / "animations",
        num_animations=settings.num_animations,
        num_frames=settings.num_frames,
        fps=settings.fps,
    )
    manifest["animations"] = {
        kind: [_relative(p, out_dir) for p in animations.get(kind, [])] for kind in CYCLES
    }

    if getattr(model, "needs_pairs", False):  # what the model trained on, next to what it learned
        path = write_pair_animation(
            dataset, model.pair_k, out_dir / "animations" / "pairs.gif", seed=settings.seed
        )
        manifest["pair_animation"] = _relative(path, out_dir)

    curves = write_training_curves(run_dir, out_dir / "curves")
    manifest["curves"] = {name: _relative(path, out_dir) for name, path in curves.items()}

    factor_names = list(getattr(dataset, "factor_names", []) or []) or None
    plots = write_metric_plots(
        run_dir, out_dir / "metrics", factor_names, num_latents=int(means.shape[1]), kl_per_latent=kl
    )
    manifest["metric_plots"] = [{**entry, "path": _relative(entry["path"], out_dir)} for entry in plots]

    atomic_write_json(out_dir / MANIFEST_NAME, manifest)
    return manifest


def _visualise_scores_only(run_dir: Path, out_dir: Path, settings, record) -> dict[str, Any]:
    """The pictures of an outside encoder's evaluation (``untwine evaluate --torchscript ...``): only the
    metric heatmaps -- there is no decoder to draw reconstructions or traversals, and no training."""
    factor_names = None
    try:
        from untwine.data import get_spec

        factor_names = list(get_spec(record.dataset).factor_names)
    except (KeyError, ValueError):
        pass  # codes without a named dataset: factors are shown by index
    plots = write_metric_plots(run_dir, out_dir / "metrics", factor_names, num_latents=record.code_dim)
    manifest: dict[str, Any] = {
        "run_dir": str(run_dir),
        "settings": asdict(settings),
        "encoder": asdict(record),
        "metric_plots": [{**entry, "path": _relative(entry["path"], out_dir)} for entry in plots],
    }
    atomic_write_json(out_dir / MANIFEST_NAME, manifest)
    return manifest


def read_manifest(out_dir: str | os.PathLike) -> dict[str, Any]:
    path = Path(out_dir) / MANIFEST_NAME
    if not path.exists():
        raise FileNotFoundError(f"no {MANIFEST_NAME} in {out_dir}; run `untwine visualise` first")
    return json.loads(path.read_text(encoding="utf-8"))
