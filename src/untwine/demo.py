"""The main job end to end on built-in data: ``make demo`` runs ``python -m untwine.demo``.

1. Data: an overview grid (samples + one traversal row per factor) of the built-in datasets.
2. Train a β-VAE and a β-TCVAE on ``procedural_dsprites``, in parallel (one process per model).
3. Evaluate each with the study metric set, in fast mode and with the demo's smaller samples for the
   BetaVAE and FactorVAE scores (the reports list every parameter that differs from the study's).
4. Visualise: traversals, GIFs, curves, metrics, and one HTML report per run.

CPU-sized settings by default (see ``--help`` and the README for the full-length study settings):
1,800 steps of batch 32 at learning rate 1e-3 (the study: 300,000 steps of batch 64 at 1e-4), so that
position and scale separate within minutes; bf16 autocast where the CPU computes bfloat16 natively.
The library's defaults stay the study's; only this demo passes smaller sizes.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

DEMO_MODELS = {
    # name: overrides.  β=4 as in Higgins et al.'s dSprites experiments; β-TCVAE with β=6, in the middle
    # of the study's range.  (The AnnealedVAE was the second model until 2026-12-03: with γ=1000 its loss
    # is too sharp for this short, high-learning-rate run at batch 32 -- its reconstructions stalled.)
    "beta_vae": ["model=beta_vae", "model.beta=4"],
    "beta_tc_vae": ["model=beta_tc_vae", "model.beta=6"],
}
# The demo's evaluation samples, smaller than the study's where the time goes: the BetaVAE and
# FactorVAE scores (at the study's sizes they encode 2.9 million images).  Their values move by a few
# points at these sizes; every report lists the settings that differ.  DCI keeps the study's sizes: the
# downstream task's 10,000-point boosted trees are DCI's own fits, shared, so shrinking DCI costs time.
DEMO_METRIC_PARAMS = {
    "beta_vae_sklearn": {"num_train": 250, "num_eval": 125},
    "factor_vae_metric": {"num_train": 250, "num_eval": 125, "num_variance_estimate": 2000},
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m untwine.demo",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", type=Path, default=Path("demo_output"))
    parser.add_argument("--steps", type=int, default=1800, help="training steps per model (default 1800)")
    parser.add_argument(
        "--batch-size", type=int, default=32, help="images per step (default 32; the study's 64)"
    )
    parser.add_argument("--learning-rate", type=float, default=1e-3, help="default 1e-3 (the study's 1e-4)")
    parser.add_argument(
        "--models", default=",".join(DEMO_MODELS), help="comma-separated subset of beta_vae,beta_tc_vae"
    )
    parser.add_argument("--metrics", default="study", help="metric preset or list (default: study)")
    parser.add_argument(
        "--faithful",
        action="store_true",
        help="score with the faithful (reference-equal) metrics at the study's sample sizes",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--workers",
        type=int,
        default=0,
        help="models trained at once (default: one per core, at most one per model)",
    )
    return parser.parse_args(argv)


def native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AMX or AVX512-BF16; Linux's /proc/cpuinfo flags).
    Elsewhere bf16 autocast is emulated and slower than float32, so the demo stays in float32."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(flag in flags.split() for flag in ("amx_bf16", "avx512_bf16"))


def train_one(overrides: list[str], run_dir: str) -> str:
    """Train (or continue) one demo run; runs in a worker process."""
    from untwine.training import TrainConfig, train

    if (Path(run_dir) / "config.json").exists():
        train(None, run_dir, resume=True)  # a re-run continues (or finds the run finished)
    else:
        train(TrainConfig.from_overrides(overrides), run_dir)
    return run_dir


def evaluate_one(run_dir: str, metrics, seed: int, fast: bool, params) -> list[str]:
    """Score one run (mean representation); returns printable lines."""
    from untwine.studies.pipeline import evaluate_run, headline

    results = evaluate_run(run_dir, metrics=metrics, seed=seed, fast=fast, params=params, n_jobs=1)
    return [f"      {metric:36s} {headline(result.get('values', {}))}" for metric, result in results.items()]


def report_one(run_dir: str) -> str:
    from untwine.report import write_run_report

    return str(write_run_report(run_dir))


def _stage(pool, label: str, calls) -> list:
    """Run ``calls`` (function, args) on the pool with one progress bar; results in order."""
    from tqdm.auto import tqdm

    futures = [pool.submit(function, *args) for function, args in calls]
    with tqdm(total=len(futures), desc=label, unit="model") as bar:
        for future in futures:
            future.result()
            bar.update(1)
    return [future.result() for future in futures]


def main(argv=None) -> int:
    args = parse_args(argv)
    from untwine.data import get_dataset
    from untwine.utils.workers import worker_pool
    from untwine.visualisation.images import dataset_overview, save_png

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    names = args.models.split(",")
    for name in names:
        if name not in DEMO_MODELS:
            raise SystemExit(f"unknown demo model {name!r}; choose from {', '.join(DEMO_MODELS)}")
    cores = os.cpu_count() or 1
    workers = args.workers or max(1, min(len(names), cores))
    threads = max(1, cores // workers)
    print(f"[1/4] data overviews -> {out}")
    for dataset in ("procedural_dsprites", "procedural_shapes3d"):
        save_png(out / f"data_{dataset}.png", dataset_overview(get_dataset(dataset), args.seed))

    bf16 = native_bf16()
    runs = []
    for name in names:
        overrides = [
            *DEMO_MODELS[name],
            "dataset=procedural_dsprites",
            f"steps={args.steps}",
            f"batch_size={args.batch_size}",
            f"learning_rate={args.learning_rate}",
            f"seed={args.seed}",
            f"threads={threads}",
            f"bf16={'true' if bf16 else 'false'}",
            "progress=false",
            f"checkpoint_every={max(args.steps // 4, 1)}",
            f"log_every={max(args.steps // 60, 1)}",
        ]
        runs.append((overrides, str(out / "runs" / name)))

    metrics = args.metrics if args.metrics in ("study", "all") else args.metrics.split(",")
    params = None
    if not args.faithful:
        from untwine.metrics import resolve_metrics

        chosen = set(resolve_metrics(metrics))
        params = {name: p for name, p in DEMO_METRIC_PARAMS.items() if name in chosen} or None
    mode = (
        "faithful, study sample sizes"
        if args.faithful
        else "fast, the demo's smaller BetaVAE/FactorVAE samples"
    )
    print(
        f"[2/4] training {', '.join(names)} for {args.steps} steps ({workers} at once, {threads} thread(s) each, "
        f"{'bf16 autocast: this CPU has native bfloat16' if bf16 else 'float32: no native bfloat16 on this CPU'})"
    )
    with worker_pool(workers, threads=threads) as pool:
        run_dirs = _stage(pool, "[2/4] training", [(train_one, run) for run in runs])
        print(f"[3/4] evaluating ({mode})")
        lines = _stage(
            pool,
            "[3/4] evaluating",
            [
                (evaluate_one, (run_dir, metrics, args.seed, not args.faithful, params))
                for run_dir in run_dirs
            ],
        )
        for run_dir, printed in zip(run_dirs, lines, strict=True):
            print(f"  {Path(run_dir).name}")
            print("\n".join(printed))
        reports = _stage(pool, "[4/4] visualising", [(report_one, (run_dir,)) for run_dir in run_dirs])
    print(f"\ndone in {time.perf_counter() - started:.0f} s. Open the reports:")
    for report in reports:
        print(f"  {Path(report).resolve()}")
    print(f"  data overviews: {(out / 'data_procedural_dsprites.png').resolve()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
