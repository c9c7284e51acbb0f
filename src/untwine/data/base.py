"""The one interface every ground-truth factor dataset implements.

Conventions (the same for every dataset, real or procedural):

* Factors are integer *indices* ``0 .. size-1``, int64 arrays of shape ``(n, num_factors)``, in the
  order of ``factor_names``.  Only *latent* factors appear here; nuisance factors (SmallNORB's
  instance, the colour of colour-dSprites, the shape of ``dsprites_noshape``) are drawn uniformly by
  the dataset whenever an observation is produced and are listed in ``nuisance_factor_names``.
* Observations are float32 in ``[0, 1]`` with shape ``(n, 64, 64, C)`` -- **HWC**, as in
  disentanglement_lib.  The torch training stream (:mod:`untwine.data.stream`) converts to NCHW at the
  boundary, because PyTorch convolutions expect channels first.
* ``index <-> factors`` is row-major over ``factor_sizes`` (the last factor varies fastest).
* Every random draw takes an explicit ``numpy.random.Generator`` (or an int seed); nothing touches
  global random state.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np

from untwine.utils.rng import RandomLike, as_generator


class FactorSpace:
    """A row-major grid over discrete factors of the given sizes."""

    def __init__(self, sizes: Sequence[int], names: Sequence[str] | None = None):
        self.sizes = tuple(int(s) for s in sizes)
        if not self.sizes or any(s < 1 for s in self.sizes):
            raise ValueError(f"factor sizes must be positive integers, got {self.sizes}")
        self.names = (
            tuple(names) if names is not None else tuple(f"factor_{i}" for i in range(len(self.sizes)))
        )
        if len(self.names) != len(self.sizes):
            raise ValueError(f"{len(self.names)} factor names for {len(self.sizes)} factor sizes")
        # strides[i] = product of the sizes after factor i (row-major).
        self.strides = tuple(
            int(np.prod(self.sizes[i + 1 :], dtype=np.int64)) for i in range(len(self.sizes))
        )
        self.num_states = int(np.prod(self.sizes, dtype=np.int64))

    def __repr__(self) -> str:
        return f"FactorSpace({dict(zip(self.names, self.sizes, strict=True))})"

    @property
    def num_factors(self) -> int:
        return len(self.sizes)

    def validate(self, factors, argument: str = "factors") -> np.ndarray:
        """Return ``factors`` as an int64 ``(n, K)`` array, or raise a ValueError saying what is wrong."""
        array = np.asarray(factors)
        if array.ndim == 1 and array.shape[0] == self.num_factors:
            array = array[np.newaxis, :]
        if array.ndim != 2 or array.shape[1] != self.num_factors:
            raise ValueError(
                f"{argument} must have shape (n, {self.num_factors}) for factors {self.names}, got {array.shape}"
            )
        if array.dtype.kind == "f":
            if not np.all(np.isfinite(array)) or not np.all(array == np.round(array)):
                raise ValueError(f"{argument} must hold integer factor indices, got non-integer values")
        elif array.dtype.kind not in "iu":
            raise ValueError(f"{argument} must hold integer factor indices, got dtype {array.dtype}")
        array = array.astype(np.int64, copy=False)
        sizes = np.asarray(self.sizes)
        bad = (array < 0) | (array >= sizes)
        if bad.any():
            row, col = map(int, np.argwhere(bad)[0])
            raise ValueError(
                f"{argument}[{row}, {col}] = {array[row, col]} is out of range for factor "
                f"'{self.names[col]}' (valid 0..{self.sizes[col] - 1})"
            )
        return array

    def factors_to_index(self, factors) -> np.ndarray:
        factors = self.validate(factors)
        return factors @ np.asarray(self.strides, dtype=np.int64)

    def index_to_factors(self, index) -> np.ndarray:
        index = np.asarray(index)
        if index.dtype.kind not in "iu":
            raise ValueError(f"index must hold integers, got dtype {index.dtype}")
        index = np.atleast_1d(index).astype(np.int64)
        if index.ndim != 1:
            raise ValueError(f"index must be one-dimensional, got shape {index.shape}")
        if index.size and (index.min() < 0 or index.max() >= self.num_states):
            raise ValueError(f"index values must lie in 0..{self.num_states - 1}")
        strides = np.asarray(self.strides, dtype=np.int64)
        return (index[:, np.newaxis] // strides) % np.asarray(self.sizes, dtype=np.int64)

    def sample(self, num: int, rng: RandomLike) -> np.ndarray:
        """Each factor independently uniform, drawn column by column (factor 0 first)."""
        rng = as_generator(rng)
        if num < 0:
            raise ValueError(f"num must be >= 0, got {num}")
        factors = np.empty((num, self.num_factors), dtype=np.int64)
        for i, size in enumerate(self.sizes):
            factors[:, i] = rng.integers(0, size, size=num)
        return factors


class GroundTruthDataset(ABC):
    """A dataset of observations generated by discrete ground-truth factors.

    Subclasses set ``name``, ``factor_space`` and ``observation_shape`` and implement
    :meth:`_observations`.  ``deterministic`` is True when the observation is a pure function of the
    latent factors (no nuisance factor, no noise): metrics then encode each distinct image once.
    """

    name: str
    factor_space: FactorSpace
    observation_shape: tuple[int, int, int]
    nuisance_factor_names: tuple[str, ...] = ()
    nuisance_factor_sizes: tuple[int, ...] = ()
    deterministic: bool = True

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} factors={dict(zip(self.factor_names, self.factor_sizes, strict=True))}>"

    # -- factor space -------------------------------------------------------------------------------
    @property
    def factor_names(self) -> tuple[str, ...]:
        return self.factor_space.names

    @property
    def factor_sizes(self) -> tuple[int, ...]:
        return self.factor_space.sizes

    @property
    def num_factors(self) -> int:
        return self.factor_space.num_factors

    @property
    def num_states(self) -> int:
        """Number of distinct latent factor combinations."""
        return self.factor_space.num_states

    @property
    def num_channels(self) -> int:
        return self.observation_shape[2]

    def factors_to_index(self, factors) -> np.ndarray:
        return self.factor_space.factors_to_index(factors)

    def index_to_factors(self, index) -> np.ndarray:
        return self.factor_space.index_to_factors(index)

    # -- sampling -----------------------------------------------------------------------------------
    def sample_factors(self, num: int, rng: RandomLike) -> np.ndarray:
        """``num`` latent factor vectors, each factor independently uniform: int64 ``(num, K)``."""
        return self.factor_space.sample(num, rng)

    def sample_observations_from_factors(self, factors, rng: RandomLike) -> np.ndarray:
        """Observations for the given latent factors: float32 ``(n, H, W, C)`` in [0, 1].

        ``rng`` draws nuisance factors and noise (unused by deterministic datasets, but required so that
        call sites do not depend on which dataset they hold).
        """
        factors = self.factor_space.validate(factors)
        rng = as_generator(rng)
        observations = self._observations(factors, rng)
        return observations

    def sample(self, num: int, rng: RandomLike) -> tuple[np.ndarray, np.ndarray]:
        """Sample ``(factors, observations)``."""
        rng = as_generator(rng)
        factors = self.sample_factors(num, rng)
        return factors, self.sample_observations_from_factors(factors, rng)

    def sample_observations(self, num: int, rng: RandomLike) -> np.ndarray:
        return self.sample(num, rng)[1]

    @abstractmethod
    def _observations(self, factors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Render/look up validated int64 ``factors``; return float32 ``(n, H, W, C)`` in [0, 1]."""


