"""Pairs of observations that differ in a few factors: the data of weakly-supervised disentanglement
(Locatello et al. 2020, "Weakly-Supervised Disentanglement Without Compromises").

The rule is disentanglement_lib's ``simple_dynamics`` (``methods/weak/train_weak_lib.py``), per pair:

1. draw the first observation's factors uniformly;
2. ``k_observed`` is ``k``, or for ``k=-1`` ("rnd") uniform in ``1 .. num_factors - 1``;
3. the number of factors to resample is ``1`` or ``k_observed``, each with probability 1/2;
4. that many distinct factors are chosen uniformly, and each gets a new value drawn uniformly over all
   its values -- it may equal the old one, so "resampled" is not always "changed", exactly as in
   disentanglement_lib;
5. the pair's label is the last factor resampled (what the ``labels`` aggregation of GVAE / ML-VAE
   reads).

One difference, on purpose: disentanglement_lib draws the new values (step 4) from numpy's *global*
random state, so its pairs are not reproducible from the run's seed; here every draw comes from the
explicit generator, so a run's pairs are a function of its data seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from untwine.data.base import GroundTruthDataset
from untwine.utils.rng import RandomLike, as_generator

__all__ = ["RANDOM_K", "FactorPairs", "check_k", "resample_factors", "sample_pair_factors", "sample_pairs"]

#: ``k`` meaning "rnd": k_observed uniform in 1 .. num_factors - 1 for each pair (disentanglement_lib's -1).
RANDOM_K = -1


@dataclass(frozen=True)
class FactorPairs:
    """Factors of ``n`` pairs: ``first`` and ``second`` int64 (n, K); ``changed``: int64 (n,), the last
    factor resampled for each pair; ``num_resampled``: int64 (n,), how many factors were resampled."""

    first: np.ndarray
    second: np.ndarray
    changed: np.ndarray
    num_resampled: np.ndarray


def check_k(k: int, num_factors: int) -> int:
    """``k`` itself when it is valid for ``num_factors`` factors, else a ValueError saying what is."""
    if isinstance(k, bool) or not isinstance(k, int | np.integer):
        raise ValueError(f"k must be an int (1 .. num_factors - 1, or -1 for 'rnd'), got {k!r}")
    if num_factors < 2:
        raise ValueError(f"pairs need a dataset with at least 2 factors, this one has {num_factors}")
    if k != RANDOM_K and not 1 <= k <= num_factors - 1:
        raise ValueError(
            f"k={k} is outside 1 .. {num_factors - 1} for a dataset with {num_factors} factors "
            "(use k=-1 to draw k uniformly per pair)"
        )
    return int(k)


def sample_pair_factors(dataset: GroundTruthDataset, num: int, k: int, rng: RandomLike) -> FactorPairs:
    """``num`` pairs of factors by the rule of the module docstring, every draw from ``rng``."""
    rng = as_generator(rng)
    k = check_k(k, dataset.num_factors)
    return resample_factors(dataset, dataset.sample_factors(num, rng), k, rng)


def resample_factors(dataset: GroundTruthDataset, first: np.ndarray, k: int, rng: RandomLike) -> FactorPairs:
    """Pairs whose first halves are the given factors (steps 2-5 of the module docstring's rule)."""
    rng = as_generator(rng)
    num_factors = dataset.num_factors
    k = check_k(k, num_factors)
    first = dataset.factor_space.validate(first, "first")
    num = first.shape[0]
    if k == RANDOM_K:
        k_observed = rng.integers(1, num_factors, size=num)  # 1 .. num_factors - 1
    else:
        k_observed = np.full(num, k, dtype=np.int64)
    num_resampled = np.where(rng.random(num) < 0.5, 1, k_observed).astype(np.int64)
    # Distinct factors per pair: the first num_resampled entries of a random permutation of the factors.
    order = np.argsort(rng.random((num, num_factors)), axis=1)
    chosen = np.arange(num_factors)[np.newaxis, :] < num_resampled[:, np.newaxis]  # (num, K) by position
    sizes = np.asarray(dataset.factor_sizes, dtype=np.int64)
    new_values = np.floor(rng.random((num, num_factors)) * sizes[order]).astype(np.int64)
    second = first.copy()
    rows = np.repeat(np.arange(num), num_factors).reshape(num, num_factors)
    second[rows[chosen], order[chosen]] = new_values[chosen]
    changed = order[np.arange(num), num_resampled - 1]
    return FactorPairs(first, second, changed.astype(np.int64), num_resampled)


def sample_pairs(
    dataset: GroundTruthDataset, num: int, k: int, rng: RandomLike
) -> tuple[FactorPairs, np.ndarray]:
    """``num`` pairs: (factors, images), images float32 ``(2 * num, H, W, C)`` in [0, 1] -- the first
    images of the pairs, then the second ones (``images[:num]``, ``images[num:]``).

    Both halves come from one call to the dataset: one render and one float conversion of ``2 * num``
    images.  (Two calls and a concatenation ran 4x slower per image here: the extra megabyte-sized
    temporaries are fresh ``mmap`` pages every time, and their page faults cost more than the drawing.)
    """
    rng = as_generator(rng)
    pairs = sample_pair_factors(dataset, num, k, rng)
    images = dataset.sample_observations_from_factors(np.concatenate([pairs.first, pairs.second]), rng)
    return pairs, images
