"""Score one representation on one dataset with a set of metrics: :func:`evaluate_representation`.

The runner samples what the metrics share once, encodes each distinct image at most once, fits each
classifier once, and runs the expensive fits in parallel:

* One shared sample of ``num_train`` training and ``num_test`` test points (the largest sizes any
  requested metric asks for) feeds all array-layer metrics (MIG, DCI, SAP, modularity/explicitness,
  unsupervised, IRS, downstream tasks), each taking a prefix of the size it needs -- disentanglement_lib
  did the same implicitly (every metric started from ``RandomState(0)`` and drew identical points).
* Codes come from one :class:`~untwine.metrics.representation.CodeSource`: on a deterministic dataset
  every distinct image is rendered and encoded once for the whole evaluation (shared sample,
  BetaVAE/FactorVAE batches and fairness interventions alike).
* Every classifier fit is a keyed task: the 10,000-point boosted trees of DCI, of the downstream task
  and of fairness are the same fits and run once.  All fits start together in ``n_jobs`` worker
  processes (largest first) while the main process computes the cheap metrics.

Metric names are those of disentanglement_lib's metric configs; ``"study"`` is the nine configs of
``unsupervised_study_v1/metric_configs``.  Randomness: the shared sample and each dataset-layer metric
get their own generator derived from ``seed`` and the name (``default_rng([seed, crc32(name)])``), so
adding or removing a metric changes no other metric's value; the boosted trees' tie-breaking uses
``RandomState(seed)`` streams as documented in :mod:`untwine.metrics._estimators`.
"""

from __future__ import annotations

import contextlib
import sys
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from untwine.metrics import downstream as _downstream
from untwine.metrics._estimators import FitEngine
from untwine.metrics.beta_vae import beta_vae_score
from untwine.metrics.dci import boosted_tree_tasks, dci_from_results
from untwine.metrics.factor_vae import factor_vae_score
from untwine.metrics.fairness import fairness_from_models
from untwine.metrics.irs import irs
from untwine.metrics.mig import mig
from untwine.metrics.modularity_explicitness import modularity_explicitness
from untwine.metrics.representation import CodeCache, CodeSource
from untwine.metrics.sap import sap
from untwine.metrics.unsupervised import unsupervised_scores
from untwine.utils.io import atomic_write_json, to_jsonable
from untwine.utils.versions import git_commit, library_versions

STUDY_SIZES = list(_downstream.STUDY_SIZES)


@dataclass(frozen=True)
class MetricSpec:
    name: str
    defaults: dict
    uses_shared_sample: bool
    aliases: tuple[str, ...] = ()
    description: str = ""


METRICS: dict[str, MetricSpec] = {
    spec.name: spec
    for spec in (
        MetricSpec(
            "beta_vae_sklearn",
            {"batch_size": 64, "num_train": 10000, "num_eval": 5000},
            False,
            ("beta_vae",),
            "BetaVAE score",
        ),
        MetricSpec(
            "factor_vae_metric",
            {
                "batch_size": 64,
                "num_train": 10000,
                "num_eval": 5000,
                "num_variance_estimate": 10000,
                "prune_threshold": 0.05,
            },
            False,
            ("factor_vae",),
            "FactorVAE score",
        ),
        MetricSpec("mig", {"num_train": 10000, "num_bins": 20}, True, (), "Mutual Information Gap"),
        MetricSpec("dci", {"num_train": 10000, "num_test": 5000}, True, (), "DCI disentanglement"),
        MetricSpec(
            "modularity_explicitness",
            {"num_train": 10000, "num_test": 5000, "num_bins": 20},
            True,
            ("modularity",),
            "Modularity and explicitness",
        ),
        MetricSpec(
            "sap_score",
            {"num_train": 10000, "num_test": 5000, "continuous_factors": False},
            True,
            ("sap",),
            "SAP score",
        ),
        MetricSpec("unsupervised", {"num_train": 10000, "num_bins": 20}, True, (), "Unsupervised scores"),
        MetricSpec(
            "downstream_task_logistic_regression",
            {"num_train": STUDY_SIZES, "num_test": 5000},
            True,
            ("downstream_logistic_regression",),
            "Downstream task, logistic regression",
        ),
        MetricSpec(
            "downstream_task_boosted_trees",
            {"num_train": STUDY_SIZES, "num_test": 5000},
            True,
            ("downstream_boosted_trees",),
            "Downstream task, gradient-boosted trees",
        ),
        MetricSpec(
            "irs",
            {"num_train": 10000, "num_bins": 20, "diff_quantile": 0.99},
            True,
            (),
            "Interventional robustness score",
        ),
        MetricSpec(
            "fairness",
            {"num_train": 10000, "num_test_points_per_class": 100},
            False,
            (),
            "Fairness of downstream classifiers",
        ),
    )
}

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
    "all": (*STUDY, "fairness", "irs"),
}
_ALIASES = {alias: spec.name for spec in METRICS.values() for alias in spec.aliases}
# Cheap metrics first: they run in the main process while the workers fit the classifiers.
_ORDER = (
    "mig",
    "unsupervised",
    "irs",
    "sap_score",
    "modularity_explicitness",
    "factor_vae_metric",
    "beta_vae_sklearn",
    "dci",
    "downstream_task_boosted_trees",
    "downstream_task_logistic_regression",
    "fairness",
)


