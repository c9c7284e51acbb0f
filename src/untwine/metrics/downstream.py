"""Downstream classification task (Locatello et al. 2019, "Challenging Common Assumptions..."): how well
simple classifiers trained on the codes predict each factor, for several training-set sizes.

For each size ``n`` in ``num_train`` a classifier per factor is trained on the first ``n`` training
points and scored on all test points.  Predictors, as in disentanglement_lib:

* ``"logistic_regression"``: ``LogisticRegressionCV(Cs=10, cv=KFold(5), scoring="accuracy")`` (fast
  mode: C is chosen by the same cross-validation on the first 1,000 points, then one fit on all);
* ``"boosted_trees"``: ``GradientBoostingClassifier()`` (fast mode: the binned equivalent for sizes
  of at least 1,000 points; smaller sizes always use the exact classifier, which is cheap there).

Keys per size: ``"{n}:mean_train_accuracy"``, ``"{n}:mean_test_accuracy"``, ``"{n}:min_train_accuracy"``,
``"{n}:min_test_accuracy"``, ``"{n}:train_accuracy_factor_{j}"``, ``"{n}:test_accuracy_factor_{j}"``;
plus ``"sample_efficiency"`` = mean test accuracy at 100 points / at 10,000 points when both sizes are
evaluated (the statistical efficiency of Locatello et al.).

Difference from disentanglement_lib: dlib draws a fresh training and test sample for every size; here
the sizes are prefixes of one training sample and share one test sample (the reference values were
produced the same way), which is what lets the runner share the 10,000-point boosted trees with DCI
and fairness.  The shared fits use DCI's random stream for tie-breaking between equally good splits,
so in the runner the 10,000-point boosted-tree values can differ from a standalone call by such ties.
"""

from __future__ import annotations

import numpy as np

from untwine.metrics._estimators import FAST_CV_POINTS, FitEngine, FitTask, PrefixFit, gbt_random_states
from untwine.metrics._validation import check_magnitude, check_sizes, check_train_test
from untwine.metrics.fit_warnings import warn_about_fits
from untwine.metrics.spec import POSITIVE_INT, POSITIVE_INTS, Allowed, MetricOutput, MetricSpec, Parameter

PREDICTORS = ("logistic_regression", "boosted_trees")
STUDY_SIZES = (10, 100, 1000, 10000)
FAST_MIN_POINTS = 1000  # below this size fast mode keeps the exact boosted trees
EFFICIENCY_SIZES = (100, 10000)


# The classifier parameter of the downstream-task variants (reduced, strong).
PREDICTOR_PARAMETER = Parameter(
    "boosted_trees", Allowed(f"one of {list(PREDICTORS)}", lambda v: v in PREDICTORS), "classifier"
)


def estimator_kind(predictor: str, num_points: int, fast: bool) -> str:
    if predictor == "logistic_regression":
        return "lr_cv_fast" if fast else "lr_cv"
    if predictor == "boosted_trees":
        return "binned_gbt" if fast and num_points >= FAST_MIN_POINTS else "gbt"
    raise ValueError(f"predictor must be one of {PREDICTORS}, got {predictor!r}")


def downstream_tasks(
    codes_train,
    factors_train,
    codes_test,
    factors_test,
    *,
    predictor,
    sizes,
    fast,
    random_state,
    data_key,
    metric: str,
    fresh_stream_sizes=(),
) -> dict[int, list[tuple]]:
    """Keyed fit tasks per training-set size (keys match :func:`untwine.metrics.dci.boosted_tree_tasks`).

    The exact boosted trees of consecutive sizes share one random stream, as in dlib; a size listed in
    ``fresh_stream_sizes`` starts a fresh ``RandomState(random_state)`` instead, which makes its fits
    the very fits DCI and fairness use on the same data (the runner shares them).  ``metric`` names the
    metric in the error raised for codes too large for the exact trees.
    """
    out = {}
    stream = np.random.RandomState(random_state)
    for n in sizes:
        kind = estimator_kind(predictor, n, fast)
        x, y = codes_train[:n], factors_train[:n]
        if kind == "gbt":
            check_magnitude(x, "codes_train", metric, "boosted_trees")
        class_counts = [np.unique(y[:, j]).shape[0] for j in range(y.shape[1])]
        if kind != "gbt":
            states = [None] * len(class_counts)
        else:
            states = gbt_random_states(random_state if n in fresh_stream_sizes else stream, class_counts)
        out[n] = [
            (
                (kind, data_key, n, j, random_state if kind.endswith("gbt") else None),
                FitTask(kind, x, y[:, j], codes_test, factors_test[:, j], states[j]),
            )
            for j in range(y.shape[1])
        ]
    largest = max(sizes)
    if (
        estimator_kind(predictor, largest, fast) == "lr_cv_fast"
        and FAST_CV_POINTS in out
        and largest > FAST_CV_POINTS
    ):
        # The largest size's fit chooses C by the very cross-validation the FAST_CV_POINTS size runs.
        out[FAST_CV_POINTS] = [
            (key, PrefixFit(base_key, task))
            for (key, task), (base_key, _) in zip(out[FAST_CV_POINTS], out[largest], strict=True)
        ]
    return out


