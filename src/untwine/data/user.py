"""A user's own ground-truth data: images with integer factors, or a factor grid with a render function.

* :class:`ArrayGroundTruthDataset` -- images ``(n, H, W)`` or ``(n, H, W, C)`` (uint8 0..255, bool, or
  float in [0, 1]) and integer factors ``(n, K)`` with values ``0 .. size - 1``.  Every combination of
  factor values must have at least one image (the metrics draw factors uniformly from the grid); a
  combination with several images is observed through one of them drawn at random (the dataset is
  then not deterministic, and the metrics encode every request afresh).
  :meth:`~ArrayGroundTruthDataset.from_npz` / :meth:`~ArrayGroundTruthDataset.from_hdf5` read the
  arrays ``images`` and ``factors`` from a file.
* :class:`RenderedGroundTruthDataset` -- factor sizes and ``render(factors) -> images``.

From the command line a file is named as a dataset with ``file:`` -- ``--dataset file:my_data.npz``
(evaluation) or ``dataset=file:/abs/my_data.h5`` (training; 64x64 images for the study's networks).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from untwine.data.base import FactorSpace, GroundTruthDataset

FILE_PREFIX = "file:"
SUFFIXES = (".npz", ".h5", ".hdf5")


def _as_images(images, where: str) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., np.newaxis]
    if images.ndim != 4:
        raise ValueError(f"{where}: images must be (n, H, W) or (n, H, W, C), got shape {images.shape}")
    if images.dtype == np.uint8 or images.dtype == bool:
        return images
    if images.dtype.kind != "f":
        raise ValueError(
            f"{where}: images must be uint8 (0..255), bool or float in [0, 1], got {images.dtype}"
        )
    if not np.isfinite(images).all():
        raise ValueError(f"{where}: images contain NaN or infinity")
    low, high = float(images.min()), float(images.max())
    if low < 0 or high > 1:
        raise ValueError(
            f"{where}: float images must lie in [0, 1], found values in [{low:g}, {high:g}] "
            "(divide uint8 pixels by 255, or pass them as uint8)"
        )
    return images.astype(np.float32, copy=False)


def _as_factors(factors, num_images: int, where: str) -> np.ndarray:
    factors = np.asarray(factors)
    if factors.ndim == 1:
        factors = factors[:, np.newaxis]
    if factors.ndim != 2:
        raise ValueError(f"{where}: factors must be (n, K), got shape {factors.shape}")
    if factors.shape[0] != num_images:
        raise ValueError(f"{where}: {num_images} images but {factors.shape[0]} rows of factors")
    if factors.dtype.kind == "f" and np.isfinite(factors).all() and (factors == np.round(factors)).all():
        factors = factors.astype(np.int64)
    if factors.dtype.kind not in "iu":
        raise ValueError(f"{where}: factors must be integers (value indices), got dtype {factors.dtype}")
    if (factors < 0).any():
        row, col = map(int, np.argwhere(factors < 0)[0])
        raise ValueError(f"{where}: factors[{row}, {col}] = {int(factors[row, col])} is negative")
    return factors.astype(np.int64, copy=False)


class ArrayGroundTruthDataset(GroundTruthDataset):
    """Images and their integer factors held in arrays (see the module docstring).

    Args:
        images: ``(n, H, W)`` or ``(n, H, W, C)``; uint8 (scaled by 1/255), bool, or float in [0, 1].
        factors: ``(n, K)`` integer value indices.
        factor_names: K names (default ``factor_0`` ...).
        factor_sizes: K sizes (default: the largest value + 1 of each factor); values must lie below.
        name: the dataset's name in results.
    """

    def __init__(
        self,
        images,
        factors,
        *,
        factor_names: Sequence[str] | None = None,
        factor_sizes: Sequence[int] | None = None,
        name: str = "user_data",
    ):
        where = name
        self._images = _as_images(images, where)
        factors = _as_factors(factors, self._images.shape[0], where)
        if factor_sizes is None:
            factor_sizes = [int(v) + 1 for v in factors.max(axis=0)]
        if len(factor_sizes) != factors.shape[1]:
            raise ValueError(f"{where}: {len(factor_sizes)} factor sizes for {factors.shape[1]} factors")
        names = (
            list(factor_names)
            if factor_names is not None
            else [f"factor_{j}" for j in range(len(factor_sizes))]
        )
        if len(names) != len(factor_sizes):
            raise ValueError(f"{where}: {len(names)} factor names for {len(factor_sizes)} factors")
        for j, size in enumerate(factor_sizes):
            if (factors[:, j] >= size).any():
                row = int(np.flatnonzero(factors[:, j] >= size)[0])
                raise ValueError(
                    f"{where}: factors[{row}, {j}] = {int(factors[row, j])} is outside {names[j]}'s "
                    f"{size} values 0..{size - 1}"
                )
        self.name = name
        self.factor_space = FactorSpace([int(s) for s in factor_sizes], names)
        keys = self.factor_space.factors_to_index(factors)
        counts = np.bincount(keys, minlength=self.factor_space.num_states)
        if (counts == 0).any():
            missing = int(np.flatnonzero(counts == 0)[0])
            example = dict(
                zip(names, map(int, self.factor_space.index_to_factors(np.array([missing]))[0]), strict=True)
            )
            raise ValueError(
                f"{where}: {int((counts == 0).sum())} of the {self.factor_space.num_states} factor "
                f"combinations have no image (e.g. {example}); the metrics draw every combination, so "
                "every one needs at least one image"
            )
        self._order = np.argsort(keys, kind="stable")  # images grouped by combination
        self._starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        self._counts = counts
        self.deterministic = bool((counts == 1).all())
        self.observation_shape = tuple(int(v) for v in self._images.shape[1:])  # type: ignore[assignment]
        self._scale = np.float32(1 / 255) if self._images.dtype == np.uint8 else None

    def _observations(self, factors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        keys = self.factor_space.factors_to_index(factors)
        offsets = np.zeros(keys.shape[0], dtype=np.int64)
        if not self.deterministic:
            offsets = (rng.random(keys.shape[0]) * self._counts[keys]).astype(np.int64)
        rows = self._order[self._starts[keys] + offsets]
        images = self._images[rows].astype(np.float32)
        if self._scale is not None:
            images *= self._scale
        return images

    @classmethod
    def from_npz(cls, path, *, images_key: str = "images", factors_key: str = "factors", **kwargs):
        """Arrays ``images`` and ``factors`` (and optional ``factor_names``) of an ``.npz`` file."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no dataset file at {path}")
        with np.load(path, allow_pickle=False) as archive:
            missing = [k for k in (images_key, factors_key) if k not in archive.files]
            if missing:
                raise ValueError(
                    f"{path} lacks the array(s) {missing} (it holds {sorted(archive.files)}); save it with "
                    "numpy.savez(path, images=images, factors=factors, factor_names=names)"
                )
            names = [str(n) for n in archive["factor_names"]] if "factor_names" in archive.files else None
            return cls(
                archive[images_key],
                archive[factors_key],
                **{"factor_names": names, "name": f"{FILE_PREFIX}{path}", **kwargs},
            )

    @classmethod
    def from_hdf5(cls, path, *, images_key: str = "images", factors_key: str = "factors", **kwargs):
        """Datasets ``images`` and ``factors`` (and optional ``factor_names``) of an HDF5 file."""
        import h5py

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no dataset file at {path}")
        with h5py.File(path, "r") as handle:
            missing = [k for k in (images_key, factors_key) if k not in handle]
            if missing:
                raise ValueError(f"{path} lacks the dataset(s) {missing} (it holds {sorted(handle)})")
            names = None
            if "factor_names" in handle:
                names = [n.decode() if isinstance(n, bytes) else str(n) for n in handle["factor_names"][()]]
            return cls(
                handle[images_key][()],
                handle[factors_key][()],
                **{"factor_names": names, "name": f"{FILE_PREFIX}{path}", **kwargs},
            )


