"""Precomputed codes: scoring a representation whose codes were computed elsewhere.

:class:`PrecomputedCodes` stands in for the :class:`~untwine.metrics.representation.CodeSource` of an
evaluation: the runner's shared training and test samples are disjoint sets of the given rows, drawn in
a random order from the evaluation's seed (dlib draws fresh points from the dataset instead, with
replacement).  Only the metrics that work on such a sample can run
(:func:`untwine.metrics.registry.array_metrics`); those that
draw batches with a factor held fixed or intervene on factors (BetaVAE, FactorVAE, fairness, the strong
downstream task) need an encoder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from untwine.metrics._validation import check_pair
from untwine.utils.rng import as_generator


@dataclass(frozen=True)
class CodesDataset:
    """What the runner and the results need to know of the data behind precomputed codes."""

    name: str
    factor_sizes: tuple[int, ...]
    factor_names: tuple[str, ...]
    deterministic: bool = False


class PrecomputedCodes:
    """Codes ``(n, d)`` and integer factors ``(n, K)`` of the same ``n`` observations.

    ``factor_sizes``/``factor_names`` (e.g. the dataset's) are checked against the factors; by default
    the sizes are the largest value + 1 and the names ``factor_0`` ...  ``source`` names the data in
    errors (e.g. the file).
    """

    mode = "mean"
    cached = False

    def __init__(self, codes, factors, *, factor_sizes=None, factor_names=None, name="codes", source="codes"):
        try:
            codes, factors = check_pair(codes, factors, "codes", "factors", min_points=2)
        except ValueError as error:
            raise ValueError(f"{source}: {error}") from None
        self.source = str(source)
        if factor_sizes is None:
            factor_sizes = tuple(int(v) + 1 for v in factors.max(axis=0))
        factor_sizes = tuple(int(s) for s in factor_sizes)
        if len(factor_sizes) != factors.shape[1]:
            raise ValueError(
                f"{source}: factors have {factors.shape[1]} columns but the dataset has {len(factor_sizes)} factors"
            )
        for j, size in enumerate(factor_sizes):
            outside = (factors[:, j] < 0) | (factors[:, j] >= size)
            if outside.any():
                row = int(np.flatnonzero(outside)[0])
                raise ValueError(
                    f"{source}: factors[{row}, {j}] = {int(factors[row, j])} is outside factor {j}'s values "
                    f"0..{size - 1}"
                )
        names = (
            tuple(factor_names)
            if factor_names is not None
            else tuple(f"factor_{j}" for j in range(len(factor_sizes)))
        )
        self.dataset = CodesDataset(name=name, factor_sizes=factor_sizes, factor_names=names)
        self._codes, self._factors = codes, factors
        self._order: np.ndarray | None = None
        self._taken = 0

    def __len__(self) -> int:
        return self._codes.shape[0]

    @property
    def code_dim(self) -> int:
        return int(self._codes.shape[1])

    def sample(self, num: int, rng) -> tuple[np.ndarray, np.ndarray]:
        """The next ``num`` rows of one random order (drawn from ``rng`` at the first call)."""
        if self._order is None:
            self._order = as_generator(rng).permutation(len(self))
        if self._taken + num > len(self):
            raise ValueError(
                f"{self.source}: the metrics need {self._taken + num} distinct rows (training plus test "
                f"sample) but there are {len(self)}; pass more codes or smaller sizes, e.g. "
                "--metric-param dci.num_train=... / dci.num_test=..."
            )
        rows = self._order[self._taken : self._taken + num]
        self._taken += num
        return self._factors[rows], self._codes[rows]

    def codes(self, factors, rng) -> np.ndarray:
        raise ValueError(
            f"{self.source}: this metric renders new images, which precomputed codes cannot give; "
            "with codes only the metrics of untwine.metrics.registry.array_metrics() run"
        )

    def stats(self) -> dict[str, Any]:
        return {"cached": False, "determinism": "precomputed codes", "mode": "mean", "rows": len(self)}


def load_codes_file(path: str | Path, dataset=None) -> PrecomputedCodes:
    """Codes and factors from an ``.npz`` file with arrays ``codes`` (n, d) and ``factors`` (n, K);
    checked against ``dataset``'s factor sizes when given."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no codes file at {path}")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except Exception as error:
        raise ValueError(f"{path} is not a readable .npz file ({type(error).__name__}: {error})") from None
    missing = [key for key in ("codes", "factors") if key not in arrays]
    if missing:
        raise ValueError(
            f"{path} lacks the array(s) {missing} (it holds {sorted(arrays)}); save it with "
            "numpy.savez(path, codes=codes, factors=factors)"
        )
    codes, factors = arrays["codes"], arrays["factors"]
    if codes.ndim >= 1 and factors.ndim >= 1 and codes.shape[0] != factors.shape[0]:
        raise ValueError(f"{path}: codes has {codes.shape[0]} rows but factors has {factors.shape[0]}")
    return PrecomputedCodes(
        codes,
        factors,
        factor_sizes=None if dataset is None else dataset.factor_sizes,
        factor_names=None if dataset is None else dataset.factor_names,
        name=getattr(dataset, "name", None) or path.stem,
        source=str(path),
    )
