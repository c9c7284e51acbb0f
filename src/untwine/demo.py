"""The main job end to end on built-in data: ``make demo`` runs ``python -m untwine.demo``.

1. Data: an overview grid (samples + one traversal row per factor) of the built-in datasets.
2. Train a β-VAE and an AnnealedVAE on ``procedural_dsprites``.
3. Evaluate each with the study metric set.
4. Visualise: traversals, GIFs, curves, metrics, and one HTML report per run.

CPU-sized settings by default (see ``--help`` and the README for the full-length study settings):
a higher learning rate than the study's 1e-4 so that position and scale separate within minutes.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

DEMO_MODELS = {
    # name: overrides.  β=4 as in Higgins et al.'s dSprites experiments; the AnnealedVAE's capacity
    # ramp is shortened in proportion to the run (the study uses 100k of 300k steps).
    "beta_vae": ["model=beta_vae", "model.beta=4"],
    "annealed_vae": ["model=annealed_vae", "model.c_max=25", "model.gamma=1000"],
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m untwine.demo",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", type=Path, default=Path("demo_output"))
    parser.add_argument("--steps", type=int, default=3000, help="training steps per model (default 3000)")
    parser.add_argument("--learning-rate", type=float, default=5e-4)
    parser.add_argument(
        "--models", default=",".join(DEMO_MODELS), help="comma-separated subset of beta_vae,annealed_vae"
    )
    parser.add_argument("--metrics", default="study", help="metric preset or list (default: study)")
    parser.add_argument(
        "--faithful",
        action="store_true",
        help="score with the faithful (reference-equal) metrics instead of fast mode",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from untwine.data import get_dataset
    from untwine.visualisation.images import dataset_overview, save_png

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    print(f"[1/4] data overviews -> {out}")
    for name in ("procedural_dsprites", "procedural_shapes3d"):
        save_png(out / f"data_{name}.png", dataset_overview(get_dataset(name), args.seed))

    from untwine.training import TrainConfig, train

    run_dirs = []
    for name in args.models.split(","):
        if name not in DEMO_MODELS:
            raise SystemExit(f"unknown demo model {name!r}; choose from {', '.join(DEMO_MODELS)}")
        overrides = [
            *DEMO_MODELS[name],
            "dataset=procedural_dsprites",
            f"steps={args.steps}",
            f"learning_rate={args.learning_rate}",
            f"seed={args.seed}",
            f"threads={args.threads}",
            f"checkpoint_every={max(args.steps // 4, 1)}",
            f"log_every={max(args.steps // 60, 1)}",
        ]
        if name == "annealed_vae":
            overrides.append(f"model.iteration_threshold={max(args.steps // 3, 1)}")
        run_dir = out / "runs" / name
        config = TrainConfig.from_overrides(overrides)
        print(f"[2/4] training {name} for {args.steps} steps -> {run_dir}")
        if (run_dir / "config.json").exists():
            train(None, run_dir, resume=True)  # a re-run continues (or finds the run finished)
        else:
            train(config, run_dir)
        run_dirs.append(run_dir)

    from untwine.studies.pipeline import evaluate_run, headline

    metrics = args.metrics if args.metrics in ("study", "all") else args.metrics.split(",")
    for run_dir in run_dirs:
        print(f"[3/4] evaluating {run_dir.name} ({'faithful' if args.faithful else 'fast'} mode)")
        results = evaluate_run(run_dir, metrics=metrics, seed=args.seed, fast=not args.faithful)
        for metric, result in results.items():
            print(f"      {metric:36s} {headline(result.get('values', {}))}")

    from untwine.report import write_run_report

    reports = []
    for run_dir in run_dirs:
        print(f"[4/4] visualising {run_dir.name}")
        reports.append(write_run_report(run_dir))
    print(f"\ndone in {time.perf_counter() - started:.0f} s. Open the reports:")
    for report in reports:
        print(f"  {Path(report).resolve()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
