"""The FactorVAE disentanglement score (Kim & Mnih 2018, "Disentangling by Factorising").

Code dimensions are scaled by their global variance (``num_variance_estimate`` random points, ddof 1);
dimensions whose global standard deviation is below ``prune_threshold`` (collapsed to the prior) are
left out.  Each vote: fix one factor k (uniform) across ``batch_size`` random points and find the active
dimension of least normalised variance within the batch.  A majority-vote classifier maps each
dimension to the factor that most often fixed it; the scores are its accuracies on ``num_train`` training
votes and ``num_eval`` fresh votes.

Differences from disentanglement_lib: ``num_active_dims`` is the number of active dimensions (dlib
reports the code dimension), a dimension with zero global variance is never active (dlib would divide by
zero with ``prune_threshold=0``), and the vote matrix returned by ``return_matrices`` is indexed by the
actual code dimension (dlib's by position among active dimensions; the accuracies are the same).
"""

from __future__ import annotations

import numpy as np

from untwine.metrics._validation import check_positive_int
from untwine.metrics.representation import as_code_source
from untwine.metrics.spec import NON_NEGATIVE, POSITIVE_INT, MetricOutput, MetricSpec, Parameter, int_at_least
from untwine.utils.rng import as_generator


def factor_vae_votes(source, num_points, batch_size, rng, global_variances, active) -> np.ndarray:
    """``(num_factors, num_codes)`` vote counts of ``num_points`` votes."""
    dataset = source.dataset
    num_factors = len(dataset.factor_sizes)
    labels = rng.integers(num_factors, size=num_points)
    factors = dataset.sample_factors(num_points * batch_size, rng).reshape(
        num_points, batch_size, num_factors
    )
    points, members = np.arange(num_points)[:, np.newaxis], np.arange(batch_size)[np.newaxis, :]
    fixed = factors[points[:, 0], 0, labels]  # every point of a batch takes the first point's value
    factors[points, members, labels[:, np.newaxis]] = fixed[:, np.newaxis]
    codes = source.codes(factors.reshape(-1, num_factors), rng).astype(np.float64)
    local_variances = codes.reshape(num_points, batch_size, -1).var(axis=1, ddof=1)
    active_index = np.flatnonzero(active)
    winner = active_index[np.argmin(local_variances[:, active] / global_variances[active], axis=1)]
    votes = np.zeros((num_factors, codes.shape[1]), dtype=np.int64)
    np.add.at(votes, (labels, winner), 1)
    return votes


def majority_vote_accuracy(votes: np.ndarray, classifier: np.ndarray) -> float:
    total = votes.sum()
    return float(votes[classifier, np.arange(votes.shape[1])].sum() / total) if total else 0.0


def factor_vae_score(
    dataset,
    representation_fn,
    rng,
    *,
    batch_size: int = 64,
    num_train: int = 10000,
    num_eval: int = 5000,
    num_variance_estimate: int = 10000,
    prune_threshold: float = 0.05,
    return_matrices: bool = False,
    **source_options,
):
    """FactorVAE score of a representation on a ground-truth dataset.

    Args:
        dataset: a GroundTruthDataset.
        representation_fn: callable images -> codes, an ``encode_mean_logvar`` object, or a CodeSource.
        rng: numpy Generator or int seed.
        batch_size: points per vote (study: 64; must be >= 2 for a variance).
        num_train, num_eval: training / evaluation votes (study: 10,000 / 5,000).
        num_variance_estimate: points for the global variances (study: 10,000).
        prune_threshold: minimum global standard deviation of an active dimension (study: 0.05).
        return_matrices: also return ``{"global_variances", "active_dims", "train_votes", "eval_votes"}``.

    Returns:
        ``{"train_accuracy", "eval_accuracy", "num_active_dims"}`` (accuracies 0 when no dim is active).
    """
    batch_size = check_positive_int(batch_size, "batch_size", 2)
    num_train = check_positive_int(num_train, "num_train")
    num_eval = check_positive_int(num_eval, "num_eval")
    num_variance_estimate = check_positive_int(num_variance_estimate, "num_variance_estimate", 2)
    if not np.isfinite(prune_threshold) or prune_threshold < 0:
        raise ValueError(f"prune_threshold must be a non-negative number, got {prune_threshold!r}")
    source = as_code_source(dataset, representation_fn, **source_options)
    rng = as_generator(rng)
    _, codes = source.sample(num_variance_estimate, rng)
    global_variances = codes.astype(np.float64).var(axis=0, ddof=1)
    active = (np.sqrt(global_variances) >= prune_threshold) & (global_variances > 0)
    details = {"global_variances": global_variances, "active_dims": active}
    if not active.any():
        scores = {"train_accuracy": 0.0, "eval_accuracy": 0.0, "num_active_dims": 0}
    else:
        train_votes = factor_vae_votes(source, num_train, batch_size, rng, global_variances, active)
        classifier = np.argmax(train_votes, axis=0)
        eval_votes = factor_vae_votes(source, num_eval, batch_size, rng, global_variances, active)
        scores = {
            "train_accuracy": majority_vote_accuracy(train_votes, classifier),
            "eval_accuracy": majority_vote_accuracy(eval_votes, classifier),
            "num_active_dims": int(active.sum()),
        }
        details.update(train_votes=train_votes, eval_votes=eval_votes)
    if return_matrices:
        return scores, details
    return scores


def _compute(params: dict, ctx) -> MetricOutput:
    values, matrices = factor_vae_score(
        ctx.source.dataset, ctx.source, ctx.rng(SPEC.name), return_matrices=True, **params
    )
    return MetricOutput(values, matrices)


SPEC = MetricSpec(
    name="factor_vae_metric",
    description="FactorVAE score",
    parameters={
        "batch_size": Parameter(64, int_at_least(2), "images per vote (one factor held fixed)"),
        "num_train": Parameter(10000, POSITIVE_INT, "votes that train the majority-vote classifier"),
        "num_eval": Parameter(5000, POSITIVE_INT, "votes it is evaluated on"),
        "num_variance_estimate": Parameter(
            10000, int_at_least(2), "images that estimate each code dimension's global variance"
        ),
        "prune_threshold": Parameter(
            0.05, NON_NEGATIVE, "code dimensions whose standard deviation is below this are inactive"
        ),
    },
    compute=_compute,
    run_order=60,
    aliases=("factor_vae",),
    image_requests=lambda p: p["num_variance_estimate"] + (p["num_train"] + p["num_eval"]) * p["batch_size"],
)