def resolve_metrics(metrics: str | Sequence[str]) -> list[str]:
    """Preset name or list of metric names (aliases allowed) -> canonical names, in the given order."""
    if isinstance(metrics, str):
        if metrics in PRESETS:
            return list(PRESETS[metrics])
        metrics = [metrics]
    names = []
    for name in metrics:
        canonical = name if name in METRICS else _ALIASES.get(name)
        if canonical is None:
            raise ValueError(
                f"unknown metric {name!r}; known metrics: {', '.join(METRICS)}; presets: {', '.join(PRESETS)}"
            )
        if canonical not in names:
            names.append(canonical)
    if not names:
        raise ValueError("metrics is empty")
    return names


def metric_rng(seed: int, name: str) -> np.random.Generator:
    """The generator of one metric (or of the shared sample): independent of the other metrics."""
    return np.random.default_rng([int(seed), zlib.crc32(name.encode())])


def expected_requests(names: list[str], parameters: dict[str, dict]) -> int:
    """Images the BetaVAE and FactorVAE scores will ask for (they dominate every other metric's)."""
    total = 0
    for name in names:
        p = parameters[name]
        if name == "beta_vae_sklearn":
            total += (p["num_train"] + p["num_eval"]) * p["batch_size"] * 2
        elif name == "factor_vae_metric":
            total += p["num_variance_estimate"] + (p["num_train"] + p["num_eval"]) * p["batch_size"]
    return total


# Encode the whole factor grid up front when the metrics will draw at least this many images per grid
# point: uniform draws then touch 1 - exp(-2) = 86% of the grid or more anyway.
PRE_ENCODE_DRAWS_PER_IMAGE = 2.0


def _reduced_precision(representation_fn):
    """Fast mode: the representation's ``reduced_precision()`` context (bfloat16 encoding where the
    device runs it natively; :class:`untwine.training.representation.Encoder` offers it), if any."""
    for owner in (representation_fn, getattr(representation_fn, "encoder", None)):
        method = getattr(owner, "reduced_precision", None)
        if callable(method):
            return method()
    return contextlib.nullcontext(None)


def _largest(value) -> int:
    return max(value) if isinstance(value, list | tuple) else int(value)


@dataclass
class _Context:
    source: CodeSource
    engine: FitEngine
    seed: int
    fast: bool
    num_test: int = 0
    train: tuple[np.ndarray, np.ndarray] | None = None  # (factors, codes)
    test: tuple[np.ndarray, np.ndarray] | None = None
    sample_seconds: float = 0.0
    tasks: dict = field(default_factory=dict)  # metric -> {size or "all": [keys]}

    def split(self, num_train: int, num_test: int | None = None):
        factors, codes = self.train
        out = [codes[:num_train], factors[:num_train]]
        if num_test is not None:
            test_factors, test_codes = self.test
            out += [test_codes[:num_test], test_factors[:num_test]]
        return out


