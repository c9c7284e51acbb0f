"""Disentanglement, Completeness and Informativeness (Eastwood & Williams 2018, "A Framework for the
Quantitative Evaluation of Disentangled Representations"), with gradient-boosted trees as in
disentanglement_lib.

One ``GradientBoostingClassifier()`` per factor predicts the factor from all codes; its feature
importances form column j of the ``(num_codes, num_factors)`` importance matrix R.

* disentanglement: ``sum_i rho_i (1 - H_K(P_i.))`` with ``P_ij = R_ij / sum_k R_ik`` (entropy base K =
  number of factors) and ``rho_i = sum_j R_ij / sum R``;
* completeness: the same over factors (entropy base d = number of codes);
* informativeness: mean train / test accuracy of the classifiers.

As in dlib, 1e-11 is added to R before the entropies.  Edge cases dlib leaves undefined: with a single
factor every code is fully disentangled (1), with a single code every factor is fully complete (1).
Fast mode (``fast=True``) replaces the exact classifier with the binned one described in
:mod:`untwine.metrics._binned_gbt`.
"""

from __future__ import annotations

import numpy as np

from untwine.metrics._estimators import FitEngine, FitTask, gbt_random_states
from untwine.metrics._validation import check_magnitude, check_train_test
from untwine.metrics.fit_warnings import warn_about_fits
from untwine.metrics.spec import POSITIVE_INT, MetricOutput, MetricSpec, Parameter

EPSILON = 1e-11


def _entropy_rows(p: np.ndarray, base: int) -> np.ndarray:
    """Entropy (base ``base``) of each row of a non-negative matrix, rows normalised to sum 1."""
    p = p / p.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log(p), 0.0)
    return -terms.sum(axis=1) / np.log(base)


def disentanglement_per_code(importance: np.ndarray) -> np.ndarray:
    if importance.shape[1] == 1:
        return np.ones(importance.shape[0])
    return 1.0 - _entropy_rows(importance + EPSILON, importance.shape[1])


def completeness_per_factor(importance: np.ndarray) -> np.ndarray:
    if importance.shape[0] == 1:
        return np.ones(importance.shape[1])
    return 1.0 - _entropy_rows(importance.T + EPSILON, importance.shape[0])


def disentanglement(importance) -> float:
    importance = np.asarray(importance, dtype=np.float64)
    per_code = disentanglement_per_code(importance)
    weights = importance if importance.sum() > 0 else np.ones_like(importance)
    return float(np.sum(per_code * weights.sum(axis=1) / weights.sum()))


def completeness(importance) -> float:
    importance = np.asarray(importance, dtype=np.float64)
    per_factor = completeness_per_factor(importance)
    weights = importance if importance.sum() > 0 else np.ones_like(importance)
    return float(np.sum(per_factor * weights.sum(axis=0) / weights.sum()))


def boosted_tree_tasks(
    codes_train,
    factors_train,
    codes_test,
    factors_test,
    *,
    fast: bool,
    random_state: int,
    data_key,
    metric: str,
) -> list[tuple]:
    """Keyed fit tasks of the per-factor boosted-tree classifiers trained on all of ``codes_train``.

    ``codes_test``/``factors_test`` may be None (no test accuracy).  The key identifies the fit: the same
    data key, size, factor and seed give the same fit, shared between DCI, downstream and fairness.
    ``metric`` names the metric in the error raised for codes too large for the exact trees.
    """
    kind = "binned_gbt" if fast else "gbt"
    if kind == "gbt":
        check_magnitude(codes_train, "codes_train", metric, "boosted_trees")
    n = codes_train.shape[0]
    class_counts = [np.unique(factors_train[:, j]).shape[0] for j in range(factors_train.shape[1])]
    states = gbt_random_states(random_state, class_counts) if kind == "gbt" else [None] * len(class_counts)
    return [
        (
            (kind, data_key, n, j, random_state),
            FitTask(
                kind,
                codes_train,
                factors_train[:, j],
                codes_test,
                None if factors_test is None else factors_test[:, j],
                states[j],
            ),
        )
        for j in range(factors_train.shape[1])
    ]


