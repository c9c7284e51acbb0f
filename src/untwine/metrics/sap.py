"""Separated Attribute Predictability (Kumar et al. 2018, "Variational Inference of Disentangled Latent
Concepts from Unlabeled Observations", Section 3).

A ``(num_codes, num_factors)`` score matrix says how well each single code dimension predicts each
factor; SAP is the mean over factors of the gap between the best and second-best code.

* Discrete factors (the study setting, ``continuous_factors=False``): the score is the test accuracy of
  a one-dimensional ``LinearSVC(C=0.01, class_weight="balanced")`` trained on the code dimension.
* Continuous factors: the squared Pearson correlation of code and factor on the training points.

In the continuous mode a code dimension whose training variance is <= 1e-12 scores 0, as in dlib.  In the
discrete mode every code dimension is fitted, constant ones too, as in dlib: on a constant input the
classifier predicts one class for every point (with more than two classes the most frequent training
class; between equally frequent classes, whichever rounding favours), so the entry is that class's test
frequency, like any uninformative code's.
"""

from __future__ import annotations

import numpy as np

from untwine.metrics._validation import check_magnitude, check_pair, check_train_test
from untwine.metrics.mig import top_two_gap
from untwine.metrics.spec import BOOLEAN, POSITIVE_INT, MetricOutput, MetricSpec, Parameter

CONSTANT_VARIANCE = 1e-12


def sap_score_matrix(
    codes_train,
    factors_train,
    codes_test=None,
    factors_test=None,
    *,
    continuous_factors=False,
    random_state: int = 0,
) -> np.ndarray:
    """The SAP score matrix (see the module docstring); inputs must already be validated."""
    num_codes, num_factors = codes_train.shape[1], factors_train.shape[1]
    matrix = np.zeros((num_codes, num_factors))
    if continuous_factors:
        for i in range(num_codes):
            for j in range(num_factors):
                cov = np.cov(codes_train[:, i], factors_train[:, j], ddof=1)
                if cov[0, 0] > CONSTANT_VARIANCE:
                    matrix[i, j] = cov[0, 1] ** 2 / (cov[0, 0] * cov[1, 1])
        return matrix
    from sklearn.svm import LinearSVC

    for i in range(num_codes):
        x_train = codes_train[:, i : i + 1]
        x_test = codes_test[:, i : i + 1]
        for j in range(num_factors):
            classifier = LinearSVC(C=0.01, class_weight="balanced", dual="auto", random_state=random_state)
            classifier.fit(x_train, factors_train[:, j])
            matrix[i, j] = np.mean(classifier.predict(x_test) == factors_test[:, j])
    return matrix


def sap(
    codes_train,
    factors_train,
    codes_test=None,
    factors_test=None,
    *,
    continuous_factors: bool = False,
    random_state: int = 0,
    return_matrices: bool = False,
):
    """SAP score.

    Args:
        codes_train, factors_train: N x d codes and N x K factors (study: 10,000 points).
        codes_test, factors_test: held-out points (study: 5,000); required unless ``continuous_factors``.
        continuous_factors: False (study default): classification accuracy; True: squared correlation.
        random_state: seed of ``LinearSVC`` (its primal solver is deterministic; kept for completeness).

    Raises:
        ValueError: among others when a training code exceeds 1e50 in magnitude in the classification
            mode (``_validation.SOLVER_LIMITS``: the solver would run for minutes).
        return_matrices: also return ``{"score_matrix": (d, K)}``.

    Returns:
        ``{"SAP_score": float}``.
    """
    if continuous_factors:
        codes_train, factors_train = check_pair(
            codes_train, factors_train, "codes_train", "factors_train", min_points=2
        )
    else:
        if codes_test is None or factors_test is None:
            raise ValueError("codes_test and factors_test are required when continuous_factors=False")
        codes_train, factors_train, codes_test, factors_test = check_train_test(
            codes_train, factors_train, codes_test, factors_test
        )
        check_magnitude(codes_train, "codes_train", "sap_score", "linear_svc")
    matrix = sap_score_matrix(
        codes_train,
        factors_train,
        codes_test,
        factors_test,
        continuous_factors=continuous_factors,
        random_state=random_state,
    )
    scores = {"SAP_score": float(np.mean(top_two_gap(matrix)))}
    if return_matrices:
        return scores, {"score_matrix": matrix}
    return scores


def _compute(params: dict, ctx) -> MetricOutput:
    values, matrices = sap(
        *ctx.split(params["num_train"], params["num_test"]),
        continuous_factors=params["continuous_factors"],
        random_state=ctx.seed,
        return_matrices=True,
    )
    return MetricOutput(values, matrices)


SPEC = MetricSpec(
    name="sap_score",
    description="SAP score",
    parameters={
        "num_train": Parameter(10000, POSITIVE_INT, "points of the shared training sample used"),
        "num_test": Parameter(5000, POSITIVE_INT, "points of the shared test sample used"),
        "continuous_factors": Parameter(
            False, BOOLEAN, "squared correlation instead of classification accuracy"
        ),
    },
    compute=_compute,
    run_order=40,
    aliases=("sap",),
    shared_sample=True,
)
