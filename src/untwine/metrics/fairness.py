"""Unfairness of downstream classifiers (Locatello et al. 2019, "On the Fairness of Disentangled
Representations", Section 4).

For every target factor i a ``GradientBoostingClassifier()`` is trained on ``num_train`` codes.  For
every sensitive factor j != i, ``num_test_points_per_class`` factor vectors are drawn once and then
intervened on: factor j is set to each of its values c in turn.  The unfairness of the pair is the
total-variation distance between the distribution of predictions of i under ``do(j = c)`` and the
pooled distribution, averaged over c (``mean_fairness``) or maximised (``max_fairness``).  The keys
``"{mean|max}_fairness:pred{i}:sens{j}"`` and the row/column means and maxima over pairs are reported
as in disentanglement_lib; the score of the paper is ``mean_fairness:mean_pred:mean_sens``.

All interventions of one target are predicted in one call, and the total variations are computed in
float64 (dlib: float32).  Fast mode uses the binned boosted trees.
"""

from __future__ import annotations

import numpy as np

from untwine.metrics._estimators import FitEngine
from untwine.metrics._validation import check_positive_int
from untwine.metrics.dci import boosted_tree_tasks, plan_shared_boosted_trees
from untwine.metrics.representation import as_code_source
from untwine.metrics.spec import POSITIVE_INT, MetricOutput, MetricSpec, Parameter
from untwine.utils.rng import as_generator


def inter_group_fairness(counts: np.ndarray) -> tuple[float, float]:
    """Mean and max total variation between per-group prediction distributions and the pooled one.

    ``counts[p, c]``: number of predictions of class p when the sensitive factor is set to c.
    """
    counts = np.asarray(counts, dtype=np.float64)
    overall = counts.sum(axis=1) / counts.sum()
    per_group = counts.sum(axis=0)
    distances = 0.5 * np.abs(counts / per_group - overall[:, np.newaxis]).sum(axis=0)
    return float(np.sum(distances * per_group) / per_group.sum()), float(np.max(distances))


def fairness_scores_dict(matrix: np.ndarray, prefix: str) -> dict:
    """All pair values and their means/maxima over predicted and sensitive factors (dlib's key names)."""
    num = matrix.shape[0]
    off_diagonal = ~np.eye(num, dtype=bool)
    result = {}
    for i in range(num):
        for j in range(num):
            if i != j:
                result[f"{prefix}:pred{i}:sens{j}"] = float(matrix[i, j])
    row_mean, row_max, col_mean, col_max = [], [], [], []
    for i in range(num):
        row = matrix[i, off_diagonal[i]]
        row_mean.append(row.mean())
        row_max.append(row.max())
        result[f"{prefix}:pred{i}:mean_sens"] = float(row_mean[-1])
        result[f"{prefix}:pred{i}:max_sens"] = float(row_max[-1])
    for j in range(num):
        column = matrix[off_diagonal[:, j], j]
        col_mean.append(column.mean())
        col_max.append(column.max())
        result[f"{prefix}:sens{j}:mean_pred"] = float(col_mean[-1])
        result[f"{prefix}:sens{j}:max_pred"] = float(col_max[-1])
    result[f"{prefix}:mean_sens:mean_pred"] = float(np.mean(col_mean))
    result[f"{prefix}:mean_sens:max_pred"] = float(np.mean(col_max))
    result[f"{prefix}:max_sens:mean_pred"] = float(np.max(col_mean))
    result[f"{prefix}:max_sens:max_pred"] = float(np.max(col_max))
    result[f"{prefix}:mean_pred:mean_sens"] = float(np.mean(row_mean))
    result[f"{prefix}:mean_pred:max_sens"] = float(np.mean(row_max))
    result[f"{prefix}:max_pred:mean_sens"] = float(np.max(row_mean))
    result[f"{prefix}:max_pred:max_sens"] = float(np.max(row_max))
    return result


