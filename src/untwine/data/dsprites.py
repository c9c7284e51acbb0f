"""dSprites (Matthey et al. 2017) from the published files, and its colour/noisy/scream views.

Published files (folder ``dsprites`` under the data root), either one:

* ``dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz`` -- arrays ``imgs`` (737280, 64, 64) uint8 with
  values 0/1, ``latents_classes`` (737280, 6) int64, ``latents_values`` (737280, 6) float64, and
  ``metadata``: a pickled dict (written by Python 2, so it needs ``allow_pickle=True`` and
  ``encoding="latin1"``) whose ``latents_sizes`` is ``[1, 3, 6, 40, 32, 32]``;
* ``dsprites_ndarray_co1sh3sc6or40x32y32_64x64.hdf5`` -- datasets ``imgs``, ``latents/classes``,
  ``latents/values`` with the same contents (used when the ``.npz`` is absent).

The rows are the row-major grid over the six factors ``(color, shape, scale, orientation, posX,
posY)``; ``latents_classes`` is checked to say so.  Colour has a single value; ``dsprites_full`` and
its colour/noisy/scream views use factors 1..5, ``dsprites_noshape`` uses 2..5 with the shape drawn
uniformly per observation (nuisance), as in disentanglement_lib.

The 0/1 images are kept at one bit per pixel (about 380 MB for the whole grid, unpacked row by row when
sampled) and observations are 0.0/1.0 float32 only for the rows asked for.  Unpacking the published
``.npz`` takes some seconds; ``untwine data prepare dsprites_full`` stores the packed bits as
``dsprites.packed.npy``, which later loads are memory-mapped from.  The scream view also needs
``scream.jpg`` (The Scream, by Munch) in the same folder.
"""

from __future__ import annotations

import os
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from untwine.data.arrays import (
    PackedBitImages,
    iter_member_rows,
    npz_keys,
    npz_member,
    open_npy,
    pack_binary_images,
    write_npy_chunks_atomic,
)
from untwine.data.base import FactorSpace, GroundTruthDataset, ImageGridDataset
from untwine.data.paths import dataset_dir, require_file
from untwine.data.variants import ColorVariant, NoisyVariant, ScreamVariant, load_scream_image

NPZ_FILE = "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"
HDF5_FILE = "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.hdf5"
SCREAM_FILE = "scream.jpg"
PREPARED_FILE = "dsprites.packed.npy"
FOLDER = "dsprites"

FULL_FACTOR_NAMES = ("color", "shape", "scale", "orientation", "posX", "posY")
FULL_FACTOR_SIZES = (1, 3, 6, 40, 32, 32)
IMAGE_SIZE = (64, 64)

# variant -> (registry name, latent factor indices into the full grid)
VARIANTS = {
    "full": ("dsprites_full", (1, 2, 3, 4, 5)),
    "noshape": ("dsprites_noshape", (2, 3, 4, 5)),
    "color": ("color_dsprites", (1, 2, 3, 4, 5)),
    "noisy": ("noisy_dsprites", (1, 2, 3, 4, 5)),
    "scream": ("scream_dsprites", (1, 2, 3, 4, 5)),
}
_CHUNK_ROWS = 16384  # rows unpacked at a time while reading the published file (64 MiB)


def _directory(data_dir) -> Path:
    return Path(data_dir) if data_dir is not None else dataset_dir(FOLDER)


def _variant(variant: str) -> tuple[str, tuple[int, ...]]:
    try:
        return VARIANTS[variant]
    except KeyError:
        raise ValueError(f"unknown dSprites variant {variant!r}; choose one of {sorted(VARIANTS)}") from None


def _full_space(factor_sizes: Sequence[int] | None) -> FactorSpace:
    sizes = FULL_FACTOR_SIZES if factor_sizes is None else tuple(int(s) for s in factor_sizes)
    if len(sizes) != len(FULL_FACTOR_SIZES):
        raise ValueError(f"dSprites factor_sizes must give the 6 grid sizes {FULL_FACTOR_NAMES}, got {sizes}")
    return FactorSpace(sizes, FULL_FACTOR_NAMES)


def source_file(data_dir, dataset: str = "dsprites_full") -> Path:
    """The published file to read: the ``.npz`` if present, else the ``.hdf5``; error if neither."""
    directory = _directory(data_dir)
    if not (directory / NPZ_FILE).exists() and (directory / HDF5_FILE).exists():
        return directory / HDF5_FILE
    return require_file(directory / NPZ_FILE, dataset)


