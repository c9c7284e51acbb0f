"""``untwine evaluate RUN_DIR``: score a trained run with the metrics."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

# Exit statuses of a stopped evaluation: 128 + the signal number, as a shell reports it.
STOPPED_STATUS = {"Ctrl-C": 128 + signal.SIGINT, "SIGTERM": 128 + signal.SIGTERM}


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="score a trained run with the disentanglement metrics",
        description=(
            "Score RUN_DIR's representation with the metrics and write one JSON per metric to "
            "RUN_DIR/metrics/<representation>/<metric>.json (values, parameters, seed, versions, seconds). "
            "--metrics takes a comma-separated list of presets, metric names and aliases: 'study' (the nine "
            "configs of unsupervised_study_v1, the default), 'fairness_study' (study + fairness), 'all' "
            "(+ irs), or names such as 'mig,dci,sap' (see docs/metrics.md); they are checked before the "
            "run is loaded; the output folder is checked before any work. Ctrl-C or SIGTERM stops it "
            "with one line: the fit workers are terminated, and the JSON files of metrics finished "
            "before the stop stay intact (each is written atomically)."
        ),
    )
    parser.add_argument("run_dir", type=Path)
    parser.add_argument(
        "--metrics",
        default="study",
        help="presets (study, fairness_study, all), metric names or aliases, comma-separated; "
        "e.g. 'study,irs' (default: study)",
    )
    parser.add_argument("--representation", choices=("mean", "sampled"), default="mean")
    parser.add_argument("--seed", type=int, default=0, help="seed of every draw the metrics make (default 0)")
    parser.add_argument(
        "--fast",
        action="store_true",
        help="opt-in approximations within 0.02 of faithful: binned boosted trees, "
        "C chosen on 1,000 points, bf16 encoding where native",
    )
    parser.add_argument("--device", default="auto", help="device for encoding (auto, cpu, cuda)")
    parser.set_defaults(func=_evaluate)


class _Terminated(KeyboardInterrupt):
    """SIGTERM, turned into the same clean stop as Ctrl-C."""


def _raise_terminated(signum, frame) -> None:
    raise _Terminated


def _evaluate(args) -> int:
    from untwine.metrics import resolve_metrics
    from untwine.studies.pipeline import evaluate_run, headline, metrics_dir

    metrics = resolve_metrics([name.strip() for name in args.metrics.split(",") if name.strip()])
    out_dir = metrics_dir(args.run_dir, args.representation)
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        results = evaluate_run(
            args.run_dir,
            metrics=metrics,
            representation=args.representation,
            seed=args.seed,
            fast=args.fast,
            device=args.device,
        )
    except KeyboardInterrupt as stop:
        # evaluate_representation has terminated the fit workers already.
        how = "SIGTERM" if isinstance(stop, _Terminated) else "Ctrl-C"
        print(
            f"untwine evaluate: stopped ({how}); metrics finished before the stop are in {out_dir}; "
            "run the command again to score the rest",
            file=sys.stderr,
        )
        return STOPPED_STATUS[how]
    finally:
        signal.signal(signal.SIGTERM, previous)
    for name, result in results.items():
        print(f"{name:36s} {headline(result.get('values', {}))}")
    print(f"results written to {out_dir}")
    return 0