class RenderedGroundTruthDataset(GroundTruthDataset):
    """A factor grid and a function that renders images of factor rows.

    ``render(factors)`` takes int64 ``(n, K)`` and returns ``(n, H, W, C)`` (or ``(n, H, W)``) float images
    in [0, 1]; it is checked on two rows at construction.  ``deterministic``: whether an image is a pure
    function of its factors (then the metrics encode each distinct image once).
    """

    def __init__(
        self,
        factor_sizes: Sequence[int],
        render: Callable[[np.ndarray], np.ndarray],
        *,
        factor_names: Sequence[str] | None = None,
        name: str = "rendered",
        deterministic: bool = True,
    ):
        names = (
            list(factor_names)
            if factor_names is not None
            else [f"factor_{j}" for j in range(len(factor_sizes))]
        )
        self.name = name
        self.factor_space = FactorSpace([int(s) for s in factor_sizes], names)
        self._render = render
        self.deterministic = bool(deterministic)
        probe = self._checked(np.zeros((2, len(factor_sizes)), dtype=np.int64))
        self.observation_shape = tuple(int(v) for v in probe.shape[1:])  # type: ignore[assignment]

    def _checked(self, factors: np.ndarray) -> np.ndarray:
        images = np.asarray(self._render(factors))
        if images.shape[:1] != (factors.shape[0],):
            raise ValueError(
                f"{self.name}: render returned shape {images.shape} for {factors.shape[0]} factor rows"
            )
        return _as_images(images.astype(np.float32, copy=False), f"{self.name}: render")

    def _observations(self, factors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return self._checked(factors).astype(np.float32, copy=False)


def is_file_dataset(name: str) -> bool:
    return isinstance(name, str) and name.startswith(FILE_PREFIX)


def load_file_dataset(name: str) -> ArrayGroundTruthDataset:
    """The dataset named ``file:PATH`` (``.npz``, ``.h5`` or ``.hdf5``)."""
    path = Path(name[len(FILE_PREFIX) :])
    if path.suffix not in SUFFIXES:
        raise ValueError(f"a dataset file must end in {', '.join(SUFFIXES)}, got {path}")
    dataset = (
        ArrayGroundTruthDataset.from_npz(path)
        if path.suffix == ".npz"
        else ArrayGroundTruthDataset.from_hdf5(path)
    )
    return dataset
