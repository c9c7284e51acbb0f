"""``untwine evaluate``: score a trained run, an outside encoder or precomputed codes with the metrics."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

# Exit statuses of a stopped evaluation: 128 + the signal number, as a shell reports it.
STOPPED_STATUS = {"Ctrl-C": 128 + signal.SIGINT, "SIGTERM": 128 + signal.SIGTERM}

DESCRIPTION = (
    "Score a representation with the metrics and write one JSON per metric to "
    "<DIR>/metrics/<representation>/<metric>.json (values, parameters, seed, versions, seconds).  The "
    "representation is RUN_DIR's trained encoder, or one from outside untwine: --torchscript FILE, --onnx "
    "FILE (needs onnxruntime: pip install 'untwine[onnx]'), --callable MODULE:FUNCTION (or FILE.py:FUNCTION), "
    "each given float32 images in [0, 1] of --dataset (NHWC, or NCHW with --layout nchw) and returning "
    "codes (n, d) or a pair (mean, log-variance) -- a pair also gives --representation sampled; or "
    "--codes FILE.npz with arrays 'codes' (n, d) and 'factors' (n, K), for the metrics that work on a "
    "sample of codes (not BetaVAE, FactorVAE, fairness, strong downstream: they render images).  Outside "
    "sources write into --out DIR, with DIR/encoder.json saying what was scored.  --metrics takes "
    "presets, metric names and aliases: 'study' (the nine configs of unsupervised_study_v1, the default), "
    "'fairness_study' (study + fairness), 'all' (every metric), or names such as 'mig,dci,sap' (see "
    "docs/metrics.md).  Names, parameters, the output folder, the file and the encoder's output on a probe "
    "batch (shape, NaN) are checked before any metric runs.  Ctrl-C or SIGTERM stops it with one line: "
    "the fit workers are terminated, and the JSON files of metrics finished before the stop stay intact."
)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "evaluate", help="score a trained run or any encoder with the metrics", description=DESCRIPTION
    )
    add_arguments(parser)
    parser.set_defaults(func=_evaluate)


def add_arguments(parser) -> None:
    parser.add_argument("run_dir", type=Path, nargs="?", help="a trained run (omit with an outside source)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--torchscript", metavar="FILE", help="a TorchScript encoder (torch.jit.save)")
    source.add_argument("--onnx", metavar="FILE", help="an ONNX encoder, run by onnxruntime")
    source.add_argument("--callable", metavar="MODULE:FUNCTION", help="a Python function images -> codes")
    source.add_argument("--codes", metavar="FILE.npz", help="precomputed arrays 'codes' and 'factors'")
    parser.add_argument(
        "--dataset", help="dataset the encoder is given (untwine data list); optional for --codes"
    )
    parser.add_argument("--out", type=Path, help="output directory for an outside source")
    parser.add_argument(
        "--layout",
        choices=("nhwc", "nchw"),
        default="nhwc",
        help="image layout the encoder expects (default nhwc)",
    )
    parser.add_argument(
        "--metrics",
        default="study",
        help="presets (study, fairness_study, continuous, all), metric names or aliases, comma-separated; "
        "e.g. 'study,irs' (default: study)",
    )
    parser.add_argument(
        "--metric-param",
        dest="metric_params",
        action="append",
        default=[],
        metavar="METRIC.KEY=VALUE",
        help="override a metric parameter, e.g. dci.num_train=2000 (repeatable; same syntax as studies)",
    )
    parser.add_argument("--representation", choices=("mean", "sampled"), default="mean")
    parser.add_argument("--seed", type=int, default=0, help="seed of every draw the metrics make (default 0)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--fast",
        action="store_true",
        help="opt-in approximations within 0.02 of faithful: binned boosted trees, "
        "C chosen on 1,000 points, bf16 encoding where native",
    )
    mode.add_argument(
        "--faithful", action="store_true", help="disentanglement_lib's estimators (the default)"
    )
    parser.add_argument("--device", default="auto", help="device for encoding (auto, cpu, cuda)")
    parser.add_argument(
        "--seeds",
        help="repeated evaluation of RUN_DIR: evaluation seeds, e.g. 0-4 (with --num-train); results go to "
        "RUN_DIR/metrics/<rep>/repeats/<metric>/seed=S,num_train=N.json, beside the run's own evaluation",
    )
    parser.add_argument("--num-train", help="repeated evaluation: training-sample sizes, e.g. 100,1000,10000")


def _repeats(args, metrics, params) -> int:
    from untwine.studies.grid import parse_int_list
    from untwine.studies.repeats import evaluate_repeats

    done = evaluate_repeats(
        args.run_dir,
        metrics,
        parse_int_list(args.seeds),
        parse_int_list(args.num_train),
        representations=(args.representation,),
        params=params or None,
        fast=args.fast,
        device=args.device,
    )
    print(
        f"{len(done)} repeated evaluations written under {args.run_dir / 'metrics' / args.representation / 'repeats'}"
    )
    return 0


class _Terminated(KeyboardInterrupt):
    """SIGTERM, turned into the same clean stop as Ctrl-C."""


def _raise_terminated(signum, frame) -> None:
    raise _Terminated


def _outside_source(args) -> tuple[str, str] | None:
    for kind in ("torchscript", "onnx", "callable", "codes"):
        if getattr(args, kind):
            return kind, getattr(args, kind)
    return None


def _evaluate(args) -> int:
    from untwine.metrics import resolve_metrics
    from untwine.studies.planning import parse_metric_params

    metrics = resolve_metrics([name.strip() for name in args.metrics.split(",") if name.strip()])
    params = parse_metric_params(args.metric_params)
    outside = _outside_source(args)
    if outside is None and args.run_dir is None:
        raise ValueError("give a RUN_DIR, or an encoder with --torchscript, --onnx, --callable or --codes")
    if outside is not None and args.run_dir is not None:
        raise ValueError(f"give either RUN_DIR or --{outside[0]}, not both")
    if outside is not None and args.out is None:
        raise ValueError(f"--{outside[0]} needs --out DIR (where the results go)")
    if outside is None and (args.dataset or args.out):
        raise ValueError(
            "--dataset and --out are for outside encoders; a run knows its dataset and directory"
        )
    if args.seeds or args.num_train:
        if outside is not None or not (args.seeds and args.num_train):
            raise ValueError("repeated evaluation takes a RUN_DIR with both --seeds and --num-train")
        return _repeats(args, metrics, params)

    if outside is None:
        from untwine.studies.pipeline import evaluate_run, metrics_dir

        out_dir = metrics_dir(args.run_dir, args.representation)

        def work():
            return evaluate_run(
                args.run_dir,
                metrics=metrics,
                representation=args.representation,
                seed=args.seed,
                fast=args.fast,
                device=args.device,
                params=params or None,
            )
    else:
        from untwine.encoders.evaluation import evaluate_outside, metrics_dir

        out_dir = metrics_dir(args.out, args.representation)

        def work():
            return evaluate_outside(
                *outside,
                args.out,
                dataset_name=args.dataset,
                metrics=metrics,
                representation=args.representation,
                seed=args.seed,
                fast=args.fast,
                params=params or None,
                layout=args.layout,
                device=args.device,
            )[0]

    from untwine.studies.pipeline import headline

    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        results = work()
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
