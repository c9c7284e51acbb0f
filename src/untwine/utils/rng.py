"""Explicit randomness: every draw in untwine comes from a generator the caller passes or seeds.

No function reads or writes numpy's or torch's global random state.
"""

from __future__ import annotations

import numpy as np

RandomLike = int | np.random.Generator | np.random.RandomState | None


def as_generator(rng: RandomLike) -> np.random.Generator:
    """Return ``rng`` if it is a Generator, else a new PCG64 Generator seeded with it.

    A ``numpy.random.RandomState`` (what disentanglement_lib-style code passes) is accepted: the
    Generator is seeded with one draw from it, so the caller's stream advances and the same
    RandomState state always gives the same draws (they are not the draws the RandomState itself would
    have made).  ``None`` is rejected on purpose: an unseeded draw would make results irreproducible.
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
    if isinstance(rng, np.random.RandomState):
        return np.random.default_rng(int(rng.randint(0, 2**63 - 1, dtype=np.int64)))
    raise TypeError(
        f"rng must be an int seed, numpy.random.Generator or numpy.random.RandomState, got {type(rng).__name__}"
    )
