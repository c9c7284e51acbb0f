"""Exactly constant codes in SAP and IRS: untwine follows disentanglement_lib (dlib).

The expected values are computed here by hand or with a few lines of numpy / scikit-learn that follow dlib's
definitions, independently of untwine's code.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.svm import LinearSVC

sys.path.insert(0, str(Path(__file__).resolve().parent / "data" / "reference"))

import toy  # noqa: E402

from untwine.metrics import irs, sap  # noqa: E402


def labels(counts) -> np.ndarray:
    """Class k repeated counts[k] times, in a fixed shuffled order."""
    values = np.repeat(np.arange(len(counts)), counts)
    return np.random.default_rng(len(values)).permutation(values)


# -- SAP ----------------------------------------------------------------------------------------------------
def test_sap_constant_code_scores_the_test_frequency_of_the_majority_training_class():
    # With more than two classes the classifier on a constant input predicts the most frequent training class.
    factors_train = np.stack([labels([300, 200, 500]), labels([100, 400, 250, 250])], axis=1)
    factors_test = np.stack([labels([50, 30, 20]), labels([25, 25, 25, 25])], axis=1)
    informative_train = factors_train[:, :1].astype(np.float32)
    codes_train = np.hstack([np.full((1000, 1), 0.3, np.float32), informative_train])
    codes_test = np.hstack([np.full((100, 1), 0.3, np.float32), factors_test[:, :1].astype(np.float32)])
    scores, matrices = sap(codes_train, factors_train, codes_test, factors_test, return_matrices=True)
    # Majority training classes: 2 (500 of 1000) and 1 (400 of 1000); their test frequencies: 20% and 25%.
    np.testing.assert_array_equal(matrices["score_matrix"][0], [0.2, 0.25])
    gaps = np.abs(matrices["score_matrix"][1] - matrices["score_matrix"][0])
    assert scores["SAP_score"] == pytest.approx(gaps.mean(), abs=1e-15)


def dlib_svc_accuracy(code_train, factor_train, code_test, factor_test) -> float:
    """The accuracy of dlib's classifier: LinearSVC(C=0.01, class_weight="balanced"), library defaults."""
    classifier = LinearSVC(C=0.01, class_weight="balanced")
    classifier.fit(code_train[:, np.newaxis], factor_train)
    return float(np.mean(classifier.predict(code_test[:, np.newaxis]) == factor_test))


@pytest.mark.parametrize("constant", [0.0, 0.3, -2.5])
def test_sap_with_a_constant_code_equals_fitting_it_as_dlib_does(constant):
    case = toy.load_case("small/disentangled")
    factors_train, factors_test = case["factors_train"], case["factors_test"]
    codes_train, codes_test = case["codes_train"], case["codes_test"]
    _, base = sap(codes_train, factors_train, codes_test, factors_test, return_matrices=True)
    constant_train = np.full(len(codes_train), constant, np.float32)
    constant_test = np.full(len(codes_test), constant, np.float32)
    scores, matrices = sap(
        np.column_stack([codes_train, constant_train]),
        factors_train,
        np.column_stack([codes_test, constant_test]),
        factors_test,
        return_matrices=True,
    )
    expected_row = [
        dlib_svc_accuracy(constant_train, factors_train[:, j], constant_test, factors_test[:, j])
        for j in range(factors_train.shape[1])
    ]
    # The constant code's row is the fitted classifier's accuracy (the test frequency of one class), not 0.
    assert min(expected_row) > 0.15
    np.testing.assert_array_equal(matrices["score_matrix"][-1], expected_row)
    np.testing.assert_array_equal(matrices["score_matrix"][:-1], base["score_matrix"])
    expected = np.vstack([base["score_matrix"], expected_row])
    ordered = np.sort(expected, axis=0)
    assert scores["SAP_score"] == pytest.approx(np.mean(ordered[-1] - ordered[-2]), abs=1e-15)