def fit_boosted_trees(
    codes_train,
    factors_train,
    codes_test,
    factors_test,
    *,
    fast: bool,
    random_state: int,
    n_jobs: int,
    metric="dci",
) -> list:
    """The per-factor boosted trees of validated arrays, fitted on a new engine (warnings raised once)."""
    engine = FitEngine(n_jobs)
    tasks = boosted_tree_tasks(
        codes_train,
        factors_train,
        codes_test,
        factors_test,
        fast=fast,
        random_state=int(random_state),
        data_key=object(),
        metric=metric,
    )
    for key, task in tasks:
        engine.add(key, task)
    results = engine.results([key for key, _ in tasks])
    warn_about_fits(results)
    return results


def dci_from_results(results) -> tuple[dict, dict]:
    importance = np.stack([r.importances for r in results], axis=1)
    train = np.array([r.train_accuracy for r in results])
    test = np.array([r.test_accuracy for r in results])
    scores = {
        "informativeness_train": float(np.mean(train)),
        "informativeness_test": float(np.mean(test)),
        "disentanglement": disentanglement(importance),
        "completeness": completeness(importance),
    }
    details = {
        "importance_matrix": importance,
        "disentanglement_per_code": disentanglement_per_code(importance),
        "completeness_per_factor": completeness_per_factor(importance),
        "train_accuracy_per_factor": train,
        "test_accuracy_per_factor": test,
    }
    return scores, details


def dci(
    codes_train,
    factors_train,
    codes_test,
    factors_test,
    *,
    fast: bool = False,
    random_state: int = 0,
    n_jobs: int = 1,
    return_matrices: bool = False,
):
    """DCI scores from gradient-boosted trees.

    Args:
        codes_train, factors_train: N x d codes and N x K factors (study: 10,000 points).
        codes_test, factors_test: held-out points (study: 5,000).
        fast: use the binned boosted trees (see module docstring) instead of scikit-learn's exact ones.
        random_state: integer seed of the trees' tie-breaking (0 reproduces disentanglement_lib run after
            ``np.random.seed(0)``).
        n_jobs: worker processes for the per-factor fits (-1: all cores); values do not depend on it.
        return_matrices: also return ``{"importance_matrix": (d, K), "disentanglement_per_code",
            "completeness_per_factor", "train_accuracy_per_factor", "test_accuracy_per_factor"}``.

    Returns:
        ``{"disentanglement", "completeness", "informativeness_train", "informativeness_test"}``.
    """
    codes_train, factors_train, codes_test, factors_test = check_train_test(
        codes_train, factors_train, codes_test, factors_test
    )
    results = fit_boosted_trees(
        codes_train,
        factors_train,
        codes_test,
        factors_test,
        fast=fast,
        random_state=random_state,
        n_jobs=n_jobs,
    )
    scores, details = dci_from_results(results)
    if return_matrices:
        return scores, details
    return scores


def plan_shared_boosted_trees(metric: str, ctx, num_train: int, num_test: int) -> None:
    """Queue the per-factor boosted trees on the first ``num_train`` shared training points, scored on
    the first ``num_test`` shared test points (DCI's fits; fairness and the downstream task share them)."""
    codes, factors, test_codes, test_factors = ctx.split(num_train, num_test)
    # The data key names the data: a prefix of the shared training sample (the size is part of the task
    # key) and the first num_test shared test points.
    tasks = boosted_tree_tasks(
        codes,
        factors,
        test_codes,
        test_factors,
        fast=ctx.fast,
        random_state=ctx.seed,
        data_key=("shared", num_test),
        metric=metric,
    )
    ctx.add_fits(metric, {"all": tasks})


def _plan_fits(params: dict, ctx) -> None:
    plan_shared_boosted_trees(SPEC.name, ctx, params["num_train"], params["num_test"])


def _compute(params: dict, ctx) -> MetricOutput:
    results = ctx.fit_results(SPEC.name)["all"]
    values, matrices = dci_from_results(results)
    return MetricOutput(values, matrices, fits=results)


SPEC = MetricSpec(
    name="dci",
    description="DCI disentanglement, completeness and informativeness",
    parameters={
        "num_train": Parameter(10000, POSITIVE_INT, "points of the shared training sample used"),
        "num_test": Parameter(5000, POSITIVE_INT, "points of the shared test sample used"),
    },
    compute=_compute,
    run_order=80,
    shared_sample=True,
    plan_fits=_plan_fits,
)
