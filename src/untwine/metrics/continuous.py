"""Variants of MIG, DCI and SAP for continuous factors (requested of disentanglement_lib in its issue
#25): the factor is a real number rather than a class, so the classifiers become regressors and the
mutual information needs the factor discretised too.

* ``mig_continuous``: MIG with both the code and the factor histogram-discretised into ``num_bins``
  equal-width bins (the same discretiser as the codes'); the gap is divided by the entropy of the
  discretised factor.  A factor with at most ``num_bins`` distinct, evenly spaced values keeps one bin
  per value, and the score is the discrete MIG.
* ``dci_regression``: DCI with one ``GradientBoostingRegressor()`` (scikit-learn defaults, as dlib's
  classifier) per factor; the importance matrix and the disentanglement / completeness formulas are
  DCI's, informativeness is the regressors' R^2 on the training and test points (1: perfect; 0: no
  better than the mean; negative: worse).
* ``sap_continuous``: SAP's own continuous mode (dlib's ``continuous_factors=True``): the score of code i
  for factor j is the R^2 of a one-dimensional linear regression, i.e. the squared Pearson correlation.

Factors may be any finite real numbers in the array functions; in the runner they are the datasets'
value indices, read as numbers (ordered and equally spaced).
"""

from __future__ import annotations

import numpy as np

from untwine.metrics._validation import check_codes, check_continuous_factors, check_positive_int
from untwine.metrics.dci import (
    completeness,
    completeness_per_factor,
    disentanglement,
    disentanglement_per_code,
)
from untwine.metrics.information import histogram_discretize
from untwine.metrics.mig import gaps
from untwine.metrics.sap import sap
from untwine.metrics.spec import POSITIVE_INT, MetricOutput, MetricSpec, Parameter, int_at_least


def mig_continuous(codes, factors, *, num_bins: int = 20, return_matrices: bool = False):
    """MIG against continuous factors (see the module docstring).

    Args:
        codes: ``(N, d)`` codes.
        factors: ``(N, K)`` real factor values.
        num_bins: equal-width bins for each code and each factor (20, the study's MIG discretiser).
        return_matrices: also return ``{"mutual_info", "factor_entropy", "mig_per_factor"}``.

    Returns:
        ``{"continuous_mig": float}``.
    """
    codes = check_codes(codes, "codes", min_points=2)
    factors = check_continuous_factors(factors, "factors", codes.shape[0], "codes")
    num_bins = check_positive_int(num_bins, "num_bins", 2)
    mutual_info, entropy, per_factor = gaps(
        histogram_discretize(codes, num_bins), histogram_discretize(factors, num_bins)
    )
    scores = {"continuous_mig": float(np.mean(per_factor))}
    if return_matrices:
        return scores, {"mutual_info": mutual_info, "factor_entropy": entropy, "mig_per_factor": per_factor}
    return scores


def _r2(truth: np.ndarray, prediction: np.ndarray) -> float:
    residual = np.sum((truth - prediction) ** 2)
    total = np.sum((truth - truth.mean()) ** 2)
    return float(1.0 - residual / total) if total > 0 else 0.0


