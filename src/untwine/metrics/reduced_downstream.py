"""Reduced downstream task (disentanglement_lib's ``reduced_downstream_task``): how much information about
a factor leaks into the other code dimensions once the dimensions most informative about it are removed.

For each training-set size ``n`` in ``num_train`` and each factor f ("reduced factor"):

1. ``num_factors_to_remove`` times: fit a ``GradientBoostingClassifier`` predicting f from the current
   codes (DCI's importance column of f, dlib's ``factorwise_dci``) and delete the code dimension with
   the largest importance;
2. on the remaining dimensions, train one classifier per factor and score it on train and test points.

Keys (dlib's): ``"{n}:reduced_factor_{f}:mean_{train,test}_accuracy_reduced_factor"`` (factor f from
the reduced codes: low = f was held by the removed dimensions only),
``"{n}:reduced_factor_{f}:mean_{train,test}_accuracy_factor_{i}"``,
``"{n}:reduced_factor_{f}:mean_{train,test}_accuracy_non_reduced_factor"`` (mean over the other factors),
and the means over f: ``"{n}:mean_{train,test}_accuracy_reduced_factor"`` and
``"{n}:mean_{train,test}_accuracy_other_factors"``.

As in untwine's downstream task the sizes are prefixes of one shared training sample with one shared
test sample (dlib draws afresh per size).  dlib fits the whole importance matrix (a tree per factor) to
use column f; only f's tree is fitted here (the column is the same).  dlib's function has no defaults
(``gin.REQUIRED``); untwine uses ``num_factors_to_remove=1`` as dlib's test config, with
``num_train=[1000], num_test=1000``, and boosted trees as predictor as dlib's test config binds them.
Every fit's tie-breaking seed comes from one stream started at ``random_state``.
"""

from __future__ import annotations

import numpy as np

from untwine.metrics._estimators import FitEngine, FitTask
from untwine.metrics._validation import check_magnitude, check_positive_int, check_sizes, check_train_test
from untwine.metrics.downstream import PREDICTOR_PARAMETER, PREDICTORS, estimator_kind
from untwine.metrics.fit_warnings import warn_about_fits
from untwine.metrics.spec import POSITIVE_INT, POSITIVE_INTS, MetricOutput, MetricSpec, Parameter

SPEC_NAME = "reduced_downstream_task"


def _task(kind: str, x_train, y_train, x_test, y_test, stream: np.random.Generator) -> FitTask:
    if kind == "gbt":
        check_magnitude(x_train, "codes_train", SPEC_NAME, "boosted_trees")
    state = np.random.RandomState(int(stream.integers(2**31))) if kind.endswith("gbt") else None
    return FitTask(kind, x_train, y_train, x_test, y_test, state)


