"""Modularity and explicitness (Ridgeway & Mozer 2018, "Learning Deep Disentangled Embeddings With the
F-Statistic Loss").

* Modularity: for each code dimension, how concentrated its (histogram) mutual information is on a
  single factor: ``1 - (sum_j m_ij^2 - max_j m_ij^2) / (max_j m_ij^2 (K - 1))``, averaged over codes;
  a code with no information at all scores 0.
* Explicitness: per factor, the macro one-vs-rest ROC-AUC of a multinomial logistic regression
  (scikit-learn defaults) from the standardised codes to the factor, on train and test points.

Differences from disentanglement_lib (documented in docs/metrics.md): a code dimension that is constant
on the training points is standardised to 0 (dlib divides 0 by 0 and scikit-learn then raises); the
ROC-AUC columns are the classifier's classes (dlib binarises each split's own labels, which breaks
when a class is missing from one split) and a class absent from a split is left out of that split's
average; with a single factor, modularity is 1 for every informative code.
"""

from __future__ import annotations

import numpy as np

from untwine.metrics._validation import check_positive_int, check_train_test
from untwine.metrics.information import discrete_mutual_info_matrix, histogram_discretize
from untwine.metrics.spec import POSITIVE_INT, MetricOutput, MetricSpec, Parameter, int_at_least


def modularity_from_mutual_info(mutual_info: np.ndarray) -> tuple[float, np.ndarray]:
    """Modularity score and per-code modularity from a ``(num_codes, num_factors)`` MI matrix."""
    squared = np.square(np.asarray(mutual_info, dtype=np.float64))
    max_squared = squared.max(axis=1)
    numerator = squared.sum(axis=1) - max_squared
    denominator = max_squared * (squared.shape[1] - 1.0)
    delta = np.divide(numerator, denominator, out=np.zeros_like(numerator), where=denominator > 0)
    per_code = 1.0 - delta
    per_code[max_squared == 0.0] = 0.0
    return float(np.mean(per_code)), per_code


def standardise(codes_train: np.ndarray, codes_test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centre and scale with the training mean and std (ddof 0); a zero-std dimension is only centred."""
    mean = codes_train.mean(axis=0)
    std = codes_train.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    return (codes_train - mean) / std, (codes_test - mean) / std


def binary_auc(positive: np.ndarray, scores: np.ndarray) -> float:
    """ROC-AUC of ``scores`` for the boolean ``positive`` labels (ties count one half).

    The Mann-Whitney form of the area under the ROC curve; equal to
    ``sklearn.metrics.roc_auc_score`` up to floating-point rounding.
    """
    from scipy.stats import rankdata

    num_positive = int(positive.sum())
    num_negative = positive.shape[0] - num_positive
    ranks = rankdata(scores)
    return float(
        (ranks[positive].sum() - num_positive * (num_positive + 1) / 2.0) / (num_positive * num_negative)
    )


def _macro_auc(labels: np.ndarray, probabilities: np.ndarray, classes: np.ndarray) -> float:
    scores = []
    for column, value in enumerate(classes):
        positive = labels == value
        if positive.all() or not positive.any():
            continue  # AUC is undefined for a class absent from (or alone in) this split
        scores.append(binary_auc(positive, probabilities[:, column]))
    return float(np.average(scores)) if scores else 0.5


def explicitness_per_factor(x_train, y_train, x_test, y_test) -> tuple[float, float]:
    """ROC-AUC (train, test) of ``LogisticRegression()`` predicting one factor from standardised codes."""
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    # One BLAS thread: lbfgs sums in another order with more threads, which moves explicitness in the
    # last digits (1e-5 on the dSprites reference case with two); one thread makes the value independent
    # of the caller's thread settings, as the reference values were computed (blas_threads 1).
    with threadpool_limits(limits=1):
        model = LogisticRegression().fit(x_train, y_train)
    train = _macro_auc(y_train, model.predict_proba(x_train), model.classes_)
    test = _macro_auc(y_test, model.predict_proba(x_test), model.classes_)
    return train, test


def modularity_explicitness(
    codes_train,
    factors_train,
    codes_test,
    factors_test,
    *,
    num_bins: int = 20,
    return_matrices: bool = False,
):
    """Modularity (train points) and explicitness (train and test points).

    Args:
        codes_train, factors_train: N x d codes and N x K factors (study: 10,000 points).
        codes_test, factors_test: held-out points (study: 5,000).
        num_bins: histogram bins for the modularity MI (study default 20).
        return_matrices: also return ``{"mutual_info", "modularity_per_code",
            "explicitness_train_per_factor", "explicitness_test_per_factor"}``.

    Returns:
        ``{"modularity_score", "explicitness_score_train", "explicitness_score_test"}``.
    """
    codes_train, factors_train, codes_test, factors_test = check_train_test(
        codes_train, factors_train, codes_test, factors_test
    )
    num_bins = check_positive_int(num_bins, "num_bins")
    mutual_info = discrete_mutual_info_matrix(histogram_discretize(codes_train, num_bins), factors_train)
    modularity, per_code = modularity_from_mutual_info(mutual_info)
    x_train, x_test = standardise(codes_train, codes_test.astype(codes_train.dtype))
    train_auc = np.zeros(factors_train.shape[1])
    test_auc = np.zeros(factors_train.shape[1])
    for j in range(factors_train.shape[1]):
        train_auc[j], test_auc[j] = explicitness_per_factor(
            x_train, factors_train[:, j], x_test, factors_test[:, j]
        )
    scores = {
        "modularity_score": modularity,
        "explicitness_score_train": float(np.mean(train_auc)),
        "explicitness_score_test": float(np.mean(test_auc)),
    }
    if return_matrices:
        return scores, {
            "mutual_info": mutual_info,
            "modularity_per_code": per_code,
            "explicitness_train_per_factor": train_auc,
            "explicitness_test_per_factor": test_auc,
        }
    return scores


def _compute(params: dict, ctx) -> MetricOutput:
    values, matrices = modularity_explicitness(
        *ctx.split(params["num_train"], params["num_test"]),
        num_bins=params["num_bins"],
        return_matrices=True,
    )
    return MetricOutput(values, matrices)


SPEC = MetricSpec(
    name="modularity_explicitness",
    description="Modularity and explicitness",
    parameters={
        "num_train": Parameter(10000, POSITIVE_INT, "points of the shared training sample used"),
        "num_test": Parameter(5000, POSITIVE_INT, "points of the shared test sample used"),
        "num_bins": Parameter(20, int_at_least(2), "equal-width histogram bins per code dimension"),
    },
    compute=_compute,
    run_order=50,
    aliases=("modularity",),
    shared_sample=True,
)
