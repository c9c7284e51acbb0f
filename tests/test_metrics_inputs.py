"""Bad input is refused with a ValueError that names the offending argument."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from untwine.metrics import (
    dci,
    downstream_task,
    irs,
    mig,
    modularity_explicitness,
    mutual_info_matrix,
    sap,
    udr,
    unsupervised_scores,
)


def good_arrays(n=60, d=3, sizes=(3, 4), seed=0):
    rng = np.random.default_rng(seed)
    factors = np.stack([np.arange(n) % k for k in sizes], axis=1)
    rng.shuffle(factors)
    return rng.standard_normal((n, d)).astype(np.float32), factors


def call_all(codes_train, factors_train, codes_test, factors_test):
    """Every array metric with train/test arguments (cheap settings: validation comes first)."""
    yield lambda: dci(codes_train, factors_train, codes_test, factors_test, fast=True)
    yield lambda: sap(codes_train, factors_train, codes_test, factors_test)
    yield lambda: modularity_explicitness(codes_train, factors_train, codes_test, factors_test)
    yield lambda: downstream_task(codes_train, factors_train, codes_test, factors_test, num_train=[20])


def call_train_only(codes, factors, variation_only=False):
    """(call, name of the codes argument, name of the factors argument) of the train-only metrics."""
    yield lambda: mig(codes, factors), "codes", "factors"
    yield lambda: irs(codes, factors), "codes", "factors"
    yield lambda: sap(codes, factors, continuous_factors=True), "codes_train", "factors_train"
    if not variation_only:  # the MI with a constant factor is well defined (0)
        yield lambda: mutual_info_matrix(codes, factors), "codes", "factors"


BAD_VALUES = st.sampled_from([np.nan, np.inf, -np.inf])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    value=BAD_VALUES, row=st.integers(0, 59), col=st.integers(0, 2), which=st.sampled_from(["train", "test"])
)
def test_non_finite_codes_are_refused(value, row, col, which):
    codes, factors = good_arrays()
    test_codes, test_factors = good_arrays(seed=1)
    target = codes if which == "train" else test_codes
    target[row, col] = value
    name = "codes_train" if which == "train" else "codes_test"
    for call in call_all(codes, factors, test_codes, test_factors):
        with pytest.raises(ValueError, match=rf"^{name} must be finite.*\[{row}, {col}\]"):
            call()
    if which == "train":
        for call, codes_name, _ in call_train_only(codes, factors):
            with pytest.raises(ValueError, match=f"^{codes_name} must be finite"):
                call()
        with pytest.raises(ValueError, match="^codes must be finite"):
            unsupervised_scores(codes)


@settings(max_examples=20, deadline=None)
@given(drop=st.integers(1, 30), which=st.sampled_from(["factors_train", "codes_test", "factors_test"]))
def test_mismatched_lengths_are_refused(drop, which):
    codes, factors = good_arrays()
    test_codes, test_factors = good_arrays(seed=1)
    arrays = {
        "codes_train": codes,
        "factors_train": factors,
        "codes_test": test_codes,
        "factors_test": test_factors,
    }
    arrays[which] = arrays[which][drop:]
    pattern = {
        "factors_train": "^factors_train has .* but codes_train has",
        "codes_test": "^factors_test has .* but codes_test has",
        "factors_test": "^factors_test has .* but codes_test has",
    }[which]
    for call in call_all(*arrays.values()):
        with pytest.raises(ValueError, match=pattern):
            call()


@settings(max_examples=20, deadline=None)
@given(
    row=st.integers(0, 59),
    col=st.integers(0, 1),
    value=st.one_of(st.floats(0.01, 0.99), st.integers(-50, -1)),
)
def test_non_integer_and_negative_factors_are_refused(row, col, value):
    codes, factors = good_arrays()
    bad = factors.astype(np.float64)
    bad[row, col] += value
    pattern = (
        "^factors_train must be non-negative"
        if float(value).is_integer()
        else "^factors_train must hold integer"
    )
    if float(value).is_integer() and bad[row, col] >= 0:
        return
    for call in call_all(codes, bad, *good_arrays(seed=1)):
        with pytest.raises(ValueError, match=pattern):
            call()
    for call, _, factors_name in call_train_only(codes, bad):
        with pytest.raises(ValueError, match=f"^{factors_name} must"):
            call()


@pytest.mark.parametrize("col", [0, 1])
def test_a_factor_with_a_single_value_is_refused(col):
    codes, factors = good_arrays()
    factors[:, col] = 2
    for call in call_all(codes, factors, *good_arrays(seed=1)):
        with pytest.raises(ValueError, match=rf"^factors_train\[:, {col}\] takes a single value"):
            call()
    for call, _, factors_name in call_train_only(codes, factors, variation_only=True):
        with pytest.raises(ValueError, match=rf"^{factors_name}\[:, {col}\] takes a single value"):
            call()


def test_shapes_dtypes_and_sizes_are_checked():
    codes, factors = good_arrays()
    test_codes, test_factors = good_arrays(seed=1)
    with pytest.raises(ValueError, match="^codes must be a 2-D array"):
        mig(codes[:, 0], factors)
    with pytest.raises(ValueError, match="^factors must be a 2-D array"):
        mig(codes, factors[:, 0])
    with pytest.raises(ValueError, match="^codes must be a numeric array"):
        mig(codes.astype(str), factors)
    with pytest.raises(ValueError, match="^factors must hold integer"):
        mig(codes, factors.astype(bool))
    with pytest.raises(ValueError, match="^codes_test has 2 code dimensions but codes_train has 3"):
        dci(codes, factors, test_codes[:, :2], test_factors)
    with pytest.raises(ValueError, match="^factors_test has 1 factors but the training factors have 2"):
        sap(codes, factors, test_codes, test_factors[:, :1])
    with pytest.raises(ValueError, match="^codes has 1 points; at least 2"):
        mig(codes[:1], factors[:1])
    with pytest.raises(ValueError, match="^num_train asks for 100 training points but only 60"):
        downstream_task(codes, factors, test_codes, test_factors, num_train=[10, 100])
    with pytest.raises(ValueError, match="^num_train sizes must be >= 5"):
        downstream_task(codes, factors, test_codes, test_factors, num_train=[3])
    with pytest.raises(ValueError, match="^predictor must be one of"):
        downstream_task(codes, factors, test_codes, test_factors, num_train=[10], predictor="svm")
    with pytest.raises(ValueError, match="^num_bins must be an integer >= 1"):
        mig(codes, factors, num_bins=0)
    with pytest.raises(ValueError, match="^diff_quantile must lie in"):
        irs(codes, factors, diff_quantile=1.5)
    with pytest.raises(ValueError, match="^codes_test and factors_test are required"):
        sap(codes, factors)
    with pytest.raises(ValueError, match="^n_jobs must be"):
        dci(codes, factors, test_codes, test_factors, n_jobs=0)
    with pytest.raises(ValueError, match=r"^codes\[1\] has 59 points but codes\[0\] has 60"):
        udr([codes, codes[1:]])
    with pytest.raises(ValueError, match="^codes must be a list of at least two"):
        udr([codes])
