"""Disentanglement metrics, faithful to disentanglement_lib's definitions and study defaults.

Two layers (docs/metrics.md lists every metric, its parameters, keys and differences from dlib):

* **Array layer** -- plain functions of codes ``(N, d)`` and integer factors ``(N, K)``, with train/test
  arrays where the metric uses a split, returning dicts with dlib's result keys; ``return_matrices=True``
  also returns the matrices behind the score (MI matrix, DCI importance matrix, ...):
  :func:`mig`, :func:`dci`, :func:`sap`, :func:`modularity_explicitness`, :func:`irs`,
  :func:`unsupervised_scores`, :func:`downstream_task`, :func:`unified_scores`, :func:`reduced_downstream_task`, :func:`udr`, :func:`mutual_info_matrix`.
* **Dataset layer** -- ``metric(dataset, representation_fn, rng, **params)`` for the scores that sample
  or intervene on factors: :func:`beta_vae_score`, :func:`factor_vae_score`, :func:`fairness`, :func:`strong_downstream_task`,
  :func:`udr_score`; and the runner :func:`evaluate_representation`, which samples shared train/test
  codes once (encoding each distinct image once) and writes one JSON per metric.

Each metric module declares a :class:`~untwine.metrics.spec.MetricSpec` (``SPEC``);
:mod:`untwine.metrics.registry` lists them (:data:`METRICS`, :data:`PRESETS`) and resolves names,
aliases, presets and parameters (:func:`resolve_metrics`, :func:`resolve_parameters`).
"""

from untwine.metrics.beta_vae import beta_vae_score
from untwine.metrics.continuous import dci_regression, mig_continuous
from untwine.metrics.dci import completeness, dci, disentanglement
from untwine.metrics.downstream import downstream_task
from untwine.metrics.factor_vae import factor_vae_score
from untwine.metrics.fairness import fairness
from untwine.metrics.information import (
    discrete_entropy,
    discrete_mutual_info,
    histogram_discretize,
    mutual_info_matrix,
)
from untwine.metrics.irs import irs
from untwine.metrics.mig import mig
from untwine.metrics.modularity_explicitness import modularity_explicitness
from untwine.metrics.output import ResultWriteError
from untwine.metrics.reduced_downstream import reduced_downstream_task
from untwine.metrics.registry import METRICS, PRESETS, resolve_metrics, resolve_parameters
from untwine.metrics.representation import CodeCache, CodeSource
from untwine.metrics.runner import evaluate_representation
from untwine.metrics.sap import sap
from untwine.metrics.spec import MetricSpec
from untwine.metrics.strong_downstream import strong_downstream_task
from untwine.metrics.udr import udr, udr_score
from untwine.metrics.unified_scores import unified_scores
from untwine.metrics.unsupervised import (
    gaussian_total_correlation,
    gaussian_wasserstein_correlation,
    unsupervised_scores,
)

__all__ = [
    "METRICS",
    "PRESETS",
    "MetricSpec",
    "ResultWriteError",
    "CodeCache",
    "CodeSource",
    "beta_vae_score",
    "completeness",
    "dci",
    "dci_regression",
    "disentanglement",
    "discrete_entropy",
    "discrete_mutual_info",
    "downstream_task",
    "evaluate_representation",
    "factor_vae_score",
    "fairness",
    "gaussian_total_correlation",
    "gaussian_wasserstein_correlation",
    "histogram_discretize",
    "irs",
    "mig",
    "mig_continuous",
    "modularity_explicitness",
    "mutual_info_matrix",
    "reduced_downstream_task",
    "resolve_metrics",
    "resolve_parameters",
    "sap",
    "strong_downstream_task",
    "udr",
    "udr_score",
    "unified_scores",
    "unsupervised_scores",
]