class ImageGridDataset(GroundTruthDataset):
    """A dataset whose images are stored for every combination of *all* factors (latent and nuisance).

    ``images`` is anything indexable by an int64 array of row indices that returns uint8/bool
    ``(n, H, W, C)`` (a numpy array, a ``numpy.memmap``, or an :class:`H5Images`).  The stored row of a
    full factor vector is its row-major index over ``full_space``; ``latent_indices`` says which full
    factors are latent, the rest are nuisance and drawn uniformly per observation.
    """

    def __init__(
        self,
        name: str,
        images,
        full_space: FactorSpace,
        latent_indices: Sequence[int],
        scale: float,
    ):
        self.name = name
        self.images = images
        self.full_space = full_space
        self.latent_indices = tuple(int(i) for i in latent_indices)
        self.nuisance_indices = tuple(
            i for i in range(full_space.num_factors) if i not in self.latent_indices
        )
        self.factor_space = FactorSpace(
            [full_space.sizes[i] for i in self.latent_indices],
            [full_space.names[i] for i in self.latent_indices],
        )
        self.nuisance_factor_names = tuple(full_space.names[i] for i in self.nuisance_indices)
        self.nuisance_factor_sizes = tuple(full_space.sizes[i] for i in self.nuisance_indices)
        # A nuisance factor of size 1 (dSprites' colour) is no randomness at all.
        self.deterministic = all(s == 1 for s in self.nuisance_factor_sizes)
        self.scale = np.float32(scale)
        expected_rows = full_space.num_states
        if len(images) != expected_rows:
            raise ValueError(
                f"{name}: the image array has {len(images)} rows but the factor grid "
                f"{dict(zip(full_space.names, full_space.sizes, strict=True))} needs {expected_rows}"
            )
        shape = tuple(images.shape[1:])
        if len(shape) == 2:
            shape = (*shape, 1)
        self.observation_shape = shape  # type: ignore[assignment]

    def full_factors(self, factors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Latent factors plus uniformly drawn nuisance factors, in the stored (full) order."""
        full = np.zeros((factors.shape[0], self.full_space.num_factors), dtype=np.int64)
        full[:, list(self.latent_indices)] = factors
        for i in self.nuisance_indices:
            if self.full_space.sizes[i] > 1:
                full[:, i] = rng.integers(0, self.full_space.sizes[i], size=factors.shape[0])
        return full

    def raw_images(self, factors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The stored uint8/bool images for validated latent ``factors``, ``(n, H, W, C)``."""
        rows = self.full_space.factors_to_index(self.full_factors(factors, rng))
        images = np.asarray(self.images[rows])
        if images.ndim == 3:
            images = images[..., np.newaxis]
        return images

    def _observations(self, factors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        images = self.raw_images(factors, rng)
        out = images.astype(np.float32)
        if self.scale != 1:
            out *= self.scale
        return out


class H5Images:
    """Row access to an HDF5 image dataset without loading it (h5py needs sorted unique indices)."""

    def __init__(self, path, key: str):
        import h5py

        self.path = path
        self.key = key
        self._file = h5py.File(path, "r")
        self._data = self._file[key]
        self.shape = self._data.shape
        self.dtype = self._data.dtype

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows):
        rows = np.asarray(rows, dtype=np.int64)
        if rows.ndim == 0:
            return self._data[int(rows)]
        unique, inverse = np.unique(rows, return_inverse=True)
        return self._data[unique][inverse]

    def close(self) -> None:
        self._file.close()