def _fits_classifiers(name: str) -> bool:
    """Whether the metric's classifiers run on the fit engine (see :func:`_plan_fits`)."""
    return name in ("dci", "fairness") or name.startswith("downstream_task_")


def _plan_fits(name: str, params: dict, ctx: _Context) -> None:
    """Queue the classifier fits of one metric on the engine (keys shared between metrics)."""
    if name in ("dci", "fairness"):
        num_test = params.get("num_test", ctx.num_test)
        codes, factors, test_codes, test_factors = ctx.split(params["num_train"], num_test)
        # The data key names the data: a prefix of the shared training sample (the size is part of the
        # task key) and the first num_test shared test points.
        tasks = boosted_tree_tasks(
            codes,
            factors,
            test_codes,
            test_factors,
            fast=ctx.fast,
            random_state=ctx.seed,
            data_key=("shared", num_test),
        )
        ctx.tasks[name] = {"all": [key for key, _ in tasks]}
    elif name.startswith("downstream_task_"):
        predictor = name[len("downstream_task_") :]
        sizes = tuple(params["num_train"])
        codes, factors, test_codes, test_factors = ctx.split(max(sizes), params["num_test"])
        sizes = _downstream.check_downstream_sizes(sizes, predictor, codes.shape[0])
        per_size = _downstream.downstream_tasks(
            codes,
            factors,
            test_codes,
            test_factors,
            predictor=predictor,
            sizes=sizes,
            fast=ctx.fast,
            random_state=ctx.seed,
            data_key=("shared", params["num_test"]),
            fresh_stream_sizes={max(sizes)},
        )
        tasks = [item for items in per_size.values() for item in items]
        ctx.tasks[name] = {n: [key for key, _ in items] for n, items in per_size.items()}
    else:
        return
    for key, task in tasks:
        ctx.engine.add(key, task)


def _fit_cpu_seconds(results) -> float:
    return float(sum(r.cpu_seconds for r in results))


def _compute(name: str, params: dict, ctx: _Context) -> tuple[dict, dict, dict]:
    """(values, matrices, extra) of one metric."""
    extra: dict[str, Any] = {}
    if name == "mig":
        values, matrices = mig(
            *ctx.split(params["num_train"]), num_bins=params["num_bins"], return_matrices=True
        )
    elif name == "unsupervised":
        values, matrices = unsupervised_scores(
            ctx.split(params["num_train"])[0], num_bins=params["num_bins"], return_matrices=True
        )
    elif name == "irs":
        values, matrices = irs(
            *ctx.split(params["num_train"]),
            num_bins=params["num_bins"],
            diff_quantile=params["diff_quantile"],
            return_matrices=True,
        )
    elif name == "sap_score":
        values, matrices = sap(
            *ctx.split(params["num_train"], params["num_test"]),
            continuous_factors=params["continuous_factors"],
            random_state=ctx.seed,
            return_matrices=True,
        )
    elif name == "modularity_explicitness":
        values, matrices = modularity_explicitness(
            *ctx.split(params["num_train"], params["num_test"]),
            num_bins=params["num_bins"],
            return_matrices=True,
        )
    elif name == "beta_vae_sklearn":
        values, matrices = (
            beta_vae_score(ctx.source.dataset, ctx.source, metric_rng(ctx.seed, name), **params),
            {},
        )
    elif name == "factor_vae_metric":
        values, matrices = factor_vae_score(
            ctx.source.dataset, ctx.source, metric_rng(ctx.seed, name), return_matrices=True, **params
        )
    elif name == "dci":
        results = ctx.engine.results(ctx.tasks[name]["all"])
        values, matrices = dci_from_results(results)
        extra["fit_cpu_seconds"] = _fit_cpu_seconds(results)
    elif name.startswith("downstream_task_"):
        per_size = {n: ctx.engine.results(keys) for n, keys in ctx.tasks[name].items()}
        values, matrices = _downstream.downstream_from_results(per_size), {}
        extra["fit_cpu_seconds"] = _fit_cpu_seconds(r for rs in per_size.values() for r in rs)
    elif name == "fairness":
        results = ctx.engine.results(ctx.tasks[name]["all"])
        values, matrices = fairness_from_models(
            ctx.source,
            [r.model for r in results],
            params["num_test_points_per_class"],
            metric_rng(ctx.seed, name),
        )
        extra["fit_cpu_seconds"] = _fit_cpu_seconds(results)
    else:  # pragma: no cover - resolve_metrics guards this
        raise ValueError(name)
    return values, matrices, extra


