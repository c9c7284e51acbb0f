"""Unified scores: the precision curve and the aggregations by hand, and disentanglement_lib's own test
expectations (unified_scores_test.py) on its identity data."""

from __future__ import annotations

import numpy as np
import pytest

from untwine.metrics import unified_scores
from untwine.metrics.unified_scores import aggregate, precision, precision_curve_scores


def identity_data(num: int, rng: np.random.Generator, duplicated: bool = False):
    """dlib's ``IdentityObservationsData``: 10 factors uniform in 1..10, the codes are the factors."""
    factors = rng.integers(1, 11, size=(num, 10))
    codes = factors.astype(np.float64)
    return (np.hstack([codes, codes]) if duplicated else codes), factors


def test_precision_counts_connected_groups_of_codes_and_factors():
    matrix = np.array([[0.9, 0.0], [0.0, 0.8], [0.1, 0.0]])
    assert [precision(matrix, t) for t in (0.9, 0.8, 0.1, 0.0)] == [1, 2, 2, 2]
    # One code tied to both factors joins them into one group.
    assert precision(np.array([[0.5, 0.5], [0.0, 0.2]]), 0.2) == 1
    assert precision(np.zeros((3, 2)), 0.0) == 0
    # Thresholds 0.9, 0.8, 0.1, 0, 0, 0: trapezoids (1+2)/2*0.1 + (2+2)/2*0.7 + (2+2)/2*0.1 = 1.75.
    assert precision_curve_scores(matrix) == pytest.approx({"area_precision": 1.75, "max_precision": 2.0})


def test_aggregations_of_a_hand_computed_matrix():
    matrix = np.array([[0.6, 0.0], [0.2, 0.0], [0.0, 0.5]])
    entropy = np.array([np.log(2), np.log(4)])
    scores = aggregate(matrix, entropy)
    assert scores["mig.factor_0"] == pytest.approx(0.4 / np.log(2))
    assert scores["mig.factor_1"] == pytest.approx(0.5 / np.log(4))
    assert scores["mig"] == pytest.approx((0.4 / np.log(2) + 0.5 / np.log(4)) / 2)
    assert scores["sap"] == pytest.approx((0.4 + 0.5) / 2)
    assert scores["sap.factor_1"] == pytest.approx(0.5)
    # Every code is tied to one factor only: modularity 1; factor 0 is spread over two codes (3:1).
    assert scores["modularity"] == pytest.approx(1.0)
    assert scores["dci_disentanglement"] == pytest.approx(1.0, abs=1e-9)
    p = np.array([0.75, 0.25])
    completeness_0 = 1 + (p * np.log(p)).sum() / np.log(3)
    assert scores["dci_completeness.code_0"] == pytest.approx(completeness_0, abs=1e-9)
    assert scores["dci_completeness.code_1"] == pytest.approx(1.0, abs=1e-9)
    assert scores["dci_completeness"] == pytest.approx((0.8 * completeness_0 + 0.5) / 1.3, abs=1e-9)
    assert scores["dci"] == scores["dci_disentanglement"]
    assert scores["max_precision"] == 2.0


def test_dlib_expectations_on_identity_codes_mutual_information():
    rng = np.random.default_rng(0)
    codes, factors = identity_data(10000, rng)
    test_codes, test_factors = identity_data(100, rng)
    scores = unified_scores(codes, factors, test_codes, test_factors, matrices=["mutual_information_matrix"])
    assert 0.9 <= scores["mutual_information_matrix.mig"] <= 1.0
    assert 0.9 <= scores["mutual_information_matrix.modularity"] <= 1.0
    # Duplicated codes: no gap between the two copies, modularity untouched (dlib's test: 1,000 points).
    codes, factors = identity_data(1000, rng, duplicated=True)
    test_codes, test_factors = identity_data(1000, rng, duplicated=True)
    scores = unified_scores(codes, factors, test_codes, test_factors, matrices=["mutual_information_matrix"])
    assert 0.0 <= scores["mutual_information_matrix.mig"] <= 0.2
    assert 0.9 <= scores["mutual_information_matrix.modularity"] <= 1.0


def test_dlib_expectations_on_duplicated_codes_svm_and_boosted_trees():
    rng = np.random.default_rng(1)
    codes, factors = identity_data(1000, rng, duplicated=True)
    test_codes, test_factors = identity_data(1000, rng, duplicated=True)
    scores, matrices = unified_scores(
        codes,
        factors,
        test_codes,
        test_factors,
        matrices=["accuracy_svm_matrix", "importance_gbt_matrix"],
        return_matrices=True,
    )
    assert 0.0 <= scores["accuracy_svm_matrix.sap"] <= 0.2
    assert 0.9 <= scores["importance_gbt_matrix.dci_disentanglement"] <= 1.0
    assert matrices["importance_gbt_matrix"].shape == matrices["accuracy_svm_matrix"].shape == (20, 10)
    # Each factor's importance lies on its two copies only.
    importance = matrices["importance_gbt_matrix"]
    on_copies = importance[np.arange(10), np.arange(10)] + importance[np.arange(10) + 10, np.arange(10)]
    assert np.all(on_copies > 0.9 * importance.sum(axis=0))


def test_unknown_matrix_is_refused_by_name():
    codes, factors = identity_data(50, np.random.default_rng(0))
    with pytest.raises(ValueError, match="matrices must be a non-empty list drawn from"):
        unified_scores(codes, factors, codes, factors, matrices=["importance_matrix"])