def reduced_downstream_task(
    codes_train,
    factors_train,
    codes_test,
    factors_test,
    *,
    num_train=(1000,),
    num_factors_to_remove: int = 1,
    predictor: str = "boosted_trees",
    fast: bool = False,
    random_state: int = 0,
    n_jobs: int = 1,
    engine: FitEngine | None = None,
    return_matrices: bool = False,
):
    """The reduced downstream task (see the module docstring).

    Args:
        codes_train, factors_train: at least ``max(num_train)`` training points.
        codes_test, factors_test: test points.
        num_train: training-set sizes (prefixes of the training points).
        num_factors_to_remove: code dimensions removed per factor; fewer than the code dimension.
        predictor: ``"boosted_trees"`` or ``"logistic_regression"`` (the classifiers of step 2; the
            importances of step 1 always come from boosted trees, as in dlib).
        fast: binned boosted trees / fast logistic regression for sizes >= 1,000.
        random_state: seed of the stream the fits' tie-breaking seeds are drawn from.
        n_jobs: worker processes for the fits; values do not depend on it.
        engine: the runner's :class:`FitEngine`; by default a new one with ``n_jobs``.
        return_matrices: also return ``{"{n}:removed_codes": (num_factors, num_factors_to_remove)}`` (the
            removed dimensions, in removal order, as indices into the original codes) and the fits.
    """
    codes_train, factors_train, codes_test, factors_test = check_train_test(
        codes_train, factors_train, codes_test, factors_test
    )
    sizes = check_sizes(num_train, "num_train", codes_train.shape[0])
    remove = check_positive_int(num_factors_to_remove, "num_factors_to_remove")
    num_codes, num_factors = codes_train.shape[1], factors_train.shape[1]
    if remove >= num_codes:
        raise ValueError(
            f"num_factors_to_remove = {remove} leaves no code dimension of the {num_codes}; "
            f"choose at most {num_codes - 1}"
        )
    if predictor not in PREDICTORS:
        raise ValueError(f"predictor must be one of {PREDICTORS}, got {predictor!r}")
    engine = engine if engine is not None else FitEngine(n_jobs)
    stream = np.random.default_rng(int(random_state))
    scores, details, fits = {}, {}, []
    for n in sizes:
        x_train, y_train = codes_train[:n], factors_train[:n]
        importance_kind = "binned_gbt" if fast and n >= 1000 else "gbt"
        kept = [list(range(num_codes)) for _ in range(num_factors)]
        removed = np.zeros((num_factors, remove), dtype=np.int64)
        for step in range(remove):
            # One importance fit per reduced factor; the factors' steps are independent, so each step's
            # fits run in parallel.
            keys = []
            for f in range(num_factors):
                key = (SPEC_NAME, random_state, n, "importance", f, step)
                columns = kept[f]
                task = _task(
                    importance_kind,
                    x_train[:, columns],
                    y_train[:, f],
                    codes_test[:, columns],
                    factors_test[:, f],
                    stream,
                )
                engine.add(key, task)
                keys.append(key)
            for f, fit in enumerate(engine.results(keys)):
                fits.append(fit)
                removed[f, step] = kept[f].pop(int(np.argmax(fit.importances)))
        kind = estimator_kind(predictor, n, fast)
        keys = {}
        for f in range(num_factors):
            columns = kept[f]
            for i in range(num_factors):
                key = (SPEC_NAME, random_state, n, "predict", f, i)
                engine.add(
                    key,
                    _task(
                        kind,
                        x_train[:, columns],
                        y_train[:, i],
                        codes_test[:, columns],
                        factors_test[:, i],
                        stream,
                    ),
                )
                keys[f, i] = key
        results = dict(zip(keys, engine.results(list(keys.values())), strict=True))
        fits += list(results.values())
        reduced_train, reduced_test, other_train, other_test = [], [], [], []
        for f in range(num_factors):
            train = [results[f, i].train_accuracy for i in range(num_factors)]
            test = [results[f, i].test_accuracy for i in range(num_factors)]
            prefix = f"{n}:reduced_factor_{f}:"
            scores[prefix + "mean_train_accuracy_reduced_factor"] = train[f]
            scores[prefix + "mean_test_accuracy_reduced_factor"] = test[f]
            for i in range(num_factors):
                scores[prefix + f"mean_train_accuracy_factor_{i}"] = train[i]
                scores[prefix + f"mean_test_accuracy_factor_{i}"] = test[i]
            others = [i for i in range(num_factors) if i != f]
            # With a single factor there is no other factor: dlib's mean of an empty list (NaN).
            other_train_f = float(np.mean([train[i] for i in others])) if others else float("nan")
            other_test_f = float(np.mean([test[i] for i in others])) if others else float("nan")
            scores[prefix + "mean_train_accuracy_non_reduced_factor"] = other_train_f
            scores[prefix + "mean_test_accuracy_non_reduced_factor"] = other_test_f
            reduced_train.append(train[f])
            reduced_test.append(test[f])
            other_train.append(other_train_f)
            other_test.append(other_test_f)
        scores[f"{n}:mean_train_accuracy_reduced_factor"] = float(np.mean(reduced_train))
        scores[f"{n}:mean_test_accuracy_reduced_factor"] = float(np.mean(reduced_test))
        scores[f"{n}:mean_train_accuracy_other_factors"] = float(np.mean(other_train))
        scores[f"{n}:mean_test_accuracy_other_factors"] = float(np.mean(other_test))
        details[f"{n}:removed_codes"] = removed
    warn_about_fits(fits)
    if return_matrices:
        return scores, details, fits
    return scores


def _compute(params: dict, ctx) -> MetricOutput:
    sizes = params["num_train"]
    codes, factors, test_codes, test_factors = ctx.split(max(sizes), params["num_test"])
    scores, details, fits = reduced_downstream_task(
        codes,
        factors,
        test_codes,
        test_factors,
        num_train=sizes,
        num_factors_to_remove=params["num_factors_to_remove"],
        predictor=params["predictor"],
        fast=ctx.fast,
        random_state=ctx.seed,
        engine=ctx.engine,
        return_matrices=True,
    )
    return MetricOutput(scores, details, fits=fits)


SPEC = MetricSpec(
    name=SPEC_NAME,
    description="Reduced downstream task: prediction after removing the most informative code dimensions",
    parameters={
        "num_train": Parameter([1000], POSITIVE_INTS, "training-set sizes (prefixes of the shared sample)"),
        "num_test": Parameter(1000, POSITIVE_INT, "points of the shared test sample used"),
        "num_factors_to_remove": Parameter(1, POSITIVE_INT, "code dimensions removed per factor"),
        "predictor": PREDICTOR_PARAMETER,
    },
    compute=_compute,
    run_order=115,
    aliases=("reduced_downstream",),
    shared_sample=True,
)
