"""The colour, noisy and scream views of a binary sprite dataset (dSprites or procedural dSprites).

They follow disentanglement_lib's definitions; the base observation is repeated to 3 channels:

* colour: the sprite times one colour per image, ``U(0.5, 1)^3``;
* noisy:  ``min(x + U(0, 1), 1)`` with independent noise per pixel and channel;
* scream: a random 64x64 crop of the background image, ``(crop + U(0, 1)^3) / 2``, with the pixels of
  the sprite replaced by ``1 - background`` (the sprite is drawn inverted on the painting).

The random colour/noise/crop are nuisance: none is a factor, so these datasets are not deterministic.
"""

from __future__ import annotations

import numpy as np

from untwine.data.base import GroundTruthDataset


class _SpriteVariant(GroundTruthDataset):
    deterministic = False

    def __init__(self, base: GroundTruthDataset, name: str):
        if base.num_channels != 1:
            raise ValueError(
                f"{name} needs a single-channel binary base dataset, got {base.observation_shape}"
            )
        self.base = base
        self.name = name
        self.factor_space = base.factor_space
        h, w, _ = base.observation_shape
        self.observation_shape = (h, w, 3)
        self.nuisance_factor_names = base.nuisance_factor_names
        self.nuisance_factor_sizes = base.nuisance_factor_sizes

    def _base(self, factors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return self.base._observations(factors, rng)


class ColorVariant(_SpriteVariant):
    def _observations(self, factors, rng):
        sprites = self._base(factors, rng)
        color = rng.uniform(0.5, 1.0, size=(sprites.shape[0], 1, 1, 3)).astype(np.float32)
        return sprites * color


class NoisyVariant(_SpriteVariant):
    def _observations(self, factors, rng):
        sprites = self._base(factors, rng)
        out = rng.random((sprites.shape[0], *self.observation_shape), dtype=np.float32)
        # In place: one (n, 64, 64, 3) buffer instead of three temporaries.
        np.add(out, sprites, out=out)
        return np.minimum(out, np.float32(1.0), out=out)


class ScreamVariant(_SpriteVariant):
    """``background`` is a float image ``(H, W, 3)`` in [0, 1], at least 65x65 (the thumbnailed painting)."""

    def __init__(self, base: GroundTruthDataset, name: str, background: np.ndarray):
        super().__init__(base, name)
        background = np.asarray(background, dtype=np.float32)
        h, w, _ = self.observation_shape
        if (
            background.ndim != 3
            or background.shape[2] != 3
            or background.shape[0] <= h
            or background.shape[1] <= w
        ):
            raise ValueError(
                f"{name}: the background image must be RGB and larger than {h}x{w}, got shape {background.shape}"
            )
        if background.min() < 0 or background.max() > 1:
            raise ValueError(f"{name}: the background image must have values in [0, 1]")
        self.background = background

    def _observations(self, factors, rng):
        sprites = self._base(factors, rng)
        n = sprites.shape[0]
        h, w, _ = self.observation_shape
        out = np.empty((n, h, w, 3), dtype=np.float32)
        for i in range(n):
            top = int(rng.integers(0, self.background.shape[0] - h))
            left = int(rng.integers(0, self.background.shape[1] - w))
            shift = rng.uniform(0.0, 1.0, size=3).astype(np.float32)
            patch = (self.background[top : top + h, left : left + w] + shift) / np.float32(2.0)
            mask = np.broadcast_to(sprites[i] == 1, patch.shape)
            out[i] = np.where(mask, np.float32(1.0) - patch, patch)
        return out


def load_scream_image(path, size: tuple[int, int] = (350, 274)) -> np.ndarray:
    """The painting as float32 ``(H, W, 3)`` in [0, 1], thumbnailed to fit ``size`` like disentanglement_lib."""
    from PIL import Image

    with Image.open(path) as image:
        image = image.convert("RGB")
        image.thumbnail(size)
        return np.asarray(image, dtype=np.float32) / np.float32(255.0)
