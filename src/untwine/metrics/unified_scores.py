"""Unified disentanglement scores (disentanglement_lib's ``unified_scores``, used by Locatello et al.
2020, "Disentangling Factors of Variation Using Few Labels").

DCI, MIG, modularity and SAP each relate codes and factors through a ``(num_codes, num_factors)`` matrix
and then aggregate it.  The unified scores cross the three matrices with all four aggregations:

Matrices (names as dlib's ``matrix_fns``, which are the key prefixes):

* ``importance_gbt_matrix``: DCI's importance matrix (per-factor ``GradientBoostingClassifier`` feature
  importances; the very fits :mod:`untwine.metrics.dci` makes on the same points);
* ``mutual_information_matrix``: MIG's matrix, I(histogram-discretised code; factor) in nats on the
  training points (``num_bins`` equal-width bins, dlib's study discretiser);
* ``accuracy_svm_matrix``: SAP's matrix, test accuracy of a one-dimensional ``LinearSVC`` per code
  and factor.

Aggregations of every matrix M (keys ``"<matrix>.<key>"``):

* ``dci_disentanglement``, ``dci_completeness``, ``dci`` (= disentanglement), ``dci_disentanglement.code_i``
  and ``dci_completeness.code_j`` (dlib's key name; the index runs over *factors*);
* ``mig`` = mean over factors of (largest - second-largest entry of the column) / H(factor), and
  ``mig.factor_j``;
* ``sap`` = mean over factors of the same top-two gap without the entropy, and ``sap.factor_j``;
* ``modularity`` and ``modularity.code_i`` (Ridgeway & Zemel's per-code modularity of M);
* ``area_precision`` and ``max_precision``: for every threshold t among M's entries, "precision" is the
  number of connected components (with at least one edge) of the bipartite code-factor graph whose
  edges are the entries >= t; ``area_precision`` is the trapezoid area under precision against the
  thresholds in decreasing order, ``max_precision`` its maximum.

dlib's function requires ``num_train``, ``num_test`` and ``matrix_fns`` (no defaults); untwine uses the
study's sample sizes of DCI and SAP (10,000 / 5,000) and all three matrices.  Dendrograms and plots
dlib writes into an artifact directory are not produced (the matrices are stored with the result).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components

from untwine.metrics._validation import check_positive_int, check_train_test
from untwine.metrics.dci import (
    completeness,
    completeness_per_factor,
    disentanglement,
    disentanglement_per_code,
    fit_boosted_trees,
    plan_shared_boosted_trees,
)
from untwine.metrics.information import discrete_entropy, discrete_mutual_info_matrix, histogram_discretize
from untwine.metrics.mig import top_two_gap
from untwine.metrics.modularity_explicitness import modularity_from_mutual_info
from untwine.metrics.sap import sap_score_matrix
from untwine.metrics.spec import POSITIVE_INT, Allowed, MetricOutput, MetricSpec, Parameter, int_at_least

MATRICES = ("importance_gbt_matrix", "mutual_information_matrix", "accuracy_svm_matrix")


def precision(matrix: np.ndarray, threshold: float) -> int:
    """Connected components with at least one edge of the bipartite graph {entries >= threshold}."""
    edges = np.where(matrix < threshold, 0.0, matrix) != 0
    num_codes, num_factors = edges.shape
    adjacency = np.zeros((num_codes + num_factors,) * 2, dtype=bool)
    adjacency[:num_codes, num_codes:] = edges
    _, labels = connected_components(csr_matrix(adjacency), directed=False)
    with_edge = labels[:num_codes][edges.any(axis=1)]
    return int(np.unique(with_edge).size)


def precision_curve_scores(matrix: np.ndarray) -> dict[str, float]:
    """``area_precision`` and ``max_precision`` of a matrix (see the module docstring)."""
    thresholds = np.sort(matrix.ravel())[::-1]
    precisions = np.array([precision(matrix, t) for t in thresholds], dtype=np.float64)
    area = float(np.sum((precisions[:-1] + precisions[1:]) * (thresholds[:-1] - thresholds[1:]) * 0.5))
    return {"area_precision": area, "max_precision": float(precisions.max())}


def aggregate(matrix: np.ndarray, factor_entropy: np.ndarray) -> dict[str, float]:
    """The four aggregations and the precision curve of one ``(num_codes, num_factors)`` matrix."""
    scores: dict[str, float] = {}
    scores["dci_disentanglement"] = disentanglement(matrix)
    scores["dci_completeness"] = completeness(matrix)
    scores["dci"] = scores["dci_disentanglement"]
    for i, value in enumerate(disentanglement_per_code(matrix)):
        scores[f"dci_disentanglement.code_{i}"] = float(value)
    for j, value in enumerate(completeness_per_factor(matrix)):
        scores[f"dci_completeness.code_{j}"] = float(value)  # dlib's key: indexed by factor
    gap = top_two_gap(matrix)
    mig_per_factor = gap / factor_entropy
    scores["mig"] = float(np.mean(mig_per_factor))
    for j, value in enumerate(mig_per_factor):
        scores[f"mig.factor_{j}"] = float(value)
    scores["sap"] = float(np.mean(gap))
    for j, value in enumerate(gap):
        scores[f"sap.factor_{j}"] = float(value)
    scores["modularity"], per_code = modularity_from_mutual_info(matrix)
    for i, value in enumerate(per_code):
        scores[f"modularity.code_{i}"] = float(value)
    scores.update(precision_curve_scores(matrix))
    return scores


def scores_from_matrices(matrices: dict[str, np.ndarray], factors_train: np.ndarray) -> dict[str, float]:
    entropy = discrete_entropy(factors_train)
    out = {}
    for name, matrix in matrices.items():
        out.update({f"{name}.{key}": value for key, value in aggregate(matrix, entropy).items()})
    return out


def check_matrix_names(names: Sequence[str]) -> tuple[str, ...]:
    names = tuple(names)
    unknown = [name for name in names if name not in MATRICES]
    if unknown or not names:
        raise ValueError(f"matrices must be a non-empty list drawn from {list(MATRICES)}, got {list(names)}")
    return names


def _array_matrices(codes_train, factors_train, codes_test, factors_test, num_bins) -> dict[str, Callable]:
    """How each matrix other than the boosted trees' is computed from the arrays."""
    return {
        "mutual_information_matrix": lambda: discrete_mutual_info_matrix(
            histogram_discretize(codes_train, num_bins), factors_train
        ),
        "accuracy_svm_matrix": lambda: sap_score_matrix(codes_train, factors_train, codes_test, factors_test),
    }


