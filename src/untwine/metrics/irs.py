"""Interventional Robustness Score (Suter et al. 2019, "Robustly Disentangled Causal Mechanisms").

For every code dimension and factor: fix the factor to each of its (discretised) values, measure how
far the code still moves (the ``diff_quantile`` quantile of the absolute deviation from the group
mean), average over the values, and normalise by the code's largest deviation from its overall
mean.  ``1 - normalised deviation`` is the IRS matrix; each code keeps its best factor, and IRS is the
average of those scores weighted by the codes' largest deviations.  As in disentanglement_lib the
factors are first discretised into ``num_bins`` equal-width histogram bins (which merges values of
factors with more than ``num_bins`` values) and constant code dimensions are dropped.

Differences from disentanglement_lib: ``num_active_dims`` is the number of non-constant code
dimensions (dlib reports ``np.sum`` of the active codes' *values*, not a count).  A code dimension whose
values are all equal is always dropped; dlib tests a float32 variance, whose rounding keeps some exactly
constant codes (0.3 repeated 10,000 times has a float32 variance of 9e-16; 0.0 has 0) with a weight of
about 1e-8 and a meaningless score, which shifts its IRS by about 1e-5.
"""

from __future__ import annotations

import numpy as np

from untwine.metrics._validation import check_fraction, check_pair, check_positive_int
from untwine.metrics.information import histogram_discretize
from untwine.metrics.spec import POSITIVE_INT, QUANTILE, MetricOutput, MetricSpec, Parameter, int_at_least


def irs_matrix(discrete_factors: np.ndarray, latents: np.ndarray, diff_quantile: float = 0.99):
    """IRS details for validated inputs whose code dimensions are all non-constant.

    Returns (avg_score, per_code_scores, matrix, max_deviations).
    """
    latents = latents.astype(np.float64)
    num_codes = latents.shape[1]
    num_factors = discrete_factors.shape[1]
    max_deviations = np.max(np.abs(latents - latents.mean(axis=0)), axis=0)
    cum_deviations = np.zeros((num_codes, num_factors))
    for j in range(num_factors):
        values = np.unique(discrete_factors[:, j])
        for value in values:
            group = latents[discrete_factors[:, j] == value]
            diffs = np.abs(group - group.mean(axis=0))
            cum_deviations[:, j] += np.percentile(diffs, q=diff_quantile * 100.0, axis=0)
        cum_deviations[:, j] /= values.shape[0]
    matrix = 1.0 - cum_deviations / max_deviations[:, np.newaxis]
    per_code = matrix.max(axis=1)
    score = float(np.average(per_code, weights=max_deviations))
    return score, per_code, matrix, max_deviations


def irs(
    codes, factors, *, diff_quantile: float = 0.99, num_bins: int | None = 20, return_matrices: bool = False
):
    """Interventional Robustness Score of ``codes`` (N x d) w.r.t. ``factors`` (N x K); study N = 10,000.

    Args:
        diff_quantile: quantile of the absolute deviations taken per group (0.99; 1.0 is the paper's max).
        num_bins: histogram bins used to discretise each factor (dlib: 20); ``None`` keeps raw values.
        return_matrices: also return ``{"irs_matrix": (d_active, K), "per_code": (d_active,),
            "max_deviations": (d_active,), "active_dims": (d,) bool}``.

    Returns:
        ``{"IRS": float, "num_active_dims": int}``; 0 when every code dimension is constant.
    """
    codes, factors = check_pair(codes, factors, "codes", "factors", min_points=2)
    diff_quantile = check_fraction(diff_quantile, "diff_quantile")
    if num_bins is not None:
        num_bins = check_positive_int(num_bins, "num_bins")
        discrete = histogram_discretize(factors, num_bins)
    else:
        discrete = factors
    # A dimension is active when its values are not all equal.  A float32 variance would not do: the
    # float32 mean of an exactly constant code is rounded, so its variance is a tiny positive number,
    # and the float64 deviations below would then be 0 / 0.
    active = np.ptp(codes, axis=0) > 0
    if not active.any():
        scores = {"IRS": 0.0, "num_active_dims": 0}
        details = {
            "irs_matrix": np.zeros((0, factors.shape[1])),
            "per_code": np.zeros(0),
            "max_deviations": np.zeros(0),
            "active_dims": active,
        }
    else:
        score, per_code, matrix, max_deviations = irs_matrix(discrete, codes[:, active], diff_quantile)
        scores = {"IRS": score, "num_active_dims": int(active.sum())}
        details = {
            "irs_matrix": matrix,
            "per_code": per_code,
            "max_deviations": max_deviations,
            "active_dims": active,
        }
    if return_matrices:
        return scores, details
    return scores


def _compute(params: dict, ctx) -> MetricOutput:
    values, matrices = irs(
        *ctx.split(params["num_train"]),
        num_bins=params["num_bins"],
        diff_quantile=params["diff_quantile"],
        return_matrices=True,
    )
    return MetricOutput(values, matrices)


SPEC = MetricSpec(
    name="irs",
    description="Interventional robustness score",
    parameters={
        "num_train": Parameter(10000, POSITIVE_INT, "points of the shared training sample used"),
        "num_bins": Parameter(20, int_at_least(2), "equal-width histogram bins per factor"),
        "diff_quantile": Parameter(0.99, QUANTILE, "quantile of the absolute code deviations per group"),
    },
    compute=_compute,
    run_order=30,
    shared_sample=True,
)
