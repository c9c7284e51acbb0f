"""Strong downstream task (disentanglement_lib's ``strong_downstream_task``): how well a factor can still
be predicted from the codes under a covariate shift of another factor.

For each training-set size ``n`` in ``num_train``:

* baseline: ``n`` training and ``num_test`` test points drawn from the dataset; one classifier per
  factor trained on the training codes, scored on both (``"{n}:mean_train_accuracy"``,
  ``"{n}:mean_test_accuracy"``, means over factors);
* interventions: for each target factor i, ``n_experiment`` times: pick another factor j uniformly,
  fix it to a uniform value v in every training point, and give every test point a uniform value of j
  other than v (the test set lies outside the training distribution in factor j); re-render, encode,
  train one classifier for factor i and score it (``"{n}:mean_strong_train_accuracy"``,
  ``"{n}:mean_strong_test_accuracy"``, means over targets and experiments);
* ``"{n}:strong_generalization_gap"`` = 1 - strong test accuracy / baseline test accuracy.

The intervened experiments reuse the baseline's factor draws (as dlib does) and draw new observations
for them.  A disentangled code keeps factor i's information apart from factor j's, so its classifier
ignores the shifted code and the gap stays near 0.

Differences from disentanglement_lib: dlib draws the intervened factor and values from numpy's global
random state; untwine from the metric's generator.  dlib's function has no defaults (``gin.REQUIRED``);
untwine uses those of dlib's own test (``num_train=[1000], num_test=1000``) and the ``n_experiment=10``
of dlib's helper function, with boosted trees as dlib's test binds them.
"""

from __future__ import annotations

import numpy as np

from untwine.metrics._estimators import FitEngine, FitTask
from untwine.metrics._validation import check_magnitude, check_positive_int
from untwine.metrics.downstream import PREDICTOR_PARAMETER, PREDICTORS, estimator_kind
from untwine.metrics.fit_warnings import warn_about_fits
from untwine.metrics.representation import as_code_source
from untwine.metrics.spec import POSITIVE_INT, POSITIVE_INTS, MetricOutput, MetricSpec, Parameter
from untwine.utils.rng import as_generator

SPEC_NAME = "strong_downstream_task"