def unified_scores(
    codes_train,
    factors_train,
    codes_test,
    factors_test,
    *,
    matrices: Sequence[str] = MATRICES,
    num_bins: int = 20,
    fast: bool = False,
    random_state: int = 0,
    n_jobs: int = 1,
    return_matrices: bool = False,
):
    """The unified scores of every matrix in ``matrices`` (see the module docstring).

    Args:
        codes_train, factors_train: N x d codes and N x K integer factors (study size: 10,000).
        codes_test, factors_test: held-out points (5,000), used by the boosted trees and the SVMs.
        matrices: any of ``importance_gbt_matrix``, ``mutual_information_matrix``, ``accuracy_svm_matrix``.
        num_bins: histogram bins per code for the mutual information matrix (dlib's study: 20).
        fast: binned boosted trees for the importance matrix (see :mod:`untwine.metrics.dci`).
        random_state: seed of the boosted trees' tie-breaking.
        n_jobs: worker processes for the boosted-tree fits; values do not depend on it.
        return_matrices: also return ``{matrix name: (d, K) array}``.

    Returns:
        ``{"<matrix>.<aggregation key>": float}``.
    """
    codes_train, factors_train, codes_test, factors_test = check_train_test(
        codes_train, factors_train, codes_test, factors_test
    )
    names = check_matrix_names(matrices)
    num_bins = check_positive_int(num_bins, "num_bins", minimum=2)
    computed = {}
    if "importance_gbt_matrix" in names:
        results = fit_boosted_trees(
            codes_train,
            factors_train,
            codes_test,
            factors_test,
            fast=fast,
            random_state=random_state,
            n_jobs=n_jobs,
            metric="unified_scores",
        )
        computed["importance_gbt_matrix"] = np.stack([r.importances for r in results], axis=1)
    others = _array_matrices(codes_train, factors_train, codes_test, factors_test, num_bins)
    for name in names:
        if name != "importance_gbt_matrix":
            computed[name] = others[name]()
    computed = {name: computed[name] for name in names}
    scores = scores_from_matrices(computed, factors_train)
    if return_matrices:
        return scores, computed
    return scores


def _plan_fits(params: dict, ctx) -> None:
    if "importance_gbt_matrix" in params["matrices"]:
        # The same keys as DCI's fits on the same points: the runner fits them once for both.
        plan_shared_boosted_trees(SPEC.name, ctx, params["num_train"], params["num_test"])


def _compute(params: dict, ctx) -> MetricOutput:
    codes_train, factors_train, codes_test, factors_test = ctx.split(params["num_train"], params["num_test"])
    names = check_matrix_names(params["matrices"])
    computed, fits = {}, None
    if "importance_gbt_matrix" in names:
        fits = ctx.fit_results(SPEC.name)["all"]
        computed["importance_gbt_matrix"] = np.stack([r.importances for r in fits], axis=1)
    others = _array_matrices(codes_train, factors_train, codes_test, factors_test, params["num_bins"])
    for name in names:
        if name != "importance_gbt_matrix":
            computed[name] = others[name]()
    computed = {name: computed[name] for name in names}
    return MetricOutput(scores_from_matrices(computed, factors_train), computed, fits=fits)


MATRIX_NAMES = Allowed(
    f"a non-empty list drawn from {list(MATRICES)}",
    lambda v: isinstance(v, list | tuple) and len(v) > 0 and all(x in MATRICES for x in v),
)

SPEC = MetricSpec(
    name="unified_scores",
    description="Unified scores: DCI/MIG/SAP/modularity aggregations of the GBT, MI and SVM matrices",
    parameters={
        "num_train": Parameter(10000, POSITIVE_INT, "points of the shared training sample used"),
        "num_test": Parameter(5000, POSITIVE_INT, "points of the shared test sample used"),
        "matrices": Parameter(list(MATRICES), MATRIX_NAMES, "the code-factor matrices to aggregate"),
        "num_bins": Parameter(20, int_at_least(2), "histogram bins per code for the MI matrix"),
    },
    compute=_compute,
    run_order=85,
    aliases=("unified",),
    shared_sample=True,
    plan_fits=_plan_fits,
)
