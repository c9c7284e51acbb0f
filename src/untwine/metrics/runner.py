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

The runner knows no metric by name: each metric's :class:`~untwine.metrics.spec.MetricSpec` (listed in
:mod:`untwine.metrics.registry`) says what it samples, which fits it plans, how it computes and when it
runs.  Metric names are those of disentanglement_lib's metric configs; ``"study"`` is the nine configs of
``unsupervised_study_v1/metric_configs``.  Convergence warnings of each metric's fits are counted into
its result (:mod:`untwine.metrics.fit_warnings`).

Randomness: the shared sample and each dataset-layer metric get their own generator derived from
``seed`` and the name (``default_rng([seed, crc32(name)])``), so adding or removing a metric changes no
other metric's value; the boosted trees' tie-breaking uses ``RandomState(seed)`` streams as documented
in :mod:`untwine.metrics._estimators`.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from untwine.metrics._estimators import FitEngine
from untwine.metrics.context import EvaluationContext, metric_rng
from untwine.metrics.fit_warnings import counting_fit_warnings
from untwine.metrics.output import check_output_dir, write_result
from untwine.metrics.precomputed import PrecomputedCodes
from untwine.metrics.registry import (
    METRICS,
    array_metrics,
    expected_requests,
    resolve_metrics,
    resolve_parameters,
)
from untwine.metrics.representation import CodeCache, CodeSource
from untwine.utils.io import to_jsonable
from untwine.utils.versions import git_commit, library_versions

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


