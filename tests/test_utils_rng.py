"""Explicit randomness: seeds, Generators and dlib-style RandomStates."""

from __future__ import annotations

import numpy as np
import pytest

from untwine.utils.rng import as_generator


def test_a_random_state_seeds_a_generator_reproducibly_and_advances():
    first, second = np.random.RandomState(7), np.random.RandomState(7)
    a, b = as_generator(first), as_generator(second)
    assert np.array_equal(a.integers(1000, size=20), b.integers(1000, size=20))
    # The caller's stream moved on by exactly one draw: the next conversion gives new draws, the same
    # for both streams, and the streams themselves stay in step.
    again_a, again_b = (
        as_generator(first).integers(1000, size=20),
        as_generator(second).integers(1000, size=20),
    )
    assert np.array_equal(again_a, again_b)
    assert not np.array_equal(again_a, as_generator(np.random.RandomState(7)).integers(1000, size=20))
    reference = np.random.RandomState(7)
    reference.randint(0, 2**63 - 1, size=2, dtype=np.int64)
    assert first.randint(10**9) == reference.randint(10**9)


def test_seeds_and_generators_pass_and_none_is_refused():
    generator = np.random.default_rng(3)
    assert as_generator(generator) is generator
    assert np.array_equal(as_generator(3).integers(99, size=5), np.random.default_rng(3).integers(99, size=5))
    with pytest.raises(TypeError, match="a random generator or an integer seed is required"):
        as_generator(None)
    with pytest.raises(TypeError, match="numpy.random.RandomState"):
        as_generator("0")
