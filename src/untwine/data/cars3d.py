"""Cars3D (Reed et al. 2015) from the published MATLAB files.

The folder ``cars3d/cars`` under the data root holds 183 files ``car_*_mesh.mat`` (extracted from
``nips2015-analogy-data.tar.gz``).  Each has a variable ``im`` of shape (128, 128, 3, 24, 4) uint8:
height, width, RGB, 24 azimuths, 4 elevations.  As in disentanglement_lib:

* the object id is the position of the file in the *sorted* file list;
* a mesh's 96 images are taken azimuth-major (``im`` transposed to (24, 4, 128, 128, 3) and
  flattened), so image ``k`` has elevation ``k % 4`` and azimuth ``k // 4``;
* each image is shrunk to 64x64 with PIL's ``thumbnail`` and Lanczos (formerly ``ANTIALIAS``) filter;
* the factors are (elevation 4, azimuth 24, object 183), all latent, rows in row-major order.

Images are stored uint8 (216 MB) and scaled by 1/255 only for the rows sampled.  Reading and resizing
the 183 files takes a while, so ``untwine data prepare cars3d`` caches the result as
``cars3d/cars3d.images.npy``, which later loads memory-map.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from untwine.data.arrays import check_array, open_npy, write_npy_atomic
from untwine.data.base import FactorSpace, ImageGridDataset
from untwine.data.paths import dataset_dir, require_file

NAME = "cars3d"
FOLDER = "cars3d"
MAT_FOLDER = "cars"
PREPARED_FILE = "cars3d.images.npy"
FACTOR_NAMES = ("elevation", "azimuth", "object")
FACTOR_SIZES = (4, 24, 183)
IMAGE_SHAPE = (64, 64, 3)


def _directory(data_dir) -> Path:
    return Path(data_dir) if data_dir is not None else dataset_dir(FOLDER)


def _space(factor_sizes: Sequence[int] | None) -> FactorSpace:
    sizes = FACTOR_SIZES if factor_sizes is None else tuple(int(s) for s in factor_sizes)
    if len(sizes) != 3:
        raise ValueError(f"cars3d factor_sizes must give 3 sizes {FACTOR_NAMES}, got {sizes}")
    return FactorSpace(sizes, FACTOR_NAMES)


def prepared_file(data_dir=None, **_: object) -> Path:
    return _directory(data_dir) / PREPARED_FILE


def missing(data_dir, **_: object) -> list[str]:
    directory = _directory(data_dir)
    return [] if (directory / MAT_FOLDER).is_dir() or (directory / PREPARED_FILE).exists() else [MAT_FOLDER]


def mesh_files(data_dir, space: FactorSpace) -> list[Path]:
    """The sorted ``.mat`` files; there must be one per object."""
    folder = require_file(_directory(data_dir) / MAT_FOLDER, NAME)
    files = sorted(folder.glob("*.mat"))
    if len(files) != space.sizes[2]:
        raise ValueError(f"{folder}: expected {space.sizes[2]} .mat files (one per car), found {len(files)}")
    return files


def read_mesh(path: Path, space: FactorSpace) -> np.ndarray:
    """One car's images, ``(elevations * azimuths, 128, 128, 3)`` uint8, azimuth-major (k = az * E + el)."""
    import scipy.io

    try:
        im = scipy.io.loadmat(path, variable_names=["im"]).get("im")
    except Exception as error:  # noqa: BLE001 - scipy raises several kinds for damaged files
        raise ValueError(f"{path} is not a readable MATLAB file ({error})") from None
    elevations, azimuths = space.sizes[0], space.sizes[1]
    if im is None:
        raise ValueError(f"{path}: expected a variable 'im', found none")
    if im.ndim != 5 or im.shape[2:] != (3, azimuths, elevations) or im.dtype != np.uint8:
        raise ValueError(
            f"{path} im: expected shape (H, W, 3, {azimuths}, {elevations}) uint8, found {im.shape} {im.dtype}"
        )
    mesh = np.transpose(im, (3, 4, 0, 1, 2))  # (azimuth, elevation, H, W, 3)
    return mesh.reshape((-1, *mesh.shape[2:]))


