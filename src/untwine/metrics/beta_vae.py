"""The BetaVAE disentanglement score (Higgins et al. 2017), scikit-learn variant of disentanglement_lib.

Each training point: draw a factor index k uniformly, draw ``batch_size`` pairs of factor vectors that
agree on factor k (and are independent otherwise), and take the mean absolute code difference over the
pairs; the label is k.  A ``LogisticRegression()`` (scikit-learn defaults) learns k from the feature;
the score is its accuracy on ``num_train`` training points and ``num_eval`` fresh evaluation points.
"""

from __future__ import annotations

import numpy as np

from untwine.metrics._validation import check_positive_int
from untwine.metrics.representation import as_code_source
from untwine.metrics.spec import POSITIVE_INT, MetricOutput, MetricSpec, Parameter, int_at_least
from untwine.utils.rng import as_generator


def beta_vae_points(source, num_points: int, batch_size: int, rng: np.random.Generator):
    """``num_points`` (feature, label) pairs of the BetaVAE score, vectorised over points."""
    dataset = source.dataset
    num_factors = len(dataset.factor_sizes)
    labels = rng.integers(num_factors, size=num_points)
    first = dataset.sample_factors(num_points * batch_size, rng).reshape(num_points, batch_size, num_factors)
    second = dataset.sample_factors(num_points * batch_size, rng).reshape(num_points, batch_size, num_factors)
    points, pairs = np.arange(num_points)[:, np.newaxis], np.arange(batch_size)[np.newaxis, :]
    second[points, pairs, labels[:, np.newaxis]] = first[points, pairs, labels[:, np.newaxis]]
    codes_first = source.codes(first.reshape(-1, num_factors), rng)
    codes_second = source.codes(second.reshape(-1, num_factors), rng)
    difference = np.abs(codes_first.astype(np.float64) - codes_second.astype(np.float64))
    features = difference.reshape(num_points, batch_size, -1).mean(axis=1)
    return features, labels


def beta_vae_score(
    dataset,
    representation_fn,
    rng,
    *,
    batch_size: int = 64,
    num_train: int = 10000,
    num_eval: int = 5000,
    **source_options,
):
    """BetaVAE score of a representation on a ground-truth dataset.

    Args:
        dataset: a GroundTruthDataset with at least two factors.
        representation_fn: callable images -> codes, an ``encode_mean_logvar`` object, or a
            :class:`~untwine.metrics.representation.CodeSource` (shares its image cache).
        rng: numpy Generator or int seed (all sampling draws from it).
        batch_size: pairs averaged per training point (study: 64).
        num_train, num_eval: training / evaluation points (study: 10,000 / 5,000).
        **source_options: ``mode``, ``deterministic``, ``batch_size``... for a new CodeSource.

    Returns:
        ``{"train_accuracy", "eval_accuracy"}``.
    """
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    batch_size = check_positive_int(batch_size, "batch_size")
    num_train = check_positive_int(num_train, "num_train", 2)
    num_eval = check_positive_int(num_eval, "num_eval")
    source = as_code_source(dataset, representation_fn, **source_options)
    if len(source.dataset.factor_sizes) < 2:
        raise ValueError("dataset must have at least two factors for the BetaVAE score")
    rng = as_generator(rng)
    train_x, train_y = beta_vae_points(source, num_train, batch_size, rng)
    if np.unique(train_y).shape[0] < 2:
        raise ValueError(f"num_train = {num_train} points drew a single factor index; use more points")
    with threadpool_limits(limits=1):  # the fit's value must not depend on the caller's BLAS threads
        model = LogisticRegression().fit(train_x, train_y)
    train_accuracy = float(np.mean(model.predict(train_x) == train_y))
    eval_x, eval_y = beta_vae_points(source, num_eval, batch_size, rng)
    eval_accuracy = float(np.mean(model.predict(eval_x) == eval_y))
    return {"train_accuracy": train_accuracy, "eval_accuracy": eval_accuracy}


def _compute(params: dict, ctx) -> MetricOutput:
    return MetricOutput(beta_vae_score(ctx.source.dataset, ctx.source, ctx.rng(SPEC.name), **params))


SPEC = MetricSpec(
    name="beta_vae_sklearn",
    description="BetaVAE score",
    parameters={
        "batch_size": Parameter(64, POSITIVE_INT, "pairs of images averaged per point"),
        "num_train": Parameter(10000, int_at_least(2), "points that train the logistic regression"),
        "num_eval": Parameter(5000, POSITIVE_INT, "points it is evaluated on"),
    },
    compute=_compute,
    run_order=70,
    aliases=("beta_vae",),
    image_requests=lambda p: (p["num_train"] + p["num_eval"]) * p["batch_size"] * 2,
)
