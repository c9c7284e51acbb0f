"""Very large finite codes (1e150): every metric with a solver finishes quickly, with a value or with an
error naming the metric, the code dimension and the magnitude (issue 16, item 9: SAP's LinearSVC used to
iterate for minutes)."""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "data" / "reference"))

import toy  # noqa: E402

from untwine.metrics import (  # noqa: E402
    beta_vae_score,
    dci,
    downstream_task,
    factor_vae_score,
    modularity_explicitness,
    sap,
    unsupervised_scores,
)
from untwine.metrics._validation import SOLVER_LIMITS  # noqa: E402

HUGE = 1e150
QUICK = 30.0  # seconds; the SAP fit on such codes ran for minutes


@pytest.fixture(scope="module")
def split():
    """Codes whose first two dimensions follow factors 0 and 1 at scale 1e150; dimension 0 is largest."""
    rng = np.random.default_rng(0)
    n = 500
    factors = rng.integers(0, 4, size=(2 * n, 3))
    codes = np.concatenate([factors[:, :2] + rng.normal(size=(2 * n, 2)), rng.normal(size=(2 * n, 2))], 1)
    codes[:, :2] *= HUGE
    codes[:, 0] *= 10.0
    return codes[:n], factors[:n], codes[n:], factors[n:]


def _refused(call, metric: str, name: str) -> str:
    start = time.perf_counter()
    with pytest.raises(ValueError) as error:
        call()
    assert time.perf_counter() - start < QUICK
    message = str(error.value)
    assert message.startswith(f"{metric}: {name}[:, 0] reaches ") and "e+151 in magnitude" in message, message
    assert "rescale the codes" in message
    return message


def test_sap_refuses_codes_its_solver_cannot_take(split):
    message = _refused(lambda: sap(*split), "sap_score", "codes_train")
    assert "1e+50" in message and "LinearSVC" in message


def test_sap_takes_codes_up_to_its_limit(split):
    """At the bound itself the fit is quick and gives a value (the bound is well below the 1e76 hang)."""
    codes_train, factors_train, codes_test, factors_test = split
    limit, _ = SOLVER_LIMITS["linear_svc"]
    scaled = codes_train / np.abs(codes_train).max() * limit
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the solver's ConvergenceWarning on such codes
        score = sap(scaled, factors_train, codes_test / np.abs(codes_train).max() * limit, factors_test)
    assert time.perf_counter() - start < QUICK
    assert 0.0 <= score["SAP_score"] <= 1.0


def test_sap_continuous_mode_needs_no_solver(split):
    codes_train, factors_train, _, _ = split
    score = sap(codes_train, factors_train, continuous_factors=True)["SAP_score"]
    assert 0.0 < score <= 1.0


def test_exact_boosted_trees_refuse_codes_beyond_float32(split):
    message = _refused(lambda: dci(*split), "dci", "codes_train")
    assert "float32" in message
    _refused(
        lambda: downstream_task(*split, predictor="boosted_trees", num_train=(500,)),
        "downstream_task",
        "codes_train",
    )


def test_binned_trees_and_logistic_regressions_give_values(split):
    """Solvers that take such codes finish quickly with a value: the binned trees (quantile bins, in
    float64), the logistic regressions of explicitness (standardised codes) and of the downstream task."""
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fast = dci(*split, fast=True)
        explicit = modularity_explicitness(*split)
        downstream = downstream_task(*split, num_train=(100, 500))
    assert time.perf_counter() - start < QUICK
    assert fast["informativeness_train"] > 0.5
    assert explicit["explicitness_score_train"] > 0.5
    assert 0.0 < downstream["500:mean_test_accuracy"] <= 1.0


def test_gaussian_scores_refuse_codes_whose_products_overflow(split):
    message = _refused(lambda: unsupervised_scores(split[0]), "unsupervised_scores", "codes")
    assert "overflow" in message


@pytest.mark.parametrize("score", [beta_vae_score, factor_vae_score])
def test_dataset_layer_scores_give_values_on_huge_codes(score):
    dataset = toy.ToyDataset("small")
    base = toy.family_fn("small", "partial", 0)

    def huge(images):
        return np.asarray(base(images), dtype=np.float64) * HUGE

    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = score(dataset, huge, np.random.default_rng(0), num_train=500, num_eval=200)
    assert time.perf_counter() - start < QUICK
    assert 0.0 <= result["train_accuracy"] <= 1.0