def resolve_parameters(names: list[str], params: dict | None) -> dict[str, dict]:
    """Each metric's parameters: its defaults with ``params[metric]`` (or an alias's) applied; unknown
    keys and metrics that are not evaluated are errors naming them."""
    params = dict(params or {})
    out = {}
    for name in names:
        spec = METRICS[name]
        given = {}
        for key in [name, *spec.aliases]:
            given.update(params.pop(key, {}) or {})
        unknown = set(given) - set(spec.defaults)
        if unknown:
            raise ValueError(
                f"params[{name!r}] has unknown parameters {sorted(unknown)}; known: {sorted(spec.defaults)}"
            )
        merged = {**spec.defaults, **given}
        if isinstance(merged.get("num_train"), tuple):
            merged["num_train"] = list(merged["num_train"])
        out[name] = merged
    if params:
        raise ValueError(f"params names metrics that are not evaluated: {sorted(params)}")
    return out


def evaluate_representation(
    dataset,
    representation_fn,
    metrics: str | Sequence[str] = "study",
    seed: int = 0,
    out_dir: str | Path | None = None,
    fast: bool = False,
    *,
    mode: str | None = None,
    stochastic: bool = False,
    params: dict[str, dict] | None = None,
    n_jobs: int = 2,
    encode_batch_size: int = 256,
    encode_threads: int | None = None,
    code_cache: CodeCache | None = None,
    progress: Callable[[str, dict], None] | None = None,
) -> dict[str, dict[str, Any]]:
    """Score ``representation_fn`` on ``dataset`` with ``metrics``; one result (and JSON file) per metric.

    Args:
        dataset: a :class:`~untwine.data.base.GroundTruthDataset`.
        representation_fn: float32 HWC image batch ``(n, 64, 64, C)`` -> codes ``(n, d)``: any callable,
            a Gaussian encoder (``encode_mean_logvar(images) -> (mean, logvar)``), or a mean/sampled
            representation of :mod:`untwine.training.representation` (see
            :mod:`untwine.metrics.representation` for caching and the sampled representation).
        metrics: ``"study"`` (the nine configs of disentanglement_lib's unsupervised_study_v1),
            ``"fairness_study"`` (study + fairness), ``"all"`` (+ IRS), or a list of names from
            :data:`METRICS` (aliases such as ``"beta_vae"``, ``"sap"`` accepted; results use the
            canonical names).
        seed: seed of every random draw (default 0, like every dlib metric config).
        out_dir: if given, ``out_dir/<metric>.json`` is written atomically as soon as a metric is done.
        fast: opt-in approximations (binned boosted trees, the logistic regression's C chosen on 1,000
            points, bfloat16 encoding where the representation offers ``reduced_precision()`` and the
            device runs it natively); results are marked ``"mode": "fast"`` and say
            ``"encoder_precision"``.
        mode: ``"mean"`` or ``"sampled"`` codes (default: the representation's ``kind``, else mean).
        stochastic: declare a plain callable random, which disables the per-image code cache.
        params: per-metric parameter overrides, e.g. ``{"dci": {"num_train": 2000}}``.
        n_jobs: worker processes for classifier fits (default 2; -1: all cores; 1: in-process).
            Values do not depend on it.
        encode_batch_size: images per call of the representation (values do not depend on it).
        encode_threads: torch threads while the whole factor grid is encoded up front, before any fit
            runs (done when the metrics will draw at least twice as many images as the grid holds and
            the code cache applies); default: ``n_jobs`` or the current torch thread count if larger.
        code_cache: a :class:`~untwine.metrics.representation.CodeCache` shared with other evaluations
            of the same encoder on the same dataset (e.g. its mean and sampled representation), so the
            images are encoded once for all of them.
        progress: optional callback ``progress(metric_name, result)`` after each metric.

    Returns:
        ``{metric: result}`` in the requested order; ``result`` holds ``values`` (dlib's keys),
        ``matrices`` (e.g. the MI matrix of MIG, the importance matrix of DCI), ``parameters``, ``seed``,
        ``mode`` ("faithful"/"fast"), ``representation`` ("mean"/"sampled"), ``dataset``, ``seconds``
        (wall time of the metric, including waiting for its share of the parallel fits),
        ``library_versions``, ``git_commit`` and ``code_cache`` statistics.
    """
    names = resolve_metrics(metrics)
    parameters = resolve_parameters(names, params)
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    engine = FitEngine(n_jobs)
    if any(_fits_classifiers(name) for name in names):
        engine.warm_up()  # worker start-up overlaps with sampling and encoding
    out_dir = Path(out_dir) if out_dir is not None else None
    versions, commit = library_versions(), git_commit()

    precision = _reduced_precision(representation_fn) if fast else contextlib.nullcontext(None)
    with precision as encoder_precision:
        source = CodeSource(
            dataset,
            representation_fn,
            mode=mode,
            stochastic=stochastic,
            batch_size=encode_batch_size,
            store=code_cache,
            precision=encoder_precision,
        )
        ctx = _Context(source=source, engine=engine, seed=int(seed), fast=bool(fast))
        encode_seconds = 0.0
        grid_size = int(np.prod(np.asarray(dataset.factor_sizes, dtype=np.float64)))
        if source.cached and expected_requests(names, parameters) >= PRE_ENCODE_DRAWS_PER_IMAGE * grid_size:
            if encode_threads is None:
                torch = sys.modules.get("torch")
                encode_threads = max(engine.n_jobs, torch.get_num_threads() if torch is not None else 1)
            start = time.perf_counter()
            source.encode_all(metric_rng(seed, "encode_all"), threads=encode_threads)
            encode_seconds = time.perf_counter() - start

        shared = [n for n in names if METRICS[n].uses_shared_sample or n == "fairness"]
        if shared:
            num_train = max(_largest(parameters[n]["num_train"]) for n in shared)
            tests = [parameters[n]["num_test"] for n in shared if "num_test" in parameters[n]]
            ctx.num_test = max(tests) if tests else 1
            start = time.perf_counter()
            rng = metric_rng(seed, "shared_sample")
            ctx.train = source.sample(num_train, rng)
            ctx.test = source.sample(ctx.num_test, rng)
            ctx.sample_seconds = time.perf_counter() - start
        for name in names:
            _plan_fits(name, parameters[name], ctx)
        engine.start()

        results: dict[str, dict[str, Any]] = {}
        for name in sorted(names, key=_ORDER.index):
            start = time.perf_counter()
            values, matrices, extra = _compute(name, parameters[name], ctx)
            result = {
                "metric": name,
                "values": to_jsonable(values),
                "matrices": to_jsonable(matrices),
                "parameters": to_jsonable(parameters[name]),
                "seed": int(seed),
                "mode": "fast" if fast else "faithful",
                "representation": source.mode,
                "dataset": getattr(dataset, "name", type(dataset).__name__),
                "seconds": time.perf_counter() - start,
                **extra,
                "shared_sample_seconds": ctx.sample_seconds if name in shared else 0.0,
                "grid_encode_seconds": encode_seconds,
                "encoder_precision": encoder_precision or "as given",
                "code_cache": source.stats(),
                "library_versions": versions,
                "git_commit": commit,
            }
            results[name] = result
            if out_dir is not None:
                atomic_write_json(out_dir / f"{name}.json", result)
            if progress is not None:
                progress(name, result)
        return {name: results[name] for name in names}
