"""The classifiers behind DCI and the downstream tasks: the binned boosted trees and fit sharing."""

import numpy as np
import pytest

from untwine.metrics._binned_gbt import BinnedGradientBoostingClassifier
from untwine.metrics._estimators import FAST_CV_POINTS, FitEngine, FitTask, PrefixFit, make_estimator, run_fit
from untwine.metrics.downstream import downstream_task


def mixed_columns(n: int, seed: int):
    """A grid-valued column (3 values), a continuous one and an uninformative continuous one."""
    rng = np.random.default_rng(seed)
    grid = rng.integers(0, 3, n).astype(np.float32)
    signal = rng.normal(size=n).astype(np.float32)
    noise = rng.normal(size=n).astype(np.float32)
    labels = (grid + (signal > 0.3) + (signal > -0.5)).astype(np.int64)  # 5 classes
    return np.stack([grid, signal, noise], axis=1), labels


def test_binned_trees_give_each_column_its_own_thresholds():
    x, y = mixed_columns(2000, 0)
    model = BinnedGradientBoostingClassifier(max_bins=63, n_estimators=20).fit(x, y)
    # The grid column keeps its 2 exact midpoints; the continuous ones get up to 63 quantile cuts.
    np.testing.assert_allclose(model.thresholds_[0], [0.5, 1.5])
    assert 40 <= model.thresholds_[1].shape[0] <= 63 and 40 <= model.thresholds_[2].shape[0] <= 63
    # Two code paths agree: the raw scores kept while fitting and a fresh pass over the binned inputs.
    np.testing.assert_array_equal(model.predict_train(), model.predict(x))
    np.testing.assert_allclose(model.decision_function(x), model.train_raw_, rtol=0, atol=1e-12)
    # The label is a function of the first two columns: the trees find it (up to the points between
    # a cut of the label at 0.3 / -0.5 and the nearest of the 63 quantile thresholds) and credit them.
    wrong = model.predict_train() != y
    assert wrong.mean() < 0.02
    assert np.all(np.minimum(np.abs(x[wrong, 1] - 0.3), np.abs(x[wrong, 1] + 0.5)) < 0.1)
    assert model.feature_importances_.sum() == pytest.approx(1.0)
    assert model.feature_importances_[2] < 0.01


def test_fast_logistic_regression_shares_its_prefix_search():
    x, y = mixed_columns(1500, 1)
    test_x, test_y = mixed_columns(400, 2)
    big = run_fit(FitTask("lr_cv_fast", x, y, test_x, test_y))
    # The prefix result is the plain cross-validated fit on the first FAST_CV_POINTS points.
    direct = make_estimator("lr_cv").fit(x[:FAST_CV_POINTS], y[:FAST_CV_POINTS])
    assert big.prefix is not None
    assert big.prefix.train_accuracy == np.mean(direct.predict(x[:FAST_CV_POINTS]) == y[:FAST_CV_POINTS])
    assert big.prefix.test_accuracy == np.mean(direct.predict(test_x) == test_y)
    # Through the engine, in process and in workers, the prefix key answers with that result.
    for n_jobs in (1, 2):
        engine = FitEngine(n_jobs)
        small_task = FitTask("lr_cv_fast", x[:FAST_CV_POINTS], y[:FAST_CV_POINTS], test_x, test_y)
        engine.add("big", FitTask("lr_cv_fast", x, y, test_x, test_y))
        engine.add("small", PrefixFit("big", small_task))
        shared = engine.result("small")
        alone = run_fit(small_task)
        assert (shared.train_accuracy, shared.test_accuracy) == (alone.train_accuracy, alone.test_accuracy)


def test_prefix_that_misses_a_class_is_fitted_on_its_own():
    x, y = mixed_columns(1200, 3)
    y = y.copy()
    y[-5:] = 7  # a class that only appears after the first FAST_CV_POINTS points
    engine = FitEngine(1)
    small_task = FitTask("lr_cv_fast", x[:FAST_CV_POINTS], y[:FAST_CV_POINTS], x, y)
    engine.add("big", FitTask("lr_cv_fast", x, y, x, y))
    engine.add("small", PrefixFit("big", small_task))
    assert engine.result("big").prefix is None  # the C search ran on all points instead
    assert engine.result("small").test_accuracy == run_fit(small_task).test_accuracy


def test_fast_downstream_logistic_regression_matches_separate_fits():
    x, y = mixed_columns(1500, 4)
    factors = np.stack([y, (x[:, 0] > 0.5).astype(np.int64)], axis=1)
    test_x, test_y = mixed_columns(300, 5)
    test_factors = np.stack([test_y, (test_x[:, 0] > 0.5).astype(np.int64)], axis=1)
    shared = downstream_task(x, factors, test_x, test_factors, num_train=[100, 1000, 1500], fast=True)
    separate = downstream_task(x[:1000], factors[:1000], test_x, test_factors, num_train=[1000], fast=True)
    for key, value in separate.items():
        assert shared[key] == value, key
