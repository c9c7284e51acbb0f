"""The study report's gallery: one small latent-traversal strip per trained model, linked to its run report,
so that a reader can see what a score means.

Every model of a dataset traverses the same image (drawn with seed 0); rows are the latents whose KL
to the prior, averaged over 16 images, is above the inactive threshold (collapsed latents are left out
to keep the strips small), 7 values over [-2, 2].  At most ``max_models`` models are drawn (in grid
order: dataset, model, value, seed); the report says how many were left out.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from untwine.report.records import Picture

GALLERY_DIR = "gallery"
STRIP_STEPS = 7
BASE_IMAGES = 16


@dataclass(frozen=True)
class GalleryItem:
    caption: str
    picture: Picture
    link: str | None  # the run's report.html relative to the study report, when it exists


def _strip(model, images) -> np.ndarray:
    from untwine.visualisation.traversals import (
        INACTIVE_KL,
        encode,
        kl_per_latent,
        latent_traversal,
        traversal_figure,
        traversal_grid_values,
    )

    mean, logvar = encode(model, images)
    kl = kl_per_latent(mean, logvar)
    active = [int(d) for d in np.flatnonzero(kl >= INACTIVE_KL)] or [int(np.argmax(kl))]
    values = traversal_grid_values((-2.0, 2.0), STRIP_STEPS)
    traversal = latent_traversal(model, mean[0], values, dimensions=active)
    return traversal_figure(traversal, values, kl, dimensions=active)


def gallery(
    study_dir: str | Path, runs, out_dir: str | Path, max_models: int = 60
) -> tuple[list[GalleryItem], int]:
    """``(items, left_out)`` for the finished runs in ``runs`` (the store's runs frame) that have a checkpoint."""
    from untwine.data import get_dataset
    from untwine.studies.runner import run_dir_for
    from untwine.training.representation import load_trained_model
    from untwine.visualisation.images import save_png

    out_dir = Path(out_dir)
    if runs.empty:
        return [], 0
    finished = runs[runs["status"] == "done"].sort_values(["dataset", "model", "value", "seed"])
    drawable = [
        row
        for _, row in finished.iterrows()
        if (run_dir_for(study_dir, int(row["model_num"])) / "checkpoint.pt").exists()
    ]
    images_of: dict[str, np.ndarray] = {}
    items = []
    for row in drawable[:max_models]:
        num = int(row["model_num"])
        run_dir = run_dir_for(study_dir, num)
        if row["dataset"] not in images_of:
            images_of[row["dataset"]] = get_dataset(row["dataset"]).sample_observations(
                BASE_IMAGES, np.random.default_rng(0)
            )
        _, model = load_trained_model(run_dir, "cpu")
        name = f"{GALLERY_DIR}/model{num}.png"
        (out_dir / GALLERY_DIR).mkdir(parents=True, exist_ok=True)
        save_png(out_dir / name, _strip(model, images_of[row["dataset"]]))
        data = (out_dir / name).read_bytes()
        report = run_dir / "report.html"
        link = os.path.relpath(report, out_dir) if report.exists() else None
        caption = f"#{num}: {row['dataset']}, {row['model']} {row['parameter']}={row['value']:g}, seed {row['seed']}"
        items.append(GalleryItem(caption, Picture.from_png(name, data, caption), link))
    return items, max(len(drawable) - max_models, 0)