def missing(data_dir, variant: str = "full", **_: object) -> list[str]:
    """Names of files the variant needs that are absent (the prepared file stands in for the published one)."""
    directory = _directory(data_dir)
    absent = []
    if not any((directory / f).exists() for f in (NPZ_FILE, HDF5_FILE, PREPARED_FILE)):
        absent.append(NPZ_FILE)
    if variant == "scream" and not (directory / SCREAM_FILE).exists():
        absent.append(SCREAM_FILE)
    return absent


def prepared_file(data_dir=None, **_: object) -> Path:
    return _directory(data_dir) / PREPARED_FILE


def _check_grid(classes: np.ndarray, space: FactorSpace, where: str) -> None:
    """The rows must be the row-major grid: row i has the factor indices ``space.index_to_factors(i)``."""
    if classes.shape != (space.num_states, space.num_factors):
        raise ValueError(
            f"{where}: expected shape {(space.num_states, space.num_factors)}, found {classes.shape}"
        )
    expected = space.index_to_factors(np.arange(space.num_states))
    if not np.array_equal(classes, expected):
        row = int(np.argwhere((classes != expected).any(axis=1))[0, 0])
        raise ValueError(
            f"{where}: rows are not in row-major grid order over {space}: row {row} holds "
            f"{classes[row].tolist()}, expected {expected[row].tolist()}"
        )


def _read_npz(path: Path, space: FactorSpace) -> tuple[Iterator[np.ndarray], int]:
    """Check the ``.npz`` layout; return an iterator over chunks of 0/1 images and the row count."""
    keys = set(npz_keys(path))  # a clear ValueError when the archive is damaged or truncated
    try:
        with np.load(path, allow_pickle=True, encoding="latin1") as archive:
            for key in ("imgs", "latents_classes", "metadata"):
                if key not in keys:
                    raise ValueError(
                        f"{path}: expected arrays imgs, latents_classes, latents_values, metadata; found {sorted(keys)}"
                    )
            try:
                metadata = archive["metadata"][()]
                sizes = tuple(int(s) for s in metadata["latents_sizes"])
            except Exception as error:  # noqa: BLE001 - any unpickling problem means a damaged file
                raise ValueError(f"{path}: could not read metadata['latents_sizes'] ({error})") from None
            if sizes != space.sizes:
                raise ValueError(f"{path}: expected latents_sizes {list(space.sizes)}, found {list(sizes)}")
            _check_grid(np.asarray(archive["latents_classes"]), space, f"{path} latents_classes")
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as error:
        raise ValueError(
            f"{path} could not be read ({error}); the file is probably damaged or truncated"
        ) from None
    member = npz_member(path, "imgs")
    expected = (space.num_states, *IMAGE_SIZE)
    if member.shape != expected or member.dtype != np.uint8:
        raise ValueError(
            f"{path} imgs: expected shape {expected} uint8, found shape {member.shape} {member.dtype}"
        )
    return iter_member_rows(member, _CHUNK_ROWS), member.shape[0]


def _read_hdf5(path: Path, space: FactorSpace):
    import h5py

    try:
        handle = h5py.File(path, "r")
    except OSError as error:
        raise ValueError(f"{path} is not a readable HDF5 file ({error}); it may be truncated") from None
    with handle:
        for key in ("imgs", "latents/classes"):
            if key not in handle:
                raise ValueError(
                    f"{path}: expected datasets imgs, latents/classes, latents/values; '{key}' is missing"
                )
        _check_grid(
            np.asarray(handle["latents/classes"][()], dtype=np.int64), space, f"{path} latents/classes"
        )
        images = handle["imgs"]
        expected = (space.num_states, *IMAGE_SIZE)
        if images.shape != expected or images.dtype != np.uint8:
            raise ValueError(
                f"{path} imgs: expected shape {expected} uint8, found shape {images.shape} {images.dtype}"
            )

    def chunks():
        with h5py.File(path, "r") as again:
            data = again["imgs"]
            for start in range(0, data.shape[0], _CHUNK_ROWS):
                yield data[start : start + _CHUNK_ROWS]

    return chunks(), space.num_states


