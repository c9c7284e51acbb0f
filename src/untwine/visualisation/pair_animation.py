"""What a weakly-supervised model sees: chains of pairs, as disentanglement_lib's
``visualize_weakly_supervised_dataset`` draws them.

Each chain starts from uniformly drawn factors; every next frame resamples 1 or ``k`` factors of the
previous one by the pair rule (:mod:`untwine.data.pairs`), so two consecutive frames are one training
pair.  Under each cell, a caption names the factors whose value changed since the previous frame
("=" when the resampled values happened to equal the old ones).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from untwine.data.pairs import resample_factors
from untwine.utils.rng import RandomLike, as_generator
from untwine.visualisation.animations import grid_shape, save_gif
from untwine.visualisation.annotate import as_rgb_uint8, caption_strip
from untwine.visualisation.images import image_grid

__all__ = ["pair_chains", "pair_chain_frames", "write_pair_animation"]


def pair_chains(
    dataset, k: int, rng: RandomLike, num_chains: int = 8, num_frames: int = 12
) -> tuple[np.ndarray, list[list[str]]]:
    """Factor chains ``(num_frames, num_chains, K)`` and, per frame and chain, the caption of what changed."""
    rng = as_generator(rng)
    factors = [dataset.sample_factors(num_chains, rng)]
    captions = [["start"] * num_chains]
    names = dataset.factor_names
    for _ in range(num_frames - 1):
        pairs = resample_factors(dataset, factors[-1], k, rng)
        factors.append(pairs.second)
        changed = pairs.first != pairs.second
        captions.append([", ".join(names[i] for i in np.flatnonzero(row)) or "=" for row in changed])
    return np.stack(factors), captions


def pair_chain_frames(
    dataset, k: int, rng: RandomLike, num_chains: int = 8, num_frames: int = 12
) -> np.ndarray:
    """uint8 RGB frames ``(num_frames, H, W, 3)``: the chains' observations side by side, captioned."""
    rng = as_generator(rng)
    factors, captions = pair_chains(dataset, k, rng, num_chains, num_frames)
    rows, columns = grid_shape(num_chains)
    width = dataset.observation_shape[1]
    out = []
    for frame, labels in zip(factors, captions, strict=True):
        images = dataset.sample_observations_from_factors(frame, rng)
        cells = [
            np.concatenate([as_rgb_uint8(image), caption_strip(label, width, size=8)], axis=0)
            for image, label in zip(images, labels, strict=True)
        ]
        cells += [np.full_like(cells[0], 255)] * (rows * columns - len(cells))
        out.append(as_rgb_uint8(image_grid([cells[r * columns : (r + 1) * columns] for r in range(rows)])))
    return np.stack(out)


def write_pair_animation(
    dataset,
    k: int,
    path: str | os.PathLike,
    seed: int = 0,
    num_chains: int = 8,
    num_frames: int = 12,
    fps: float = 2.0,
) -> Path:
    """``pair_chain_frames`` as a GIF at ``path`` (slow, so the captions can be read)."""
    return save_gif(pair_chain_frames(dataset, k, seed, num_chains, num_frames), path, fps=fps)
