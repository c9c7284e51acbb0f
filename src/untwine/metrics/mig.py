"""Mutual Information Gap (Chen et al. 2018, "Isolating Sources of Disentanglement in VAEs").

For each factor, the gap between the largest and second-largest mutual information of a
(histogram-discretised) code dimension with the factor, divided by the factor's entropy; MIG is the
mean gap over factors.  Same algorithm and defaults as disentanglement_lib's ``mig`` (20 equal-width
bins per code dimension, MI and entropy in nats).
"""

from __future__ import annotations

import numpy as np

from untwine.metrics._validation import check_pair, check_positive_int
from untwine.metrics.information import discrete_entropy, discrete_mutual_info_matrix, histogram_discretize
from untwine.metrics.spec import POSITIVE_INT, MetricOutput, MetricSpec, Parameter, int_at_least


def top_two_gap(matrix: np.ndarray) -> np.ndarray:
    """Per column: largest minus second-largest entry (the second is 0 for a single row)."""
    ordered = np.sort(matrix, axis=0)[::-1]
    second = ordered[1] if ordered.shape[0] > 1 else np.zeros(ordered.shape[1])
    return ordered[0] - second


def gaps(
    discrete_codes: np.ndarray, discrete_factors: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The MI matrix of discrete codes and factors, the factors' entropies, and each factor's normalised gap."""
    mutual_info = discrete_mutual_info_matrix(discrete_codes, discrete_factors)
    entropy = discrete_entropy(discrete_factors)
    return mutual_info, entropy, top_two_gap(mutual_info) / entropy


def mig(codes, factors, *, num_bins: int = 20, return_matrices: bool = False):
    """Mutual Information Gap of ``codes`` (N x d float) with respect to ``factors`` (N x K integers).

    Args:
        codes: representation, one row per point (the study uses N = 10,000 points).
        factors: ground-truth factor values of the same points; every factor must take >= 2 values.
        num_bins: equal-width histogram bins per code dimension (study default 20).
        return_matrices: also return ``{"mutual_info": (d, K), "factor_entropy": (K,),
            "mig_per_factor": (K,)}``.

    Returns:
        ``{"discrete_mig": float}`` (and the matrices when asked).  Constant codes give 0.
    """
    codes, factors = check_pair(codes, factors, "codes", "factors", min_points=2)
    num_bins = check_positive_int(num_bins, "num_bins")
    mutual_info, entropy, per_factor = gaps(histogram_discretize(codes, num_bins), factors)
    scores = {"discrete_mig": float(np.mean(per_factor))}
    if return_matrices:
        return scores, {"mutual_info": mutual_info, "factor_entropy": entropy, "mig_per_factor": per_factor}
    return scores


def _compute(params: dict, ctx) -> MetricOutput:
    values, matrices = mig(*ctx.split(params["num_train"]), num_bins=params["num_bins"], return_matrices=True)
    return MetricOutput(values, matrices)


SPEC = MetricSpec(
    name="mig",
    description="Mutual Information Gap",
    parameters={
        "num_train": Parameter(10000, POSITIVE_INT, "points of the shared training sample used"),
        "num_bins": Parameter(20, int_at_least(2), "equal-width histogram bins per code dimension"),
    },
    compute=_compute,
    run_order=10,
    shared_sample=True,
)
