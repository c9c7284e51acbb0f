"""MPI3D toy / realistic / real (Gondal et al. 2019) from the published ``.npz`` files.

Each file (folder ``mpi3d`` under the data root: ``mpi3d_toy.npz``, ``mpi3d_realistic.npz``,
``mpi3d_real.npz``) holds one array ``images``: (1036800, 64, 64, 3) uint8, the row-major grid over
object colour (6), object shape (6), object size (2), camera height (3), background colour (3),
horizontal axis (40) and vertical axis (40).  (disentanglement_lib's older ``mpi3d_toy`` release had
4 colours x 4 shapes; the files published with the final data set have 6 x 6.)

The images are 12.7 GB, so they are never loaded: the published files are written by ``numpy.savez``
(stored, not compressed), so the ``images`` member lies raw inside the zip and the rows sampled are read
from it in place (:class:`untwine.data.arrays.RowFile`; resident memory is the batch, not the file).  If
a copy is compressed, ``untwine data prepare mpi3d_<variant>`` streams it once into
``mpi3d_<variant>.images.npy``, which is then read the same way (and preferred when present).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from untwine.data.arrays import (
    RowFile,
    check_array,
    iter_member_rows,
    npy_rows,
    npz_member,
    npz_member_rows,
    write_npy_chunks_atomic,
)
from untwine.data.base import FactorSpace, ImageGridDataset
from untwine.data.paths import dataset_dir, require_file
from untwine.data.registry import MPI3D_FACTORS, MPI3D_SIZES

FOLDER = "mpi3d"
VARIANTS = ("toy", "realistic", "real")
IMAGE_SHAPE = (64, 64, 3)
_CHUNK_ROWS = 8192


def _directory(data_dir) -> Path:
    return Path(data_dir) if data_dir is not None else dataset_dir(FOLDER)


def _names(variant: str) -> tuple[str, str, str]:
    """(dataset name, published file, prepared file) of a variant."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown MPI3D variant {variant!r}; choose one of {VARIANTS}")
    name = f"mpi3d_{variant}"
    return name, f"{name}.npz", f"{name}.images.npy"


def _space(factor_sizes: Sequence[int] | None) -> FactorSpace:
    sizes = MPI3D_SIZES if factor_sizes is None else tuple(int(s) for s in factor_sizes)
    if len(sizes) != len(MPI3D_SIZES):
        raise ValueError(f"MPI3D factor_sizes must give 7 sizes {MPI3D_FACTORS}, got {sizes}")
    return FactorSpace(sizes, MPI3D_FACTORS)


def prepared_file(data_dir=None, variant: str = "toy", **_: object) -> Path:
    return _directory(data_dir) / _names(variant)[2]


def missing(data_dir, variant: str = "toy", **_: object) -> list[str]:
    _, published, prepared = _names(variant)
    directory = _directory(data_dir)
    return [] if (directory / published).exists() or (directory / prepared).exists() else [published]


def _member(path: Path, space: FactorSpace):
    member = npz_member(path, "images")
    check_array(member, f"{path} images", (space.num_states, *IMAGE_SHAPE), np.uint8)
    return member


def _open_prepared(path: Path, space: FactorSpace, name: str) -> RowFile:
    images = npy_rows(path)
    check_array(
        images,
        f"{path} (prepared; rebuild with `untwine data prepare {name} --force`)",
        (space.num_states, *IMAGE_SHAPE),
        np.uint8,
    )
    return images


def load_mpi3d(
    data_dir: str | os.PathLike | None = None,
    variant: str = "toy",
    factor_sizes: Sequence[int] | None = None,
) -> ImageGridDataset:
    """Load ``mpi3d_<variant>``, rows read on demand (prepared ``.npy`` if present, else the ``.npz`` member).

    ``factor_sizes`` is for tests only: the 7 grid sizes of a reduced file in the published format.
    """
    name, published, prepared = _names(variant)
    directory = _directory(data_dir)
    space = _space(factor_sizes)
    if (directory / prepared).exists():
        images = _open_prepared(directory / prepared, space, name)
    else:
        member = _member(require_file(directory / published, name), space)
        if member.compressed:
            raise ValueError(
                f"{member.where} is compressed, so its rows cannot be read in place and it is too large to load; "
                f"run `untwine data prepare {name}` once to convert it to {prepared}"
            )
        images = npz_member_rows(member)
    return ImageGridDataset(name, images, space, range(space.num_factors), 1 / 255)


def check_files(
    data_dir=None, variant: str = "toy", factor_sizes: Sequence[int] | None = None, **_: object
) -> list[str]:
    name, published, prepared = _names(variant)
    directory = _directory(data_dir)
    space = _space(factor_sizes)
    lines = []
    if (directory / prepared).exists():
        _open_prepared(directory / prepared, space, name)
        lines.append(f"{prepared}: {space.num_states} uint8 images of 64x64x3")
    if (directory / published).exists() or not (directory / prepared).exists():
        member = _member(require_file(directory / published, name), space)
        how = "compressed (run prepare)" if member.compressed else "stored uncompressed, rows read in place"
        lines.append(f"{published}: images {member.shape} uint8, {how}")
    return lines


def prepare(
    data_dir=None,
    variant: str = "toy",
    factor_sizes: Sequence[int] | None = None,
    force: bool = False,
    **_: object,
) -> Path:
    """Stream the ``images`` member into ``mpi3d_<variant>.images.npy`` (atomic; one chunk in memory).

    An uncompressed ``.npz`` is already read in place, so unless ``force`` is set nothing is written
    and the ``.npz`` path is returned.
    """
    name, published, prepared = _names(variant)
    directory = _directory(data_dir)
    space = _space(factor_sizes)
    target = directory / prepared
    if target.exists() and not force:
        _open_prepared(target, space, name)
        return target
    member = _member(require_file(directory / published, name), space)
    if not member.compressed and not force:
        return member.path  # already read in place: a copy would gain nothing

    return write_npy_chunks_atomic(target, member.shape, np.uint8, iter_member_rows(member, _CHUNK_ROWS))