def read_packed(
    data_dir=None, factor_sizes: Sequence[int] | None = None, dataset: str = "dsprites_full"
) -> np.ndarray:
    """The whole grid packed to bits, ``(N, 512)`` uint8, read from the published ``.npz``/``.hdf5``."""
    space = _full_space(factor_sizes)
    path = source_file(data_dir, dataset)
    chunks, rows = (_read_hdf5 if path.suffix == ".hdf5" else _read_npz)(path, space)
    packed = np.empty((rows, (IMAGE_SIZE[0] * IMAGE_SIZE[1] + 7) // 8), dtype=np.uint8)
    done = 0
    for chunk in chunks:
        packed[done : done + len(chunk)] = pack_binary_images(np.asarray(chunk), f"{path} imgs")
        done += len(chunk)
    return packed


def _open_prepared(path: Path, space: FactorSpace) -> np.ndarray:
    packed = open_npy(path)
    expected = (space.num_states, (IMAGE_SIZE[0] * IMAGE_SIZE[1] + 7) // 8)
    if packed.shape != expected or packed.dtype != np.uint8:
        raise ValueError(
            f"{path}: expected prepared packed bits of shape {expected} uint8, found {packed.shape} {packed.dtype}; "
            "run `untwine data prepare dsprites_full --force` to rebuild it"
        )
    return packed


def load_sprites(data_dir=None, factor_sizes: Sequence[int] | None = None, dataset: str = "dsprites_full"):
    """The binary sprite images ``(N, 64, 64)`` (a :class:`PackedBitImages`) and the full factor space."""
    space = _full_space(factor_sizes)
    prepared = _directory(data_dir) / PREPARED_FILE
    packed = (
        _open_prepared(prepared, space) if prepared.exists() else read_packed(data_dir, factor_sizes, dataset)
    )
    return PackedBitImages(packed, *IMAGE_SIZE), space


def load_dsprites(
    data_dir: str | os.PathLike | None = None,
    variant: str = "full",
    factor_sizes: Sequence[int] | None = None,
) -> GroundTruthDataset:
    """Load dSprites or one of its views (``variant`` in full, noshape, color, noisy, scream).

    ``factor_sizes`` is for tests only: the six grid sizes of a reduced file written in the published
    format (default: the published ``(1, 3, 6, 40, 32, 32)``); the file's ``latents_sizes`` must agree.
    """
    name, latent = _variant(variant)
    directory = _directory(data_dir)
    scream = None
    if variant == "scream":
        scream = load_scream_image(require_file(directory / SCREAM_FILE, name))
    images, space = load_sprites(directory, factor_sizes, name)
    base = ImageGridDataset(
        name if variant in ("full", "noshape") else f"{name}_base", images, space, latent, 1.0
    )
    if variant == "color":
        return ColorVariant(base, name)
    if variant == "noisy":
        return NoisyVariant(base, name)
    if variant == "scream":
        return ScreamVariant(base, name, scream)
    return base


def check_files(data_dir=None, variant: str = "full", factor_sizes: Sequence[int] | None = None) -> list[str]:
    """Check the layout of the present files (keys, shapes, dtypes, grid order); return what was checked."""
    name, _ = _variant(variant)
    directory = _directory(data_dir)
    space = _full_space(factor_sizes)
    lines = []
    prepared = directory / PREPARED_FILE
    if prepared.exists():
        _open_prepared(prepared, space)
        lines.append(f"{PREPARED_FILE}: {space.num_states} packed 64x64 binary images")
    if (directory / NPZ_FILE).exists() or (directory / HDF5_FILE).exists() or not prepared.exists():
        path = source_file(directory, name)
        _, rows = (_read_hdf5 if path.suffix == ".hdf5" else _read_npz)(path, space)
        lines.append(
            f"{path.name}: {rows} images of 64x64, factor grid {list(space.sizes)} in row-major order"
        )
    if variant == "scream":
        image = load_scream_image(require_file(directory / SCREAM_FILE, name))
        if image.shape[0] <= IMAGE_SIZE[0] or image.shape[1] <= IMAGE_SIZE[1]:
            raise ValueError(f"{SCREAM_FILE}: expected an image larger than 64x64, found {image.shape[:2]}")
        lines.append(f"{SCREAM_FILE}: RGB, thumbnail {image.shape[1]}x{image.shape[0]}")
    return lines


def prepare(
    data_dir=None, factor_sizes: Sequence[int] | None = None, force: bool = False, **_: object
) -> Path:
    """Write ``dsprites.packed.npy`` (the bit-packed grid) so that later loads are memory-mapped."""
    directory = _directory(data_dir)
    target = directory / PREPARED_FILE
    if target.exists() and not force:
        _open_prepared(target, _full_space(factor_sizes))
        return target
    packed = read_packed(directory, factor_sizes)
    return write_npy_chunks_atomic(target, packed.shape, np.uint8, [packed])
