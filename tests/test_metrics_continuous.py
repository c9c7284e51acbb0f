"""The continuous-factor variants: closed forms (a code equal to a factor, independent codes) and the
cases where they coincide with the discrete metrics."""

from __future__ import annotations

import numpy as np
import pytest

from untwine.metrics import dci_regression, mig, mig_continuous, sap


def test_mig_continuous_on_a_copied_factor_and_on_noise():
    rng = np.random.default_rng(0)
    factors = rng.uniform(size=(5000, 2))
    noise = rng.uniform(size=(5000, 1))
    # Code 0 is factor 0 exactly (same bins: I = H), code 1 independent noise: gap ~ 1 for factor 0;
    # factor 1 has no informative code: gap ~ 0.  Spurious MI of 20x20 bins on 5,000 points is about
    # (19 * 19) / (2 * 5000) nats ~ 0.036, relative to H ~ log 20 ~ 3.0: ~0.012.
    scores, matrices = mig_continuous(np.hstack([factors[:, :1], noise]), factors, return_matrices=True)
    gap = matrices["mig_per_factor"]
    assert gap[0] == pytest.approx(1.0 - matrices["mutual_info"][1, 0] / matrices["factor_entropy"][0])
    assert 0.98 < gap[0] <= 1.0 and 0.0 <= gap[1] < 0.02
    assert scores["continuous_mig"] == pytest.approx(gap.mean())


def test_mig_continuous_equals_mig_on_factors_with_few_values():
    rng = np.random.default_rng(1)
    factors = rng.integers(0, 5, size=(2000, 3))
    codes = factors + rng.normal(scale=0.4, size=factors.shape)
    # Five evenly spaced values keep one bin each: the discretised factor is the factor.
    assert mig_continuous(codes, factors)["continuous_mig"] == pytest.approx(
        mig(codes, factors)["discrete_mig"]
    )


def test_dci_regression_separates_a_disentangled_from_a_mixed_code():
    rng = np.random.default_rng(2)
    factors = rng.uniform(size=(1200, 2))
    test = rng.uniform(size=(400, 2))
    clean = dci_regression(factors[:1000], factors[:1000], test, test)
    assert clean["disentanglement"] > 0.95 and clean["completeness"] > 0.95
    assert clean["informativeness_test"] > 0.98  # R^2 of the boosted trees on an exact copy
    rotation = np.array([[1.0, 1.0], [1.0, -1.0]]) / np.sqrt(2)
    mixed = dci_regression(factors[:1000] @ rotation, factors[:1000], test @ rotation, test)
    assert mixed["disentanglement"] < 0.5 and mixed["informativeness_test"] > 0.9
    noise = dci_regression(rng.normal(size=(1000, 2)), factors[:1000], rng.normal(size=(400, 2)), test)
    assert noise["informativeness_test"] < 0.05  # no better than predicting the mean


def test_sap_continuous_is_the_squared_correlation():
    rng = np.random.default_rng(3)
    factors = rng.uniform(size=(3000, 1))
    codes = np.hstack([factors + rng.normal(scale=0.1, size=factors.shape), rng.normal(size=factors.shape)])
    levels = np.floor(factors * 100).astype(np.int64)  # 100 ordered levels (untwine's factors are indices)
    score, matrices = sap(codes, levels, continuous_factors=True, return_matrices=True)
    r = np.corrcoef(codes[:, 0], levels[:, 0])[0, 1]
    assert matrices["score_matrix"][0, 0] == pytest.approx(r**2)


def test_continuous_factors_must_be_finite_and_vary():
    codes = np.zeros((10, 2)) + np.arange(10)[:, None]
    with pytest.raises(ValueError, match="factors must be finite"):
        mig_continuous(codes, np.full((10, 1), np.nan))
    with pytest.raises(ValueError, match=r"factors\[:, 0\] is constant"):
        mig_continuous(codes, np.ones((10, 1)))
