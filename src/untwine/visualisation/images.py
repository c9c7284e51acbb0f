"""Image grids, PNG output and the dataset overview picture.

Images are HWC (``(H, W)`` is read as one grey channel).  Grids keep the channels they are given:
all-grey inputs give a grey grid; as soon as one image has colour, the grey ones are repeated to RGB,
so grey stays grey and colour stays colour.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence

import numpy as np

from untwine.data.base import GroundTruthDataset
from untwine.utils.io import atomic_open
from untwine.utils.rng import RandomLike, as_generator


def _as_hwc(image) -> np.ndarray:
    array = np.asarray(image)
    if array.ndim == 2:
        array = array[..., np.newaxis]
    if array.ndim != 3 or array.shape[2] not in (1, 3):
        raise ValueError(f"an image must be (H, W), (H, W, 1) or (H, W, 3), got shape {array.shape}")
    return array


def _to_float(image: np.ndarray) -> np.ndarray:
    """uint8 -> [0, 1]; bool -> {0, 1}; floats pass through."""
    if image.dtype == np.uint8:
        return image.astype(np.float32) / np.float32(255)
    return image.astype(np.float32, copy=False)


def image_grid(images, pad: int = 2, pad_value: float = 1.0) -> np.ndarray:
    """Tile images into one float32 ``(H_grid, W_grid, C)`` picture.

    ``images`` is an array ``(R, C, H, W, ch)`` or a list of rows, each a sequence (or array) of HWC
    images; rows may differ in length (short rows are filled with ``pad_value``).  ``pad`` pixels of
    ``pad_value`` separate the images and frame the grid: ``H_grid = R*H + (R+1)*pad``.
    uint8 inputs are scaled to [0, 1].
    """
    if pad < 0:
        raise ValueError(f"pad must be >= 0, got {pad}")
    if isinstance(images, np.ndarray):
        if images.ndim == 4:  # (R, C, H, W) grey without channel axis
            images = images[..., np.newaxis]
        if images.ndim != 5:
            raise ValueError(f"an image array must be (R, C, H, W, ch), got shape {images.shape}")
    rows = [[_to_float(_as_hwc(image)) for image in row] for row in images]
    cells = [image for row in rows for image in row]
    if not cells:
        raise ValueError("image_grid needs at least one image")
    height, width = cells[0].shape[:2]
    if any(image.shape[:2] != (height, width) for image in cells):
        raise ValueError(
            f"all images must have the same height and width, got {sorted({i.shape[:2] for i in cells})}"
        )
    channels = max(image.shape[2] for image in cells)
    num_rows, num_cols = len(rows), max(len(row) for row in rows)
    grid = np.full(
        (num_rows * height + (num_rows + 1) * pad, num_cols * width + (num_cols + 1) * pad, channels),
        pad_value,
        dtype=np.float32,
    )
    for r, row in enumerate(rows):
        for c, image in enumerate(row):
            top, left = pad + r * (height + pad), pad + c * (width + pad)
            grid[top : top + height, left : left + width] = image  # 1 channel broadcasts to 3
    return grid


def to_uint8(image) -> np.ndarray:
    """Float images in [0, 1] (clipped) or bool -> uint8 0..255, rounding to nearest; uint8 passes through."""
    array = np.asarray(image)
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * np.uint8(255)
    array = array.astype(np.float64, copy=False)
    if not np.all(np.isfinite(array)):
        raise ValueError("cannot convert an image with NaN or infinite values to uint8")
    return np.round(np.clip(array, 0.0, 1.0) * 255.0).astype(np.uint8)


def save_png(path: str | os.PathLike, array) -> None:
    """Write an ``(H, W)``, ``(H, W, 1)`` (grey) or ``(H, W, 3)`` image as PNG, atomically."""
    from PIL import Image

    pixels = to_uint8(_as_hwc(array))
    # 2-D uint8 becomes mode "L" and (H, W, 3) uint8 mode "RGB".
    image = Image.fromarray(np.ascontiguousarray(pixels[..., 0] if pixels.shape[2] == 1 else pixels))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    with atomic_open(path, "wb") as handle:
        handle.write(buffer.getvalue())


def traversal_values(size: int, steps: int) -> np.ndarray:
    """At most ``steps`` factor indices spread evenly over ``0 .. size-1``, both ends included."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if size <= steps:
        return np.arange(size, dtype=np.int64)
    return np.unique(np.round(np.linspace(0, size - 1, steps)).astype(np.int64))


def dataset_overview(
    dataset: GroundTruthDataset, rng: RandomLike, num_samples: int = 16, traversal_steps: int = 10
) -> np.ndarray:
    """One picture of a dataset: uint8 ``(H, W, 3)``.

    On top, ``num_samples`` random observations in rows of ``traversal_steps``; below, one row per
    factor (in ``dataset.factor_names`` order): starting from one random factor vector, that factor
    swept over its values (evenly subsampled to ``traversal_steps``), the others held fixed.
    Nuisance factors and noise are redrawn per image, as the dataset does.
    """
    rng = as_generator(rng)
    if num_samples < 0:
        raise ValueError(f"num_samples must be >= 0, got {num_samples}")
    samples = dataset.sample_observations(num_samples, rng)
    rows: list[Sequence[np.ndarray]] = [
        samples[i : i + traversal_steps] for i in range(0, num_samples, traversal_steps)
    ]
    start = dataset.sample_factors(1, rng)[0]
    for k, size in enumerate(dataset.factor_sizes):
        sweep = np.repeat(start[np.newaxis, :], len(traversal_values(size, traversal_steps)), axis=0)
        sweep[:, k] = traversal_values(size, traversal_steps)
        rows.append(dataset.sample_observations_from_factors(sweep, rng))
    grid = image_grid(rows)
    if grid.shape[2] == 1:
        grid = np.repeat(grid, 3, axis=2)
    return to_uint8(grid)
