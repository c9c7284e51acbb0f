"""Explicit randomness: every draw in untwine comes from a generator the caller passes or seeds.

No function reads or writes numpy's or torch's global random state.
"""

from __future__ import annotations

import numpy as np

RandomLike = int | np.random.Generator | None


def as_generator(rng: RandomLike) -> np.random.Generator:
    """Return ``rng`` if it is a Generator, else a new PCG64 Generator seeded with it.

    ``None`` is rejected on purpose: an unseeded draw would make results irreproducible.
    """
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, bool) or rng is None:
        raise TypeError(
            "a random generator or an integer seed is required (got "
            f"{rng!r}); pass e.g. rng=0 or rng=numpy.random.default_rng(0)"
        )
    if isinstance(rng, int | np.integer):
        return np.random.default_rng(int(rng))
    raise TypeError(f"rng must be an int seed or numpy.random.Generator, got {type(rng).__name__}")