def intervene(
    factors_train: np.ndarray, factors_test: np.ndarray, target: int, factor_sizes, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Copies of the factors with another factor fixed to one value in training and to other values in
    testing; returns ``(train, test, intervened factor, its training value)``."""
    others = [j for j in range(len(factor_sizes)) if j != target]
    if not others:
        raise ValueError("the strong downstream task needs at least two factors (one to shift)")
    factor = int(rng.choice(others))
    if factor_sizes[factor] < 2:
        raise ValueError(f"factor {factor} takes a single value; it cannot be shifted")
    value = int(rng.integers(factor_sizes[factor]))
    remaining = np.delete(np.arange(factor_sizes[factor]), value)
    train, test = factors_train.copy(), factors_test.copy()
    train[:, factor] = value
    test[:, factor] = rng.choice(remaining, size=test.shape[0])
    return train, test, factor, value


def _fit_task(kind, x_train, y_train, x_test, y_test, rng) -> FitTask:
    if kind == "gbt":
        check_magnitude(x_train, "codes_train", "strong_downstream_task", "boosted_trees")
    state = np.random.RandomState(int(rng.integers(2**31))) if kind.endswith("gbt") else None
    return FitTask(kind, x_train, y_train, x_test, y_test, state)


def strong_downstream_task(
    dataset,
    representation_fn,
    rng,
    *,
    num_train=(1000,),
    num_test: int = 1000,
    n_experiment: int = 10,
    predictor: str = "boosted_trees",
    fast: bool = False,
    n_jobs: int = 1,
    return_matrices: bool = False,
    engine: FitEngine | None = None,
    **source_options,
):
    """The strong downstream task (see the module docstring).

    Args:
        dataset: a GroundTruthDataset with at least two factors.
        representation_fn: callable images -> codes, an ``encode_mean_logvar`` object, or a CodeSource.
        rng: numpy Generator, ``RandomState`` or int seed; every draw (factors, interventions, the trees'
            tie-breaking) comes from it.
        num_train: training-set sizes, each with its own draws (dlib's test: [1000]).
        num_test: test points (1000).
        n_experiment: interventions per target factor (10).
        predictor: ``"boosted_trees"`` (dlib's test) or ``"logistic_regression"``.
        fast: binned boosted trees for sizes >= 1,000 (see :mod:`untwine.metrics.downstream`).
        n_jobs: worker processes for the fits; values do not depend on it.
        return_matrices: also return the per-target accuracies ``{"{n}:strong_test_accuracy":
            (num_factors, n_experiment), "{n}:intervened_factor": (num_factors, n_experiment)}`` and the
            fits.
        engine: the runner's :class:`FitEngine` (its workers); by default a new one with ``n_jobs``.

    Returns:
        ``{"{n}:mean_train_accuracy", "{n}:mean_test_accuracy", "{n}:mean_strong_train_accuracy",
        "{n}:mean_strong_test_accuracy", "{n}:strong_generalization_gap"}`` per size ``n``.
    """
    sizes = [check_positive_int(n, "num_train") for n in (num_train if np.ndim(num_train) else [num_train])]
    num_test = check_positive_int(num_test, "num_test")
    n_experiment = check_positive_int(n_experiment, "n_experiment")
    if predictor not in PREDICTORS:
        raise ValueError(f"predictor must be one of {PREDICTORS}, got {predictor!r}")
    source = as_code_source(dataset, representation_fn, **source_options)
    sizes_of_factors = tuple(source.dataset.factor_sizes)
    num_factors = len(sizes_of_factors)
    if num_factors < 2:
        raise ValueError("the strong downstream task needs at least two factors (one to shift)")
    rng = as_generator(rng)
    engine = engine if engine is not None else FitEngine(n_jobs)
    plans = {}
    for n in sizes:
        kind = estimator_kind(predictor, n, fast)
        factors_train = source.dataset.sample_factors(n, rng)
        factors_test = source.dataset.sample_factors(num_test, rng)
        codes_train = source.codes(factors_train, rng).astype(np.float64)
        codes_test = source.codes(factors_test, rng).astype(np.float64)
        baseline = []
        for i in range(num_factors):
            key = (SPEC_NAME, "baseline", n, i)
            engine.add(
                key, _fit_task(kind, codes_train, factors_train[:, i], codes_test, factors_test[:, i], rng)
            )
            baseline.append(key)
        strong, shifted = [], np.zeros((num_factors, n_experiment), dtype=np.int64)
        for i in range(num_factors):
            for e in range(n_experiment):
                train, test, shifted[i, e], _ = intervene(
                    factors_train, factors_test, i, sizes_of_factors, rng
                )
                x_train = source.codes(train, rng).astype(np.float64)
                x_test = source.codes(test, rng).astype(np.float64)
                key = (SPEC_NAME, "strong", n, i, e)
                engine.add(key, _fit_task(kind, x_train, train[:, i], x_test, test[:, i], rng))
                strong.append(key)
        plans[n] = (baseline, strong, shifted)
    scores, details, all_fits = {}, {}, []
    for n, (baseline, strong, shifted) in plans.items():
        base_fits, strong_fits = engine.results(baseline), engine.results(strong)
        all_fits += base_fits + strong_fits
        scores[f"{n}:mean_train_accuracy"] = float(np.mean([f.train_accuracy for f in base_fits]))
        scores[f"{n}:mean_test_accuracy"] = float(np.mean([f.test_accuracy for f in base_fits]))
        scores[f"{n}:mean_strong_train_accuracy"] = float(np.mean([f.train_accuracy for f in strong_fits]))
        strong_test = np.array([f.test_accuracy for f in strong_fits]).reshape(num_factors, n_experiment)
        scores[f"{n}:mean_strong_test_accuracy"] = float(strong_test.mean())
        base_test = scores[f"{n}:mean_test_accuracy"]
        scores[f"{n}:strong_generalization_gap"] = (
            1.0 - scores[f"{n}:mean_strong_test_accuracy"] / base_test if base_test > 0 else float("nan")
        )
        details[f"{n}:strong_test_accuracy"] = strong_test
        details[f"{n}:intervened_factor"] = shifted
    warn_about_fits(all_fits)
    if return_matrices:
        return scores, details, all_fits
    return scores


def _compute(params: dict, ctx) -> MetricOutput:
    scores, details, fits = strong_downstream_task(
        ctx.source.dataset,
        ctx.source,
        ctx.rng(SPEC.name),
        fast=ctx.fast,
        return_matrices=True,
        engine=ctx.engine,
        **params,
    )
    return MetricOutput(scores, details, fits=fits)


SPEC = MetricSpec(
    name=SPEC_NAME,
    description="Strong downstream task: prediction under a covariate shift of another factor",
    parameters={
        "num_train": Parameter([1000], POSITIVE_INTS, "training-set sizes, each drawn afresh"),
        "num_test": Parameter(1000, POSITIVE_INT, "test points"),
        "n_experiment": Parameter(10, POSITIVE_INT, "interventions per target factor"),
        "predictor": PREDICTOR_PARAMETER,
    },
    compute=_compute,
    run_order=120,
    aliases=("strong_downstream",),
    # Images encoded per target factor (the baseline's and one intervention's): a lower bound, since the
    # number of factors is the dataset's.
    image_requests=lambda p: sum((n + p["num_test"]) * (1 + p["n_experiment"]) for n in p["num_train"]),
)
