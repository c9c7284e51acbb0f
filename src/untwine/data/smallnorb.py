"""SmallNORB (LeCun et al. 2004) from the six published NORB binary-matrix files.

Files (folder ``smallnorb`` under the data root, decompressed from the published ``.mat.gz``):
``smallnorb-5x46789x9x18x6x2x96x96-training-{dat,cat,info}.mat`` and
``smallnorb-5x01235x9x18x6x2x96x96-testing-{dat,cat,info}.mat``.

A NORB binary matrix is: int32 magic (``0x1E3D4C55`` uint8 matrix, ``0x1E3D4C54`` int32 matrix), int32
``ndim``, ``max(3, ndim)`` int32 dimensions (only the first ``ndim`` count), then the data; everything
little-endian.  Per split of ``n = 24300`` rows:

* ``dat``: (n, 2, 96, 96) uint8, the stereo pair; camera 0 is used;
* ``cat``: (n,) int32, the category 0..4;
* ``info``: (n, 4) int32 columns instance (0..9), elevation (0..8), azimuth (0, 2, ..., 34) and
  lighting (0..5).

As in disentanglement_lib, the two splits are merged, the features are
``[category, instance, elevation, azimuth / 2, lighting]`` with sizes ``[5, 10, 9, 18, 6]``, the
instance is a nuisance factor drawn uniformly per observation, and images are resized 96 -> 64 with
PIL's Lanczos (formerly ``ANTIALIAS``) filter.  The files are not in factor order, so each image is
placed at the row-major index of its own features (and every combination must occur exactly once).
Converting takes a few seconds; ``untwine data prepare smallnorb`` caches the grid as
``smallnorb.images.npy``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from untwine.data.arrays import check_array, open_npy, write_npy_atomic
from untwine.data.base import FactorSpace, ImageGridDataset
from untwine.data.paths import dataset_dir, require_file

NAME = "smallnorb"
FOLDER = "smallnorb"
PREPARED_FILE = "smallnorb.images.npy"
FULL_FACTOR_NAMES = ("category", "instance", "elevation", "azimuth", "lighting")
FULL_FACTOR_SIZES = (5, 10, 9, 18, 6)
LATENT_INDICES = (0, 2, 3, 4)
SPLITS = (("training", "46789"), ("testing", "01235"))
FILES = tuple(
    f"smallnorb-5x{s}x9x18x6x2x96x96-{split}-{kind}.mat"
    for split, s in SPLITS
    for kind in ("dat", "cat", "info")
)
IMAGE_SIZE = (64, 64)
SOURCE_SIZE = (96, 96)

MAGIC_UINT8 = 0x1E3D4C55
MAGIC_INT32 = 0x1E3D4C54
_DTYPES = {
    0x1E3D4C51: np.dtype("<f4"),
    0x1E3D4C53: np.dtype("<f8"),
    MAGIC_INT32: np.dtype("<i4"),
    MAGIC_UINT8: np.dtype("u1"),
    0x1E3D4C56: np.dtype("<i2"),
}


def _directory(data_dir) -> Path:
    return Path(data_dir) if data_dir is not None else dataset_dir(FOLDER)


def _space(factor_sizes: Sequence[int] | None) -> FactorSpace:
    sizes = FULL_FACTOR_SIZES if factor_sizes is None else tuple(int(s) for s in factor_sizes)
    if len(sizes) != 5:
        raise ValueError(f"smallnorb factor_sizes must give 5 sizes {FULL_FACTOR_NAMES}, got {sizes}")
    return FactorSpace(sizes, FULL_FACTOR_NAMES)


def prepared_file(data_dir=None, **_: object) -> Path:
    return _directory(data_dir) / PREPARED_FILE


def missing(data_dir, **_: object) -> list[str]:
    directory = _directory(data_dir)
    if (directory / PREPARED_FILE).exists():
        return []
    return [f for f in FILES if not (directory / f).exists()]


def read_matrix(path: Path, magic: int) -> np.ndarray:
    """Memory-map a NORB binary matrix, checking its magic number and that its length matches the header."""
    with open(path, "rb") as handle:
        head = handle.read(8)
        if len(head) < 8:
            raise ValueError(f"{path}: expected a NORB binary matrix header, found only {len(head)} bytes")
        found_magic, ndim = (int(v) for v in np.frombuffer(head, "<i4"))
        if found_magic != magic:
            raise ValueError(
                f"{path}: expected magic number {magic:#x} ({_DTYPES[magic]} matrix), found {found_magic & 0xFFFFFFFF:#x}"
            )
        if not 1 <= ndim <= 8:
            raise ValueError(f"{path}: expected 1 to 8 dimensions in the header, found {ndim}")
        stored = max(3, ndim)
        raw = handle.read(4 * stored)
        if len(raw) < 4 * stored:
            raise ValueError(f"{path}: header is truncated")
        dims = tuple(int(d) for d in np.frombuffer(raw, "<i4")[:ndim])
    dtype = _DTYPES[magic]
    offset = 8 + 4 * stored
    expected = offset + int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    size = os.path.getsize(path)
    if size != expected:
        raise ValueError(
            f"{path}: the header promises {dims} {dtype} ({expected} bytes), the file has {size} bytes"
        )
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=dims)


def _split_arrays(directory: Path, split: str, code: str):
    names = [f"smallnorb-5x{code}x9x18x6x2x96x96-{split}-{kind}.mat" for kind in ("dat", "cat", "info")]
    dat_path, cat_path, info_path = (require_file(directory / n, NAME) for n in names)
    dat = read_matrix(dat_path, MAGIC_UINT8)
    cat = read_matrix(cat_path, MAGIC_INT32)
    info = read_matrix(info_path, MAGIC_INT32)
    n = dat.shape[0]
    if dat.ndim != 4 or dat.shape[1:] != (2, *SOURCE_SIZE):
        raise ValueError(f"{dat_path}: expected shape (n, 2, 96, 96), found {dat.shape}")
    if cat.shape != (n,):
        raise ValueError(f"{cat_path}: expected shape ({n},) to match the images, found {cat.shape}")
    if info.shape != (n, 4):
        raise ValueError(f"{info_path}: expected shape ({n}, 4) to match the images, found {info.shape}")
    return dat, cat, info


def read_features(data_dir=None, factor_sizes: Sequence[int] | None = None):
    """Per split ``(dat memmap, features (n, 5) int64)``; also checks that the features tile the grid."""
    directory = _directory(data_dir)
    space = _space(factor_sizes)
    splits = []
    for split, code in SPLITS:
        dat, cat, info = _split_arrays(directory, split, code)
        features = np.column_stack([np.asarray(cat, dtype=np.int64), np.asarray(info, dtype=np.int64)])
        if (features[:, 3] % 2).any():
            raise ValueError(f"{split} info: expected even azimuth values 0, 2, ..., found odd ones")
        features[:, 3] //= 2
        bad = (features < 0) | (features >= np.asarray(space.sizes))
        if bad.any():
            row, col = map(int, np.argwhere(bad)[0])
            raise ValueError(
                f"{split} files: row {row} has {space.names[col]} = {features[row, col]}, "
                f"expected 0..{space.sizes[col] - 1}"
            )
        splits.append((dat, features))
    rows = np.concatenate([space.factors_to_index(f) for _, f in splits])
    if len(rows) != space.num_states or len(np.unique(rows)) != space.num_states:
        raise ValueError(
            f"smallnorb: the {len(rows)} images must cover each of the {space.num_states} factor combinations "
            f"{dict(zip(space.names, space.sizes, strict=True))} exactly once; "
            f"{len(np.unique(rows))} distinct combinations found"
        )
    return splits, space


def resize(image: np.ndarray) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(np.ascontiguousarray(image)).resize(IMAGE_SIZE, Image.LANCZOS))


def convert(
    data_dir=None, factor_sizes: Sequence[int] | None = None, out: np.ndarray | None = None
) -> np.ndarray:
    """The whole grid ``(N, 64, 64)`` uint8, camera 0, each image at the row of its features."""
    splits, space = read_features(data_dir, factor_sizes)
    images = np.empty((space.num_states, *IMAGE_SIZE), dtype=np.uint8) if out is None else out
    for dat, features in splits:
        rows = space.factors_to_index(features)
        for row, i in zip(rows, range(len(rows)), strict=True):
            images[row] = resize(dat[i, 0])
    return images


def _open_prepared(path: Path, space: FactorSpace) -> np.ndarray:
    images = open_npy(path)
    check_array(
        images,
        f"{path} (prepared; rebuild with `untwine data prepare {NAME} --force`)",
        (space.num_states, *IMAGE_SIZE),
        np.uint8,
    )
    return images


def load_smallnorb(
    data_dir: str | os.PathLike | None = None, factor_sizes: Sequence[int] | None = None
) -> ImageGridDataset:
    """Load SmallNORB (prepared ``.npy`` if present, else converted from the six binary matrices).

    ``factor_sizes`` is for tests only: the 5 full grid sizes (category, instance, elevation, azimuth,
    lighting) of reduced files written in the published format.
    """
    directory = _directory(data_dir)
    space = _space(factor_sizes)
    prepared = directory / PREPARED_FILE
    images = _open_prepared(prepared, space) if prepared.exists() else convert(directory, factor_sizes)
    return ImageGridDataset(NAME, images, space, LATENT_INDICES, 1 / 255)


def check_files(data_dir=None, factor_sizes: Sequence[int] | None = None, **_: object) -> list[str]:
    directory = _directory(data_dir)
    space = _space(factor_sizes)
    lines = []
    if (directory / PREPARED_FILE).exists():
        _open_prepared(directory / PREPARED_FILE, space)
        lines.append(f"{PREPARED_FILE}: {space.num_states} uint8 images of 64x64")
    if any((directory / f).exists() for f in FILES) or not (directory / PREPARED_FILE).exists():
        splits, _ = read_features(directory, factor_sizes)
        lines.append(
            f"binary matrices: {sum(len(f) for _, f in splits)} stereo pairs of 96x96, headers and sizes valid, "
            f"features cover the grid {list(space.sizes)} exactly once"
        )
    return lines


def prepare(
    data_dir=None, factor_sizes: Sequence[int] | None = None, force: bool = False, **_: object
) -> Path:
    """Convert once into ``smallnorb.images.npy`` (row-major factor order; atomic write)."""
    directory = _directory(data_dir)
    space = _space(factor_sizes)
    target = directory / PREPARED_FILE
    if target.exists() and not force:
        _open_prepared(target, space)
        return target
    read_features(directory, factor_sizes)  # fail early

    def fill(array):
        convert(directory, factor_sizes, out=array)

    return write_npy_atomic(target, (space.num_states, *IMAGE_SIZE), np.uint8, fill)