def shrink(image: np.ndarray, where: str) -> np.ndarray:
    """64x64 thumbnail of an RGB uint8 image with the Lanczos filter, as uint8."""
    from PIL import Image

    picture = Image.fromarray(np.ascontiguousarray(image))
    picture.thumbnail(IMAGE_SHAPE[:2], Image.LANCZOS)
    out = np.asarray(picture)
    if out.shape != IMAGE_SHAPE:
        raise ValueError(
            f"{where}: images must be square and at least 64x64; the thumbnail has shape {out.shape}"
        )
    return out


def convert(
    data_dir=None, factor_sizes: Sequence[int] | None = None, out: np.ndarray | None = None
) -> np.ndarray:
    """Read every mesh file and return the whole grid ``(N, 64, 64, 3)`` uint8 in row-major factor order."""
    space = _space(factor_sizes)
    files = mesh_files(data_dir, space)
    images = np.empty((space.num_states, *IMAGE_SHAPE), dtype=np.uint8) if out is None else out
    elevations = space.sizes[0]
    for obj, path in enumerate(files):
        mesh = read_mesh(path, space)
        k = np.arange(mesh.shape[0])
        rows = space.factors_to_index(
            np.stack([k % elevations, k // elevations, np.full_like(k, obj)], axis=1)
        )
        for row, image in zip(rows, mesh, strict=True):
            images[row] = shrink(image, str(path))
    return images


def _open_prepared(path: Path, space: FactorSpace) -> np.ndarray:
    images = open_npy(path)
    check_array(
        images,
        f"{path} (prepared; rebuild with `untwine data prepare {NAME} --force`)",
        (space.num_states, *IMAGE_SHAPE),
        np.uint8,
    )
    return images


def load_cars3d(
    data_dir: str | os.PathLike | None = None, factor_sizes: Sequence[int] | None = None
) -> ImageGridDataset:
    """Load Cars3D from ``cars3d.images.npy`` if prepared, else by converting the ``.mat`` files (slow).

    ``factor_sizes`` is for tests only: (elevations, azimuths, objects) of reduced ``.mat`` files.
    """
    directory = _directory(data_dir)
    space = _space(factor_sizes)
    prepared = directory / PREPARED_FILE
    images = _open_prepared(prepared, space) if prepared.exists() else convert(directory, factor_sizes)
    return ImageGridDataset(NAME, images, space, range(3), 1 / 255)


def check_files(data_dir=None, factor_sizes: Sequence[int] | None = None, **_: object) -> list[str]:
    """Check the prepared file's shape and every ``.mat`` file's ``im`` variable (headers only)."""
    import scipy.io

    directory = _directory(data_dir)
    space = _space(factor_sizes)
    lines = []
    if (directory / PREPARED_FILE).exists():
        _open_prepared(directory / PREPARED_FILE, space)
        lines.append(f"{PREPARED_FILE}: {space.num_states} uint8 images of 64x64x3")
    if (directory / MAT_FOLDER).exists() or not (directory / PREPARED_FILE).exists():
        files = mesh_files(directory, space)
        for path in files:
            try:
                variables = {name: (shape, kind) for name, shape, kind in scipy.io.whosmat(path)}
            except Exception as error:  # noqa: BLE001
                raise ValueError(f"{path} is not a readable MATLAB file ({error})") from None
            shape, kind = variables.get("im", (None, None))
            if (
                shape is None
                or len(shape) != 5
                or tuple(shape[2:]) != (3, space.sizes[1], space.sizes[0])
                or kind != "uint8"
            ):
                raise ValueError(
                    f"{path} im: expected (H, W, 3, {space.sizes[1]}, {space.sizes[0]}) uint8, found {shape} {kind}"
                )
        lines.append(
            f"{MAT_FOLDER}/: {len(files)} .mat files with im (H, W, 3, {space.sizes[1]}, {space.sizes[0]}) uint8"
        )
    return lines


def prepare(
    data_dir=None, factor_sizes: Sequence[int] | None = None, force: bool = False, **_: object
) -> Path:
    """Convert the ``.mat`` files once into ``cars3d.images.npy`` (atomic write)."""
    directory = _directory(data_dir)
    space = _space(factor_sizes)
    target = directory / PREPARED_FILE
    if target.exists() and not force:
        _open_prepared(target, space)
        return target
    mesh_files(directory, space)  # fail early, before creating anything

    def fill(array):
        convert(directory, factor_sizes, out=array)

    return write_npy_atomic(target, (space.num_states, *IMAGE_SHAPE), np.uint8, fill)