def downstream_from_results(results_per_size: dict) -> dict:
    scores = {}
    for n, results in results_per_size.items():
        train = [r.train_accuracy for r in results]
        test = [r.test_accuracy for r in results]
        scores[f"{n}:mean_train_accuracy"] = float(np.mean(train))
        scores[f"{n}:mean_test_accuracy"] = float(np.mean(test))
        scores[f"{n}:min_train_accuracy"] = float(np.min(train))
        scores[f"{n}:min_test_accuracy"] = float(np.min(test))
        for j, (a, b) in enumerate(zip(train, test, strict=True)):
            scores[f"{n}:train_accuracy_factor_{j}"] = a
            scores[f"{n}:test_accuracy_factor_{j}"] = b
    small, large = EFFICIENCY_SIZES
    if small in results_per_size and large in results_per_size:
        denominator = scores[f"{large}:mean_test_accuracy"]
        scores["sample_efficiency"] = (
            scores[f"{small}:mean_test_accuracy"] / denominator if denominator > 0 else 0.0
        )
    return scores


def check_downstream_sizes(sizes, predictor: str, available: int) -> tuple[int, ...]:
    sizes = check_sizes(sizes, "num_train", available)
    if predictor == "logistic_regression" and min(sizes) < 5:
        raise ValueError(
            f"num_train sizes must be >= 5 for the 5-fold cross-validated logistic regression, got {min(sizes)}"
        )
    if predictor not in PREDICTORS:
        raise ValueError(f"predictor must be one of {PREDICTORS}, got {predictor!r}")
    return sizes


def downstream_task(
    codes_train,
    factors_train,
    codes_test,
    factors_test,
    *,
    predictor: str = "logistic_regression",
    num_train=STUDY_SIZES,
    fast: bool = False,
    random_state: int = 0,
    n_jobs: int = 1,
):
    """Accuracy of per-factor classifiers trained on the first ``n`` training points, for each ``n``.

    Args:
        codes_train, factors_train: at least ``max(num_train)`` training points (study: 10,000).
        codes_test, factors_test: test points (study: 5,000).
        predictor: ``"logistic_regression"`` or ``"boosted_trees"``.
        num_train: training-set sizes (study: 10, 100, 1000, 10000).
        fast: binned boosted trees for sizes >= 1,000; logistic regression's C chosen on 1,000 points.
        random_state: seed of the boosted trees' tie-breaking (see :mod:`untwine.metrics._estimators`).
        n_jobs: worker processes for the fits; values do not depend on it.

    Returns:
        dict with the keys listed in the module docstring.
    """
    codes_train, factors_train, codes_test, factors_test = check_train_test(
        codes_train, factors_train, codes_test, factors_test
    )
    sizes = check_downstream_sizes(num_train, predictor, codes_train.shape[0])
    engine = FitEngine(n_jobs)
    per_size = downstream_tasks(
        codes_train,
        factors_train,
        codes_test,
        factors_test,
        predictor=predictor,
        sizes=sizes,
        fast=fast,
        random_state=int(random_state),
        data_key=object(),
        metric="downstream_task",
    )
    for tasks in per_size.values():
        for key, task in tasks:
            engine.add(key, task)
    engine.start()
    results = {n: engine.results([k for k, _ in tasks]) for n, tasks in per_size.items()}
    warn_about_fits([fit for fits in results.values() for fit in fits])
    return downstream_from_results(results)


def _spec(predictor: str, description: str, run_order: int) -> MetricSpec:
    name = f"downstream_task_{predictor}"

    def plan_fits(params: dict, ctx) -> None:
        sizes = tuple(params["num_train"])
        codes, factors, test_codes, test_factors = ctx.split(max(sizes), params["num_test"])
        sizes = check_downstream_sizes(sizes, predictor, codes.shape[0])
        per_size = downstream_tasks(
            codes,
            factors,
            test_codes,
            test_factors,
            predictor=predictor,
            sizes=sizes,
            fast=ctx.fast,
            random_state=ctx.seed,
            data_key=("shared", params["num_test"]),
            metric=name,
            # The largest size's boosted trees are then DCI's and fairness's very fits.
            fresh_stream_sizes={max(sizes)},
        )
        ctx.add_fits(name, per_size)

    def compute(params: dict, ctx) -> MetricOutput:
        per_size = ctx.fit_results(name)
        return MetricOutput(
            downstream_from_results(per_size), fits=[r for results in per_size.values() for r in results]
        )

    return MetricSpec(
        name=name,
        description=description,
        parameters={
            "num_train": Parameter(
                list(STUDY_SIZES),
                POSITIVE_INTS,
                "training-set sizes (prefixes of the shared training sample)",
            ),
            "num_test": Parameter(5000, POSITIVE_INT, "points of the shared test sample used"),
        },
        compute=compute,
        run_order=run_order,
        aliases=(f"downstream_{predictor}",),
        shared_sample=True,
        plan_fits=plan_fits,
    )


BOOSTED_TREES_SPEC = _spec("boosted_trees", "Downstream task, gradient-boosted trees", 90)
LOGISTIC_REGRESSION_SPEC = _spec("logistic_regression", "Downstream task, logistic regression", 100)