def dci_regression(
    codes_train, factors_train, codes_test, factors_test, *, random_state: int = 0, return_matrices=False
):
    """DCI with gradient-boosted regression trees (see the module docstring).

    Args:
        codes_train, factors_train: ``(N, d)`` codes and ``(N, K)`` real factors (study size: 10,000).
        codes_test, factors_test: held-out points (5,000).
        random_state: seed of the regressors' tie-breaking between equally good splits.
        return_matrices: also return ``{"importance_matrix", "disentanglement_per_code",
            "completeness_per_factor", "train_r2_per_factor", "test_r2_per_factor"}``.

    Returns:
        ``{"disentanglement", "completeness", "informativeness_train", "informativeness_test"}``
        (informativeness: mean R^2 over factors).
    """
    from sklearn.ensemble import GradientBoostingRegressor

    codes_train = check_codes(codes_train, "codes_train", min_points=2)
    codes_test = check_codes(codes_test, "codes_test")
    if codes_test.shape[1] != codes_train.shape[1]:
        raise ValueError(
            f"codes_test has {codes_test.shape[1]} code dimensions but codes_train has {codes_train.shape[1]}"
        )
    factors_train = check_continuous_factors(
        factors_train, "factors_train", codes_train.shape[0], "codes_train"
    )
    factors_test = np.asarray(factors_test, dtype=np.float64).reshape(codes_test.shape[0], -1)
    if factors_test.shape[1] != factors_train.shape[1] or not np.isfinite(factors_test).all():
        raise ValueError("factors_test must be finite with as many factors as factors_train")
    stream = np.random.RandomState(int(random_state))
    num_factors = factors_train.shape[1]
    importance = np.zeros((codes_train.shape[1], num_factors))
    train_r2, test_r2 = np.zeros(num_factors), np.zeros(num_factors)
    x_train = np.asfortranarray(codes_train, dtype=np.float32)
    for j in range(num_factors):
        model = GradientBoostingRegressor(random_state=np.random.RandomState(stream.randint(2**31)))
        model.fit(x_train, factors_train[:, j])
        importance[:, j] = np.abs(model.feature_importances_)
        train_r2[j] = _r2(factors_train[:, j], model.predict(x_train))
        test_r2[j] = _r2(factors_test[:, j], model.predict(codes_test.astype(np.float32)))
    scores = {
        "disentanglement": disentanglement(importance),
        "completeness": completeness(importance),
        "informativeness_train": float(train_r2.mean()),
        "informativeness_test": float(test_r2.mean()),
    }
    if return_matrices:
        return scores, {
            "importance_matrix": importance,
            "disentanglement_per_code": disentanglement_per_code(importance),
            "completeness_per_factor": completeness_per_factor(importance),
            "train_r2_per_factor": train_r2,
            "test_r2_per_factor": test_r2,
        }
    return scores


def _compute_mig(params: dict, ctx) -> MetricOutput:
    values, matrices = mig_continuous(
        *ctx.split(params["num_train"]), num_bins=params["num_bins"], return_matrices=True
    )
    return MetricOutput(values, matrices)


def _compute_dci(params: dict, ctx) -> MetricOutput:
    values, matrices = dci_regression(
        *ctx.split(params["num_train"], params["num_test"]), random_state=ctx.seed, return_matrices=True
    )
    return MetricOutput(values, matrices)


def _compute_sap(params: dict, ctx) -> MetricOutput:
    codes, factors = ctx.split(params["num_train"])
    values, matrices = sap(codes, factors, continuous_factors=True, return_matrices=True)
    return MetricOutput(values, matrices)


SHARED_TRAIN = Parameter(10000, POSITIVE_INT, "points of the shared training sample used")
SHARED_TEST = Parameter(5000, POSITIVE_INT, "points of the shared test sample used")

MIG_CONTINUOUS_SPEC = MetricSpec(
    name="mig_continuous",
    description="MIG against continuous factors (code and factor histogram-discretised)",
    parameters={
        "num_train": SHARED_TRAIN,
        "num_bins": Parameter(20, int_at_least(2), "bins per code and per factor"),
    },
    compute=_compute_mig,
    run_order=15,
    shared_sample=True,
)
DCI_REGRESSION_SPEC = MetricSpec(
    name="dci_regression",
    description="DCI with gradient-boosted regression trees (continuous factors; informativeness = R^2)",
    parameters={"num_train": SHARED_TRAIN, "num_test": SHARED_TEST},
    compute=_compute_dci,
    run_order=88,
    shared_sample=True,
)
SAP_CONTINUOUS_SPEC = MetricSpec(
    name="sap_continuous",
    description="SAP for continuous factors (squared correlation of each code with each factor)",
    parameters={"num_train": SHARED_TRAIN},
    compute=_compute_sap,
    run_order=45,
    shared_sample=True,
)