# -- IRS ----------------------------------------------------------------------------------------------------
def irs_by_definition(codes: np.ndarray, factors: np.ndarray, quantile: float = 0.99) -> float:
    """dlib's IRS formula in float64 on the given (non-constant) code columns, factors grouped by value."""
    codes = codes.astype(np.float64)
    max_deviations = np.abs(codes - codes.mean(axis=0)).max(axis=0)
    per_code = np.full(codes.shape[1], -np.inf)
    for column in factors.T:
        groups = [codes[column == value] for value in np.unique(column)]
        spread = np.mean([np.quantile(np.abs(g - g.mean(axis=0)), quantile, axis=0) for g in groups], axis=0)
        per_code = np.maximum(per_code, 1.0 - spread / max_deviations)
    return float(np.sum(per_code * max_deviations) / np.sum(max_deviations))


def test_irs_drops_exactly_constant_codes_as_dlib_does():
    rng = np.random.default_rng(3)
    factors = np.stack([rng.integers(0, k, 10000) for k in (4, 5, 6)], axis=1)  # <= 20 values: bins = values
    informative = np.column_stack(
        [
            factors[:, 0] + 0.3 * rng.standard_normal(10000),
            0.5 * factors[:, 2] + 0.1 * rng.standard_normal(10000),
        ]
    ).astype(np.float32)
    codes = np.column_stack(
        [informative[:, 0], np.full(10000, 0.3), informative[:, 1], np.full(10000, 0.0)]
    ).astype(np.float32)
    # The cause of the former NaN: the float32 variance of the constant 0.3 is not 0 (that of 0.0 is).
    assert codes[:, 1].var() > 0 and codes[:, 3].var() == 0
    values, details = irs(codes, factors, return_matrices=True)
    assert values["num_active_dims"] == 2
    np.testing.assert_array_equal(details["active_dims"], [True, False, True, False])
    expected = irs_by_definition(informative, factors)
    assert 0.5 < expected < 0.9
    assert values["IRS"] == pytest.approx(expected, rel=1e-12)


def test_irs_of_a_code_copying_a_factor_plus_a_constant_is_one():
    factors = np.stack([np.arange(600) % 3, np.arange(600) // 200 % 2 + np.arange(600) % 5], axis=1)
    codes = np.column_stack([factors[:, 0] * 0.7, np.full(600, -0.6)]).astype(np.float32)
    assert irs(codes, factors) == {"IRS": 1.0, "num_active_dims": 1}


def test_irs_constant_codes_shift_dlib_float32_value_only_by_its_rounding():
    # dlib keeps a constant code whose float32 variance is positive; its weight (a float32 rounding error of
    # the mean, ~1e-8) makes its contribution negligible, so untwine's value is within 1e-4 of dlib's.
    case = toy.load_case("small/disentangled")
    codes, factors = case["codes_train"], case["factors_train"]
    with_constants = np.column_stack([codes, np.full((len(codes), 2), [-0.6, 0.3], np.float32)])
    untwine_value = irs(with_constants, factors)["IRS"]
    assert untwine_value == irs(codes, factors)["IRS"]

    kept = with_constants[:, with_constants.var(axis=0) > 0]  # dlib's choice, in float32
    assert kept.shape[1] == codes.shape[1] + 2
    max_deviations = np.abs(kept - kept.mean(axis=0)).max(axis=0)
    per_code = np.full(kept.shape[1], -np.inf)
    for column in factors.T:
        groups = [kept[column == value] for value in np.unique(column)]
        spread = np.mean([np.quantile(np.abs(g - g.mean(axis=0)), 0.99, axis=0) for g in groups], axis=0)
        per_code = np.maximum(per_code, 1.0 - spread / max_deviations)
    dlib_value = float(np.average(per_code, weights=max_deviations))
    assert np.isfinite(dlib_value)
    assert untwine_value == pytest.approx(dlib_value, abs=1e-4)
