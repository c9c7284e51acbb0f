"""The table of metrics: every :class:`~untwine.metrics.spec.MetricSpec`, the presets, and the one place
where metric names, aliases, presets and parameters are resolved and checked.

Adding a metric: write its module with a ``SPEC`` (see :mod:`untwine.metrics.spec`) and list it in
:data:`SPECS`.
"""

from __future__ import annotations

from collections.abc import Sequence

# Each module's SPEC by module path: the package namespace binds several module names (mig, dci, ...)
# to the metric functions.
from untwine.metrics.beta_vae import SPEC as BETA_VAE
from untwine.metrics.continuous import DCI_REGRESSION_SPEC, MIG_CONTINUOUS_SPEC, SAP_CONTINUOUS_SPEC
from untwine.metrics.dci import SPEC as DCI
from untwine.metrics.downstream import BOOSTED_TREES_SPEC, LOGISTIC_REGRESSION_SPEC
from untwine.metrics.factor_vae import SPEC as FACTOR_VAE
from untwine.metrics.fairness import SPEC as FAIRNESS
from untwine.metrics.irs import SPEC as IRS
from untwine.metrics.mig import SPEC as MIG
from untwine.metrics.modularity_explicitness import SPEC as MODULARITY_EXPLICITNESS
from untwine.metrics.reduced_downstream import SPEC as REDUCED_DOWNSTREAM
from untwine.metrics.sap import SPEC as SAP
from untwine.metrics.spec import MetricSpec
from untwine.metrics.strong_downstream import SPEC as STRONG_DOWNSTREAM
from untwine.metrics.unified_scores import SPEC as UNIFIED_SCORES
from untwine.metrics.unsupervised import SPEC as UNSUPERVISED

SPECS: tuple[MetricSpec, ...] = (
    BETA_VAE,
    FACTOR_VAE,
    MIG,
    DCI,
    MODULARITY_EXPLICITNESS,
    SAP,
    UNSUPERVISED,
    LOGISTIC_REGRESSION_SPEC,
    BOOSTED_TREES_SPEC,
    IRS,
    FAIRNESS,
    UNIFIED_SCORES,
    REDUCED_DOWNSTREAM,
    STRONG_DOWNSTREAM,
    MIG_CONTINUOUS_SPEC,
    SAP_CONTINUOUS_SPEC,
    DCI_REGRESSION_SPEC,
)
METRICS: dict[str, MetricSpec] = {spec.name: spec for spec in SPECS}

STUDY = (
    "beta_vae_sklearn",
    "factor_vae_metric",
    "mig",
    "dci",
    "modularity_explicitness",
    "sap_score",
    "unsupervised",
    "downstream_task_logistic_regression",
    "downstream_task_boosted_trees",
)
PRESETS: dict[str, tuple[str, ...]] = {
    "study": STUDY,  # disentanglement_lib's unsupervised_study_v1 metric configs
    "fairness_study": (*STUDY, "fairness"),  # fairness_study_v1 metric configs
    "all": (
        *STUDY,
        "fairness",
        "irs",
        "unified_scores",
        "reduced_downstream_task",
        "strong_downstream_task",
        "mig_continuous",
        "sap_continuous",
        "dci_regression",
    ),
    # the continuous-factor variants (factor indices read as numbers)
    "continuous": ("mig_continuous", "sap_continuous", "dci_regression"),
}
ALIASES: dict[str, str] = {alias: spec.name for spec in SPECS for alias in spec.aliases}


def _check_table() -> None:
    names = [spec.name for spec in SPECS] + list(ALIASES) + list(PRESETS)
    if len(set(names)) != len(names):
        raise RuntimeError("metric names, aliases and presets must all differ")
    orders = [spec.run_order for spec in SPECS]
    if len(set(orders)) != len(orders):
        raise RuntimeError("every metric needs its own run_order")


_check_table()


def resolve_metrics(metrics: str | Sequence[str]) -> list[str]:
    """Canonical metric names, in the given order without repeats.

    ``metrics``: a preset (``"study"``, ``"fairness_study"``, ``"all"``), a metric name or alias, or a
    list of them (presets expand in place, e.g. ``["study", "irs"]``).
    """
    items = [metrics] if isinstance(metrics, str) else list(metrics)
    names: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise ValueError(f"metric names must be strings, got {item!r}")
        if item in PRESETS:
            expanded = PRESETS[item]
        elif item in METRICS or item in ALIASES:
            expanded = (ALIASES.get(item, item),)
        else:
            raise ValueError(
                f"unknown metric {item!r}; known metrics: {', '.join(METRICS)}; "
                f"aliases: {', '.join(ALIASES)}; presets: {', '.join(PRESETS)}"
            )
        names += [name for name in expanded if name not in names]
    if not names:
        raise ValueError("metrics is empty; name a preset or at least one metric")
    return names


def resolve_parameters(names: Sequence[str], params: dict | None) -> dict[str, dict]:
    """Each metric's parameters: its defaults with ``params[metric]`` (or an alias's) applied.

    ``names`` as :func:`resolve_metrics` accepts them.  Unknown parameters, values a parameter does not
    allow, and metrics in ``params`` that are not evaluated are errors naming them.
    """
    params = dict(params or {})
    out = {}
    for name in resolve_metrics(names):
        spec = METRICS[name]
        given = {}
        for key in [name, *spec.aliases]:
            value = params.pop(key, None) or {}
            if not isinstance(value, dict):
                raise ValueError(f"params[{key!r}] must be a dict of parameter values, got {value!r}")
            given.update(value)
        out[name] = spec.check_parameters(given)
    if params:
        raise ValueError(f"params names metrics that are not evaluated: {sorted(params)}")
    return out


def with_num_train(name: str, parameters: dict, num_train: int) -> dict:
    """``parameters`` of metric ``name`` with its training-sample size set to ``num_train`` (a list-valued
    ``num_train`` -- the downstream tasks' sizes -- becomes ``[num_train]``), as disentanglement_lib's
    ``dlib_reproduce_jmlr`` binds ``<metric>.num_train``; a metric without one is an error."""
    spec = METRICS[ALIASES.get(name, name)]
    if "num_train" not in spec.parameters:
        with_size = [s.name for s in SPECS if "num_train" in s.parameters]
        raise ValueError(
            f"{spec.name} has no training-sample size to vary (num_train); metrics that have one: "
            f"{', '.join(with_size)}"
        )
    value = [int(num_train)] if isinstance(spec.parameters["num_train"].default, list) else int(num_train)
    return spec.check_parameters({**parameters, "num_train": value})


def array_metrics() -> list[str]:
    """The metrics that run on a sample of codes alone (precomputed codes): they neither draw their own
    batches of images nor intervene on factors."""
    return [spec.name for spec in SPECS if spec.shared_sample and not spec.intervenes]


def expected_requests(names: Sequence[str], parameters: dict[str, dict]) -> int:
    """Images the metrics' own dataset-layer draws will request (BetaVAE's and FactorVAE's dominate)."""
    return sum(METRICS[name].requested_images(parameters[name]) for name in names)
