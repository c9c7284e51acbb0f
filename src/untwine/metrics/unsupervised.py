"""Unsupervised scores of a representation (no factors needed), as in disentanglement_lib's
``unsupervised_metrics``:

* ``gaussian_total_correlation``: KL divergence between N(0, C) and the product of its marginals,
  ``0.5 (sum_i log C_ii - log det C)``, with C the sample covariance (ddof 1) of the codes;
* ``gaussian_wasserstein_correlation``: squared 2-Wasserstein distance between N(0, C) and
  N(0, diag C), ``2 tr C - 2 tr sqrt(diag(C)^1/2 C diag(C)^1/2)``; ``..._norm`` divides it by ``tr C``;
* ``mutual_info_score``: mean pairwise mutual information between histogram-discretised code dimensions.

Differences from disentanglement_lib (see docs/metrics.md): code dimensions with zero variance are
left out of the Gaussian scores (they are independent of everything; dlib returns NaN from
``log 0``); the matrix square root is taken through a symmetric eigendecomposition, so the Wasserstein
scores are real even for a singular covariance (dlib's ``scipy.linalg.sqrtm`` then returns a complex
number with a tiny imaginary part); a covariance that is singular on the varying dimensions (e.g. two
identical code dimensions) has infinite total correlation, as in dlib.  With a single code dimension
the mutual-information score is 0 (there is no pair).
"""

from __future__ import annotations

import numpy as np

from untwine.metrics._validation import check_codes, check_positive_int
from untwine.metrics.information import discrete_mutual_info_matrix, histogram_discretize
from untwine.metrics.spec import POSITIVE_INT, MetricOutput, MetricSpec, Parameter, int_at_least


def gaussian_total_correlation(cov) -> float:
    """Total correlation (nats) of a zero-mean Gaussian with covariance ``cov``.

    Dimensions with zero variance are ignored; +inf when the remaining covariance is singular.
    """
    cov = np.asarray(cov, dtype=np.float64)
    variances = np.diag(cov)
    active = variances > 0
    if not active.any():
        return 0.0
    cov = cov[np.ix_(active, active)]
    sign, logdet = np.linalg.slogdet(cov)
    if sign <= 0 or not np.isfinite(logdet):
        return float("inf")
    return float(0.5 * (np.sum(np.log(variances[active])) - logdet))


def gaussian_wasserstein_correlation(cov) -> float:
    """Squared 2-Wasserstein distance between N(0, cov) and N(0, diag(cov))."""
    cov = np.asarray(cov, dtype=np.float64)
    scale = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    symmetric = scale[:, np.newaxis] * cov * scale[np.newaxis, :]
    eigenvalues = np.linalg.eigvalsh((symmetric + symmetric.T) / 2.0)
    return float(2.0 * np.trace(cov) - 2.0 * np.sum(np.sqrt(np.clip(eigenvalues, 0.0, None))))


def unsupervised_scores(codes, *, num_bins: int = 20, return_matrices: bool = False):
    """Covariance and mutual-information scores of ``codes`` (N x d; the study uses N = 10,000).

    Returns ``{"gaussian_total_correlation", "gaussian_wasserstein_correlation",
    "gaussian_wasserstein_correlation_norm", "mutual_info_score"}``; with ``return_matrices`` also
    ``{"covariance": (d, d), "mutual_info": (d, d) with zero diagonal}``.
    """
    codes = check_codes(codes, "codes", min_points=2)
    num_bins = check_positive_int(num_bins, "num_bins")
    num_codes = codes.shape[1]
    with np.errstate(over="ignore"):  # an overflow is reported below, naming the code dimension
        cov = np.atleast_2d(np.cov(codes, rowvar=False))
        variances = np.diag(cov)
        # The Wasserstein score multiplies the covariance by two standard deviations: |code|**4.
        products = np.abs(cov).max() * variances.max()
    if not (np.isfinite(cov).all() and np.isfinite(products)):
        largest = np.abs(codes).max(axis=0)
        column = int(np.argmax(largest))
        raise ValueError(
            f"unsupervised_scores: codes[:, {column}] reaches {float(largest[column]):.3g} in magnitude, too "
            "large for the Gaussian scores (products of four codes overflow float64 above about 1e77); "
            "rescale the codes (e.g. standardise each dimension) or check the encoder that produced them"
        )
    wasserstein = gaussian_wasserstein_correlation(cov)
    trace = float(np.trace(cov))
    discrete = histogram_discretize(codes, num_bins)
    mutual_info = discrete_mutual_info_matrix(discrete, discrete)
    np.fill_diagonal(mutual_info, 0.0)
    pairs = num_codes * num_codes - num_codes
    scores = {
        "gaussian_total_correlation": gaussian_total_correlation(cov),
        "gaussian_wasserstein_correlation": wasserstein,
        "gaussian_wasserstein_correlation_norm": wasserstein / trace if trace > 0 else 0.0,
        "mutual_info_score": float(mutual_info.sum() / pairs) if pairs else 0.0,
    }
    if return_matrices:
        return scores, {"covariance": cov, "mutual_info": mutual_info}
    return scores


def _compute(params: dict, ctx) -> MetricOutput:
    values, matrices = unsupervised_scores(
        ctx.split(params["num_train"])[0], num_bins=params["num_bins"], return_matrices=True
    )
    return MetricOutput(values, matrices)


SPEC = MetricSpec(
    name="unsupervised",
    description="Unsupervised scores (Gaussian total and Wasserstein correlation, mutual information)",
    parameters={
        "num_train": Parameter(10000, POSITIVE_INT, "points of the shared training sample used"),
        "num_bins": Parameter(20, int_at_least(2), "equal-width histogram bins per code dimension"),
    },
    compute=_compute,
    run_order=20,
    shared_sample=True,
)
