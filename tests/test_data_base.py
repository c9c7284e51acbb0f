"""The shared factor-space machinery: index <-> factors, validation, seeded sampling, the stream."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from untwine.data import BatchStream, FactorSpace, get_dataset, get_spec, list_datasets
from untwine.data.base import ImageGridDataset


@given(st.lists(st.integers(1, 7), min_size=1, max_size=5), st.data())
def test_index_factor_round_trip(sizes, data):
    space = FactorSpace(sizes)
    index = data.draw(st.lists(st.integers(0, space.num_states - 1), min_size=1, max_size=20))
    factors = space.index_to_factors(np.array(index))
    assert factors.shape == (len(index), len(sizes))
    assert (factors < np.array(sizes)).all() and (factors >= 0).all()
    np.testing.assert_array_equal(space.factors_to_index(factors), index)


def test_index_is_row_major():
    space = FactorSpace([2, 3, 4])
    # The last factor varies fastest: index = f0*12 + f1*4 + f2.
    np.testing.assert_array_equal(space.factors_to_index([[1, 2, 3], [0, 0, 1], [0, 1, 0]]), [23, 1, 4])
    np.testing.assert_array_equal(
        space.index_to_factors(np.arange(24))[:5], [[0, 0, 0], [0, 0, 1], [0, 0, 2], [0, 0, 3], [0, 1, 0]]
    )


def test_validation_names_the_problem():
    space = FactorSpace([2, 3], names=["a", "b"])
    with pytest.raises(ValueError, match=r"factors\[0, 1\] = 3 is out of range for factor 'b'"):
        space.factors_to_index([[0, 3]])
    with pytest.raises(ValueError, match="shape"):
        space.factors_to_index([[0, 1, 2]])
    with pytest.raises(ValueError, match="integer"):
        space.factors_to_index([[0.5, 1]])
    with pytest.raises(ValueError, match="0..5"):
        space.index_to_factors(np.array([6]))


def test_sampling_is_seeded_and_uniform():
    space = FactorSpace([3, 40])
    a = space.sample(20000, 7)
    b = space.sample(20000, np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, space.sample(20000, 8))
    counts = np.bincount(a[:, 0], minlength=3) / 20000
    np.testing.assert_allclose(counts, 1 / 3, atol=0.015)
    with pytest.raises(TypeError, match="seed"):
        space.sample(3, None)


def _toy_grid():
    # 2 latent factors (2, 3) and a nuisance factor of size 2 in the middle: 12 stored images whose
    # pixel value encodes the stored row, so lookups can be checked exactly.
    full = FactorSpace([2, 2, 3], ["a", "nuisance", "b"])
    images = np.arange(12, dtype=np.uint8).reshape(12, 1, 1, 1) * np.ones((1, 4, 4, 1), np.uint8)
    return ImageGridDataset("toy", images, full, latent_indices=[0, 2], scale=1 / 255)


def test_image_grid_lookup_and_nuisance():
    ds = _toy_grid()
    assert ds.factor_names == ("a", "b") and ds.nuisance_factor_names == ("nuisance",)
    assert not ds.deterministic and ds.observation_shape == (4, 4, 1)
    obs = ds.sample_observations_from_factors(np.array([[1, 2]] * 200), 0)
    rows = np.round(obs[:, 0, 0, 0] * 255).astype(int)
    # a=1, b=2 -> stored row 1*6 + n*3 + 2 for nuisance n in {0, 1}; both must appear.
    assert set(rows) == {8, 11}
    assert obs.dtype == np.float32 and obs.max() <= 1.0


def test_stream_resumes_bit_identically():
    ds = _toy_grid()
    stream = BatchStream(ds, batch_size=5, seed=3)
    next(stream)
    state = stream.state_dict()
    expected = [next(stream) for _ in range(3)]
    resumed = BatchStream(ds, batch_size=5, seed=3)
    resumed.load_state_dict(state)
    for b1, b2 in zip(expected, [next(resumed) for _ in range(3)], strict=True):
        np.testing.assert_array_equal(b1.factors, b2.factors)
        assert b1.images.shape == (5, 1, 4, 4) and (b1.images == b2.images).all()


def test_registry_lists_every_dataset_and_rejects_unknown_names():
    names = list_datasets()
    for required in (
        "dsprites_full",
        "shapes3d",
        "mpi3d_real",
        "cars3d",
        "smallnorb",
        "procedural_dsprites",
        "procedural_shapes3d",
    ):
        assert required in names
    assert get_spec("smallnorb").nuisance == ("instance",)
    with pytest.raises(KeyError, match="known datasets: dsprites_full"):
        get_dataset("dsprite")