def evaluate_representation(
    dataset,
    representation_fn,
    metrics: str | Sequence[str] = "study",
    seed: int = 0,
    out_dir: str | Path | None = None,
    fast: bool = False,
    *,
    mode: str | None = None,
    deterministic: bool | None = None,
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
        representation_fn: a :class:`~untwine.metrics.precomputed.PrecomputedCodes` (then ``dataset`` may be
            None, and only the metrics of :func:`~untwine.metrics.registry.array_metrics` run), or a
            float32 HWC image batch ``(n, 64, 64, C)`` -> codes ``(n, d)``: any callable,
            a Gaussian encoder (``encode_mean_logvar(images) -> (mean, logvar)``), or a mean/sampled
            representation of :mod:`untwine.training.representation` (see
            :mod:`untwine.metrics.representation` for caching and the sampled representation).
        metrics: ``"study"`` (the nine configs of disentanglement_lib's unsupervised_study_v1),
            ``"fairness_study"`` (study + fairness), ``"all"`` (+ IRS), a metric name, or a list of
            names and presets (aliases such as ``"beta_vae"``, ``"sap"`` accepted; results use the
            canonical names); see :func:`~untwine.metrics.registry.resolve_metrics`.
        seed: seed of every random draw (default 0, like every dlib metric config).
        out_dir: if given, ``out_dir/<metric>.json`` is written atomically as soon as a metric is done; the
            folder is checked before any work (:class:`~untwine.metrics.output.ResultWriteError` if it
            cannot be written, as when a write fails later; results already written stay intact).
        fast: opt-in approximations (binned boosted trees, the logistic regression's C chosen on 1,000
            points, bfloat16 encoding where the representation offers ``reduced_precision()`` and the
            device runs it natively); results are marked ``"mode": "fast"`` and say
            ``"encoder_precision"``.
        mode: ``"mean"`` or ``"sampled"`` codes (default: the representation's ``kind``, else mean).
        deterministic: declare whether the representation returns the same codes for the same images
            (True: the per-image code cache is used; False: never); None (default): its own
            ``deterministic`` attribute, else two encodings of a probe batch decide (see
            :mod:`untwine.metrics.representation`).
        params: per-metric parameter overrides, e.g. ``{"dci": {"num_train": 2000}}``, checked by
            :func:`~untwine.metrics.registry.resolve_parameters` before any work.
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
        (wall time of the metric, including waiting for its share of the parallel fits), ``warnings``
        (``{"ConvergenceWarning": {"count", "first_message"}}`` of its fits, ``{}`` if none),
        ``library_versions``, ``git_commit`` and ``code_cache`` statistics.
    """
    names = resolve_metrics(metrics)
    parameters = resolve_parameters(names, params)
    specs = [METRICS[name] for name in names]
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    # A folder that cannot be written is reported now, not after minutes of fits.
    out_dir = check_output_dir(out_dir) if out_dir is not None else None
    precomputed = isinstance(representation_fn, PrecomputedCodes)
    if precomputed:
        dataset = representation_fn.dataset if dataset is None else dataset
        needs_encoder = [spec.name for spec in specs if not spec.shared_sample or spec.intervenes]
        if needs_encoder:
            raise ValueError(
                f"{', '.join(needs_encoder)} need an encoder (they render images of chosen factors); on "
                f"precomputed codes these metrics run: {', '.join(array_metrics())}"
            )
    engine = FitEngine(n_jobs)
    try:
        if any(spec.fits_classifiers for spec in specs):
            engine.warm_up()  # worker start-up overlaps with sampling and encoding
        versions, commit = library_versions(), git_commit()

        precision = _reduced_precision(representation_fn) if fast else contextlib.nullcontext(None)
        with precision as encoder_precision:
            source = (
                representation_fn
                if precomputed
                else CodeSource(
                    dataset,
                    representation_fn,
                    mode=mode,
                    deterministic=deterministic,
                    batch_size=encode_batch_size,
                    store=code_cache,
                    precision=encoder_precision,
                )
            )
            ctx = EvaluationContext(source=source, engine=engine, seed=int(seed), fast=bool(fast))
            encode_seconds = 0.0
            grid_size = int(np.prod(np.asarray(dataset.factor_sizes, dtype=np.float64)))
            if (
                source.cached
                and expected_requests(names, parameters) >= PRE_ENCODE_DRAWS_PER_IMAGE * grid_size
            ):
                if encode_threads is None:
                    torch = sys.modules.get("torch")
                    encode_threads = max(engine.n_jobs, torch.get_num_threads() if torch is not None else 1)
                start = time.perf_counter()
                source.encode_all(metric_rng(seed, "encode_all"), threads=encode_threads)
                encode_seconds = time.perf_counter() - start

            shared = [spec.name for spec in specs if spec.shared_sample]
            if shared:
                num_train = max(_largest(parameters[n]["num_train"]) for n in shared)
                tests = [parameters[n]["num_test"] for n in shared if "num_test" in parameters[n]]
                ctx.num_test = max(tests) if tests else 1
                start = time.perf_counter()
                rng = metric_rng(seed, "shared_sample")
                ctx.train = source.sample(num_train, rng)
                ctx.test = source.sample(ctx.num_test, rng)
                ctx.sample_seconds = time.perf_counter() - start
            for spec in specs:
                if spec.plan_fits is not None:
                    spec.plan_fits(parameters[spec.name], ctx)
            engine.start()

            results: dict[str, dict[str, Any]] = {}
            for spec in sorted(specs, key=lambda spec: spec.run_order):
                name = spec.name
                start = time.perf_counter()
                with counting_fit_warnings() as fit_warnings:
                    output = spec.compute(parameters[name], ctx)
                extra: dict[str, Any] = {}
                if output.fits is not None:
                    extra["fit_cpu_seconds"] = float(sum(fit.cpu_seconds for fit in output.fits))
                    for fit in output.fits:
                        fit_warnings.merge(fit.warnings)
                result = {
                    "metric": name,
                    "values": to_jsonable(output.values),
                    "matrices": to_jsonable(output.matrices),
                    "parameters": to_jsonable(parameters[name]),
                    "seed": int(seed),
                    "mode": "fast" if fast else "faithful",
                    "representation": source.mode,
                    "dataset": getattr(dataset, "name", type(dataset).__name__),
                    "seconds": time.perf_counter() - start,
                    **extra,
                    "warnings": fit_warnings.as_record(),
                    "shared_sample_seconds": ctx.sample_seconds if name in shared else 0.0,
                    "grid_encode_seconds": encode_seconds,
                    "encoder_precision": encoder_precision or "as given",
                    "code_cache": source.stats(),
                    "library_versions": versions,
                    "git_commit": commit,
                }
                results[name] = result
                if out_dir is not None:
                    write_result(out_dir / f"{name}.json", result)
                if progress is not None:
                    progress(name, result)
            return {name: results[name] for name in names}
    except KeyboardInterrupt:
        # The running fits are lost either way; without this, workers that ignore SIGINT would go on
        # fitting for minutes, and the interpreter would wait for them at exit.
        engine.terminate()
        raise