def fairness_from_models(source, models, num_test_points_per_class: int, rng: np.random.Generator):
    """Fairness scores given one trained classifier per target factor (dict of scores, details)."""
    dataset = source.dataset
    sizes = tuple(int(s) for s in dataset.factor_sizes)
    num_factors = len(sizes)
    mean_fairness = np.zeros((num_factors, num_factors))
    max_fairness = np.zeros((num_factors, num_factors))
    for i in range(num_factors):
        blocks, spans = [], []
        for j in range(num_factors):
            if i == j:
                continue
            original = dataset.sample_factors(num_test_points_per_class, rng)
            intervened = np.repeat(original[np.newaxis], sizes[j], axis=0)
            intervened[:, :, j] = np.arange(sizes[j])[:, np.newaxis]
            blocks.append(intervened.reshape(-1, num_factors))
            spans.append(j)
        predictions = models[i].predict(source.codes(np.concatenate(blocks), rng))
        offset = 0
        for j in spans:
            block = predictions[offset : offset + sizes[j] * num_test_points_per_class]
            offset += block.shape[0]
            counts = np.stack(
                [
                    np.bincount(group, minlength=sizes[i])
                    for group in block.reshape(sizes[j], num_test_points_per_class).astype(np.int64)
                ],
                axis=1,
            )
            mean_fairness[i, j], max_fairness[i, j] = inter_group_fairness(counts)
    scores = fairness_scores_dict(mean_fairness, "mean_fairness")
    scores.update(fairness_scores_dict(max_fairness, "max_fairness"))
    return scores, {"mean_fairness": mean_fairness, "max_fairness": max_fairness}


def fairness(
    dataset,
    representation_fn,
    rng,
    *,
    num_train: int = 10000,
    num_test_points_per_class: int = 100,
    fast: bool = False,
    random_state: int = 0,
    n_jobs: int = 1,
    return_matrices: bool = False,
    **source_options,
):
    """Fairness scores of a representation (see the module docstring).

    Args:
        dataset: a GroundTruthDataset with at least two factors.
        representation_fn: callable images -> codes, an ``encode_mean_logvar`` object, or a CodeSource.
        rng: numpy Generator or int seed (training sample and interventions).
        num_train: training points of the classifiers (study: 10,000).
        num_test_points_per_class: points per intervention value (study: 100).
        fast: binned boosted trees instead of scikit-learn's.
        random_state: seed of the trees' tie-breaking.
        n_jobs: worker processes for the per-factor fits.
        return_matrices: also return ``{"mean_fairness": (K, K), "max_fairness": (K, K)}``.
    """
    num_train = check_positive_int(num_train, "num_train", 2)
    num_test_points_per_class = check_positive_int(num_test_points_per_class, "num_test_points_per_class")
    source = as_code_source(dataset, representation_fn, **source_options)
    if len(source.dataset.factor_sizes) < 2:
        raise ValueError("dataset must have at least two factors for the fairness scores")
    rng = as_generator(rng)
    factors, codes = source.sample(num_train, rng)
    engine = FitEngine(n_jobs)
    tasks = boosted_tree_tasks(
        codes,
        factors,
        None,
        None,
        fast=fast,
        random_state=int(random_state),
        data_key=object(),
        metric="fairness",
    )
    for key, task in tasks:
        engine.add(key, task)
    models = [result.model for result in engine.results([key for key, _ in tasks])]
    scores, details = fairness_from_models(source, models, num_test_points_per_class, rng)
    if return_matrices:
        return scores, details
    return scores


def _plan_fits(params: dict, ctx) -> None:
    # Scored on the whole shared test sample: with DCI's default num_test these are DCI's very fits.
    plan_shared_boosted_trees(SPEC.name, ctx, params["num_train"], ctx.num_test)


def _compute(params: dict, ctx) -> MetricOutput:
    results = ctx.fit_results(SPEC.name)["all"]
    values, matrices = fairness_from_models(
        ctx.source, [r.model for r in results], params["num_test_points_per_class"], ctx.rng(SPEC.name)
    )
    return MetricOutput(values, matrices, fits=results)


SPEC = MetricSpec(
    name="fairness",
    description="Fairness of downstream classifiers",
    parameters={
        "num_train": Parameter(10000, POSITIVE_INT, "shared training points the classifiers learn from"),
        "num_test_points_per_class": Parameter(
            100, POSITIVE_INT, "factor vectors drawn per intervention value of a sensitive factor"
        ),
    },
    compute=_compute,
    run_order=110,
    # Its own draws (num_test_points_per_class images per value of each sensitive factor) are not
    # counted toward pre-encoding the grid: they are small next to BetaVAE's and FactorVAE's.
    shared_sample=True,
    intervenes=True,
    plan_fits=_plan_fits,
)
