"""3D Shapes (Burgess & Kim 2018) from the published ``3dshapes.h5``.

The HDF5 file (folder ``shapes3d`` under the data root) holds two datasets:

* ``images``: (480000, 64, 64, 3) uint8 RGB;
* ``labels``: (480000, 6) float64 factor *values* of floor hue, wall hue, object hue, scale, shape and
  orientation, with 10, 10, 10, 8, 4 and 15 distinct values.

Rows are the row-major grid over these six factors (the last varies fastest), which is checked by
ranking each label column's values.  Images stay uint8 and are scaled by 1/255 only for the rows
sampled.  Random row access into the (gzip-chunked) HDF5 file is slow;
``untwine data prepare shapes3d`` writes ``3dshapes.images.npy`` (5.9 GB, uint8), whose rows later
loads read directly (:class:`untwine.data.arrays.RowFile`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from untwine.data.arrays import RowFile, check_array, npy_rows, write_npy_chunks_atomic
from untwine.data.base import FactorSpace, H5Images, ImageGridDataset
from untwine.data.paths import dataset_dir, require_file
from untwine.data.registry import SHAPES3D_FACTORS, SHAPES3D_SIZES

H5_FILE = "3dshapes.h5"
PREPARED_FILE = "3dshapes.images.npy"
FOLDER = "shapes3d"
NAME = "shapes3d"
IMAGE_SHAPE = (64, 64, 3)
_CHUNK_ROWS = 8000


def _directory(data_dir) -> Path:
    return Path(data_dir) if data_dir is not None else dataset_dir(FOLDER)


def _space(factor_sizes: Sequence[int] | None) -> FactorSpace:
    sizes = SHAPES3D_SIZES if factor_sizes is None else tuple(int(s) for s in factor_sizes)
    if len(sizes) != len(SHAPES3D_SIZES):
        raise ValueError(f"shapes3d factor_sizes must give 6 sizes {SHAPES3D_FACTORS}, got {sizes}")
    return FactorSpace(sizes, SHAPES3D_FACTORS)


def prepared_file(data_dir=None, **_: object) -> Path:
    return _directory(data_dir) / PREPARED_FILE


def missing(data_dir, **_: object) -> list[str]:
    directory = _directory(data_dir)
    return [] if (directory / H5_FILE).exists() or (directory / PREPARED_FILE).exists() else [H5_FILE]


def _open_h5(path: Path):
    import h5py

    try:
        return h5py.File(path, "r")
    except OSError as error:
        raise ValueError(f"{path} is not a readable HDF5 file ({error}); it may be truncated") from None


def check_labels(labels: np.ndarray, space: FactorSpace, where: str) -> None:
    """Each label column must take ``size`` distinct values whose ranks are the row-major grid indices."""
    expected = space.index_to_factors(np.arange(space.num_states))
    for column, (name, size) in enumerate(zip(space.names, space.sizes, strict=True)):
        values = np.unique(labels[:, column])
        if len(values) != size:
            raise ValueError(
                f"{where}: factor '{name}' should take {size} distinct values, found {len(values)}"
            )
        ranks = np.searchsorted(values, labels[:, column])
        if not np.array_equal(ranks, expected[:, column]):
            row = int(np.argmax(ranks != expected[:, column]))
            raise ValueError(
                f"{where}: rows are not in row-major grid order over {space}: row {row} has '{name}' index "
                f"{int(ranks[row])}, expected {int(expected[row, column])}"
            )


def _check_h5(path: Path, space: FactorSpace) -> None:
    with _open_h5(path) as handle:
        for key in ("images", "labels"):
            if key not in handle:
                raise ValueError(
                    f"{path}: expected datasets 'images' and 'labels', found {sorted(handle.keys())}"
                )
        check_array(handle["images"], f"{path} images", (space.num_states, *IMAGE_SHAPE), np.uint8)
        labels = handle["labels"]
        if labels.shape != (space.num_states, space.num_factors):
            raise ValueError(
                f"{path} labels: expected shape {(space.num_states, space.num_factors)}, found {labels.shape}"
            )
        check_labels(np.asarray(labels[()], dtype=np.float64), space, f"{path} labels")


def _open_prepared(path: Path, space: FactorSpace) -> RowFile:
    images = npy_rows(path)
    check_array(
        images,
        f"{path} (prepared; rebuild with `untwine data prepare {NAME} --force`)",
        (space.num_states, *IMAGE_SHAPE),
        np.uint8,
    )
    return images


def load_shapes3d(
    data_dir: str | os.PathLike | None = None, factor_sizes: Sequence[int] | None = None
) -> ImageGridDataset:
    """Load 3D Shapes: rows of the prepared ``.npy`` if present, else rows read from the HDF5 file.

    ``factor_sizes`` is for tests only: the grid of a reduced file written in the published format.
    """
    directory = _directory(data_dir)
    space = _space(factor_sizes)
    prepared = directory / PREPARED_FILE
    if prepared.exists():
        images = _open_prepared(prepared, space)
    else:
        path = require_file(directory / H5_FILE, NAME)
        _check_h5(path, space)
        images = H5Images(path, "images")
    return ImageGridDataset(NAME, images, space, range(space.num_factors), 1 / 255)


def check_files(data_dir=None, factor_sizes: Sequence[int] | None = None, **_: object) -> list[str]:
    directory = _directory(data_dir)
    space = _space(factor_sizes)
    lines = []
    if (directory / PREPARED_FILE).exists():
        _open_prepared(directory / PREPARED_FILE, space)
        lines.append(f"{PREPARED_FILE}: {space.num_states} uint8 images of 64x64x3")
    if (directory / H5_FILE).exists() or not (directory / PREPARED_FILE).exists():
        _check_h5(require_file(directory / H5_FILE, NAME), space)
        lines.append(
            f"{H5_FILE}: images {(space.num_states, *IMAGE_SHAPE)} uint8, labels in row-major grid order"
        )
    return lines


def prepare(
    data_dir=None, factor_sizes: Sequence[int] | None = None, force: bool = False, **_: object
) -> Path:
    """Copy the HDF5 images into ``3dshapes.images.npy`` (same row order), chunk by chunk, atomically."""
    directory = _directory(data_dir)
    space = _space(factor_sizes)
    target = directory / PREPARED_FILE
    if target.exists() and not force:
        _open_prepared(target, space)
        return target
    path = require_file(directory / H5_FILE, NAME)
    _check_h5(path, space)

    def chunks():
        with _open_h5(path) as handle:
            images = handle["images"]
            for start in range(0, space.num_states, _CHUNK_ROWS):
                yield images[start : start + _CHUNK_ROWS]

    return write_npy_chunks_atomic(target, (space.num_states, *IMAGE_SHAPE), np.uint8, chunks())
