"""``untwine study``: reproducible sweeps -- run, status, reproduce, export, report.

* ``untwine study list``                        the defined studies and their sizes
* ``untwine study run STUDY --dir DIR [flags]`` train -> postprocess -> evaluate every model, store results;
                                                re-running continues where it stopped (finished models are skipped)
* ``untwine study status DIR``                  done / running / failed / pending, failures, time per model
* ``untwine study reproduce STUDY --model-num N`` one model of a study, as disentanglement_lib numbered it
* ``untwine study export DIR``                  runs and results as CSV and Parquet (also: pandas via Python)
* ``untwine study report DIR``                  the paper's analyses as DIR/report/index.html (+ PNG, CSV)

Scaling a study down is done with flags, not copies: ``--datasets procedural_dsprites --values 0,5
--seeds 0-1 --steps 3000`` keeps each run's model_num from the full study.  ``--values 0,5`` picks
positions in every model's value list; ``--values beta_vae=1,16`` picks values of one model.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def _csv(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _selection_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("selection (scale the study down; model numbers are kept)")
    group.add_argument(
        "--datasets",
        type=_csv,
        help="comma-separated datasets (any registered dataset, e.g. procedural_dsprites)",
    )
    group.add_argument("--models", type=_csv, help="comma-separated models of the study")
    group.add_argument(
        "--values",
        action="append",
        default=[],
        metavar="SPEC",
        help="'0,5': positions in every model's value list; 'beta_vae=1,16': values of one model "
        "(repeatable)",
    )
    group.add_argument("--seeds", help="seeds, e.g. 0-4 or 0,3,7")
    group.add_argument(
        "--steps",
        type=int,
        help="training steps (step-counted parameters such as AnnealedVAE's capacity ramp scale with it)",
    )
    group.add_argument(
        "--set",
        dest="train",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra training config override, e.g. learning_rate=5e-4 (repeatable)",
    )
    group.add_argument(
        "--model-num",
        dest="model_nums",
        help="only these model numbers, e.g. 4321 or 0-9; with other selection flags each must lie inside them",
    )
    group = parser.add_argument_group("evaluation")
    group.add_argument(
        "--metrics",
        type=_csv,
        help="replace the study's metric set: names or aliases (mig,dci,unsupervised) or one preset "
        "(study, fairness_study, all); checked before anything runs",
    )
    group.add_argument(
        "--fast", action="store_true", help="opt-in metric approximations (histogram boosting, ...)"
    )
    group.add_argument(
        "--metric-param",
        dest="metric_params",
        action="append",
        default=[],
        metavar="METRIC.KEY=VALUE",
        help="override a metric parameter, e.g. dci.num_train=2000 or "
        "downstream_task_boosted_trees.num_train=[100,1000] (repeatable)",
    )


def _overrides(items: list[str]) -> dict:
    from untwine.utils.overrides import parse_value, split_override

    return {key: parse_value(value) for key, value in map(split_override, items)}


def _selection(args):
    from untwine.studies.grid import Selection, parse_int_list, parse_values

    positions, by_model = parse_values(args.values)
    return Selection(
        datasets=args.datasets,
        models=args.models,
        values=positions,
        model_values=by_model,
        seeds=parse_int_list(args.seeds) if args.seeds else None,
        steps=args.steps,
        train=_overrides(args.train),
        model_nums=parse_int_list(args.model_nums) if args.model_nums else None,
    )


def _evaluation(args):
    from untwine.studies.planning import EvaluationChoice, parse_metric_params

    return EvaluationChoice(
        metrics=args.metrics, fast=args.fast, metric_params=parse_metric_params(args.metric_params)
    )


def _executor_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("execution")
    group.add_argument(
        "--executor",
        choices=("local", "ray", "inline"),
        default="local",
        help="local process pool (default), Ray, or inline (in this process, for debugging)",
    )
    group.add_argument(
        "--address",
        help="Ray cluster address (auto, host:6379, ray://host:10001); default: start a local Ray instance",
    )
    group.add_argument("--workers", type=int, help="models in parallel (default: chosen for the machine)")
    group.add_argument(
        "--threads", type=int, help="torch/BLAS threads per model (default: chosen for the machine)"
    )
    group.add_argument(
        "--gpus-per-task", type=float, default=0.0, help="Ray only: GPUs per model (default 0)"
    )
    group.add_argument(
        "--device", default="auto", help="training/encoding device: auto, cpu, cuda (default auto)"
    )
    group.add_argument("--retry-failed", action="store_true", help="run models recorded as failed again")
    group.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bar and no messages about failed or retried models",
    )


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "study",
        help="reproducible sweeps: run, status, reproduce, export, report, reevaluate, udr",
        description=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="study_command", metavar="ACTION")
    parser.set_defaults(func=lambda args: _help(parser))

    p = actions.add_parser("list", help="the defined studies")
    p.set_defaults(func=cmd_list)

    p = actions.add_parser(
        "run",
        help="run or continue a study",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train, postprocess (mean and sampled representations) and evaluate every "
        "model of STUDY, storing results in DIR/results.sqlite (or --store). Re-running the "
        "same command continues: finished models are skipped, interrupted ones resume from "
        "their checkpoints. Without STUDY, continues the study saved in DIR.\n\n"
        "One driver per directory: a second `study run` on DIR is refused while one runs, naming it "
        "(status, export and report still work). A run that is refused (another study, another "
        "--steps or --set for stored models, a damaged store) changes nothing in DIR.",
    )
    p.add_argument(
        "study", nargs="?", help="study name (see `untwine study list`); omit to continue DIR's study"
    )
    p.add_argument("--dir", type=Path, help="study directory (default studies/STUDY)")
    p.add_argument(
        "--store",
        help="postgresql://user@host/db URL for a shared results database (default: DIR/results.sqlite; "
        "a SQLite store always lives in DIR, so that a copy of DIR uses its own)",
    )
    p.add_argument("--dry-run", action="store_true", help="list the runs and exit")
    _selection_flags(p)
    _executor_flags(p)
    p.set_defaults(func=cmd_run)

    p = actions.add_parser("status", help="progress of a study directory")
    p.add_argument("dir", type=Path)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_status)

    p = actions.add_parser(
        "reproduce",
        help="one model of a study by its model number",
        description="Show and run (train -> postprocess -> evaluate) model --model-num of STUDY, "
        "numbered as in disentanglement_lib (unsupervised_study_v1: 1800 dataset + 300 model + "
        "50 value + seed).",
    )
    p.add_argument("study")
    p.add_argument("--model-num", type=int, required=True)
    p.add_argument("--dir", type=Path, help="study directory (default studies/STUDY-model<N>)")
    p.add_argument(
        "--steps", type=int, help="train for fewer steps than the study (step-counted parameters scale)"
    )
    p.add_argument("--set", dest="train", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--print-only", action="store_true", help="print the model's config and exit")
    p.add_argument("--threads", type=int, help="torch/BLAS threads (default: all cores)")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=cmd_reproduce)

    p = actions.add_parser("export", help="runs and results as CSV / Parquet")
    p.add_argument("dir", type=Path)
    p.add_argument("--out", type=Path, help="output folder (default DIR/export)")
    p.add_argument("--format", default="csv,parquet", help="csv, parquet or both (default csv,parquet)")
    p.set_defaults(func=cmd_export)

    p = actions.add_parser("report", help="the paper's analyses as a self-contained HTML report")
    p.add_argument("dir", type=Path)
    p.add_argument("--out", type=Path, help="output folder (default DIR/report)")
    p.set_defaults(func=cmd_report)

    p = actions.add_parser(
        "reevaluate",
        help="score the finished models again with other seeds and sample sizes (JMLR study)",
        description="Repeated evaluation, as disentanglement_lib's dlib_reproduce_jmlr: every finished "
        "model of the study in DIR is scored with --metrics for each evaluation seed in --seeds and each "
        "training-sample size in --num-train (bound to each metric's num_train; a list-valued num_train "
        "becomes [N]). Results are keyed by (representation, metric, seed, num_train) and stored beside the "
        "study's own evaluation -- RUN_DIR/metrics/<rep>/repeats/<metric>/seed=S,num_train=N.json and the "
        "store's repeats table -- never over it. Resumable: keys already computed are skipped. `study "
        "report` then adds a section on the spread across seeds, the drift with the sample size and the "
        "ranking stability (Spearman between seeds).",
    )
    p.add_argument("dir", type=Path)
    p.add_argument(
        "--metrics", required=True, help="metric names or aliases, comma-separated (e.g. mig,dci,sap)"
    )
    p.add_argument("--seeds", required=True, help="evaluation seeds, e.g. 0-9 or 0,3,7")
    p.add_argument("--num-train", required=True, help="training-sample sizes, e.g. 100,1000,10000")
    p.add_argument("--representations", default="mean", help="mean, sampled or both (default mean)")
    p.add_argument("--fast", action="store_true", help="opt-in metric approximations")
    p.add_argument(
        "--metric-param", dest="metric_params", action="append", default=[], metavar="METRIC.KEY=VALUE"
    )
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=cmd_reevaluate)

    p = actions.add_parser(
        "udr",
        help="UDR of each model against the other seeds of its hyperparameter setting",
        description="Unsupervised Disentanglement Ranking (Duan et al. 2020) across the study in DIR: the "
        "finished models of each setting (dataset, model, value; different seeds, at least two) encode "
        "the same --num-points images and are compared pairwise; each model's score (the median of "
        "its pairwise scores) is stored as metric 'udr' (key model_score) of its mean representation, "
        "in RUN_DIR/metrics/mean/udr.json and in the study store, where `study report` and `study "
        "export` find it. Run it again after more models finish.",
    )
    p.add_argument("dir", type=Path)
    p.add_argument("--num-points", type=int, default=1000, help="images every model encodes (default 1000)")
    p.add_argument("--correlation", choices=("lasso", "spearman"), default="lasso", help="default lasso")
    p.add_argument("--seed", type=int, default=0, help="seed of the image draw (default 0)")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=cmd_udr)


def cmd_reevaluate(args) -> int:
    from untwine.studies.grid import parse_int_list
    from untwine.studies.planning import parse_metric_params
    from untwine.studies.repeats import study_reevaluate

    computed = study_reevaluate(
        args.dir,
        _csv(args.metrics),
        parse_int_list(args.seeds),
        parse_int_list(args.num_train),
        representations=_csv(args.representations),
        params=parse_metric_params(args.metric_params) or None,
        fast=args.fast,
        device=args.device,
        progress=lambda done, total: print(f"  {done}/{total} models", flush=True),
    )
    print(f"{computed} repeated evaluations computed (the rest were already stored) in {args.dir}")
    return 0


def cmd_udr(args) -> int:
    from untwine.studies.udr import study_udr

    groups = study_udr(
        args.dir, num_points=args.num_points, correlation=args.correlation, seed=args.seed, device=args.device
    )
    if not groups:
        print("no setting has two finished models yet: UDR compares the seeds of one setting")
        return 0
    for group in groups:
        scores = ", ".join(f"#{n}: {s:.3f}" for n, s in zip(group.model_nums, group.scores, strict=True))
        print(f"{group.dataset} {group.model} {group.parameter}={group.value:g}: {scores}")
    print(f"stored as metric 'udr' in the store of {args.dir}")
    return 0


def _help(parser) -> int:
    parser.print_help()
    return 2


def cmd_list(args) -> int:
    from untwine.studies.definitions import STUDIES

    for study in STUDIES.values():
        models = ", ".join(f"{m.key}({len(m.values)})" for m in study.models)
        print(f"{study.name}: {study.size} models, {study.steps} steps each")
        print(f"  {study.description}")
        print(f"  datasets: {', '.join(study.datasets)}")
        print(f"  models:   {models}; seeds {min(study.seeds)}-{max(study.seeds)}")
        print(f"  metrics:  {', '.join(study.metrics) or 'none'} on {', '.join(study.representations)}")
    return 0


def _executor(args):
    from untwine.studies.executors import make_executor

    return make_executor(
        args.executor,
        address=args.address,
        workers=args.workers,
        threads=args.threads,
        gpus_per_task=args.gpus_per_task,
    )


def cmd_run(args) -> int:
    from untwine.studies.planning import plan_runs, resolve_study
    from untwine.studies.runner import describe_spec, run_study

    plan = resolve_study(args.study, args.dir, _selection(args), _evaluation(args), args.store)
    if plan.continued:
        print(f"continuing {plan.study.name} in {plan.study_dir} with its saved selection", file=sys.stderr)
    specs = plan_runs(plan.study, plan.selection)  # every error before a directory or a worker exists
    if args.dry_run:
        for spec in specs:
            info = describe_spec(spec, plan.study)
            print(
                f"{info['model_num']:>6}  {info['dataset']:<22} {info['model']:<13} "
                f"{info['parameter']}={info['value']:g} seed={info['seed']}"
            )
        print(f"{len(specs)} models")
        return 0
    summary = run_study(
        plan.study,
        plan.study_dir,
        plan.selection,
        executor=_executor(args),
        store=plan.store,
        retry_failed=args.retry_failed,
        progress=not args.no_progress,
        device=args.device,
    )
    print(summary)
    print(f"results: {plan.study_dir}  (untwine study report {plan.study_dir})")
    return 0 if summary.failed == 0 else 3


def cmd_status(args) -> int:
    from untwine.studies.progress import format_status
    from untwine.studies.runner import study_status

    status = study_status(args.dir)
    print(json.dumps(status, indent=2) if args.json else format_status(status, args.dir))
    return 0


def cmd_reproduce(args) -> int:
    from untwine.studies.definitions import get_study
    from untwine.studies.executors import LocalExecutor
    from untwine.studies.grid import Selection, spec_for_model_num
    from untwine.studies.planning import DEFAULT_STUDIES_DIR, plan_runs
    from untwine.studies.runner import describe_spec, run_study

    study = get_study(args.study)
    train = _overrides(args.train)
    spec = spec_for_model_num(study, args.model_num, args.steps, train)
    info = describe_spec(spec, study)
    print(
        f"{study.name} model {spec.model_num}: {info['label']} on {spec.dataset}, {spec.parameter}={spec.value:g}, "
        f"seed {spec.seed} (value {spec.value_index + 1} of {len(study.model(spec.model).values)})"
    )
    print(f"  {info['train']}")
    print(
        f"  metrics: {', '.join(study.metrics) or 'none'} on {', '.join(study.representations)} "
        f"representations, seed {study.metric_seed}"
    )
    if args.print_only:
        return 0
    study_dir = args.dir or DEFAULT_STUDIES_DIR / f"{study.name}-model{spec.model_num}"
    selection = Selection(model_nums=(spec.model_num,), steps=args.steps, train=train)
    plan_runs(study, selection)
    executor = LocalExecutor(workers=1, threads=args.threads or os.cpu_count() or 1)
    summary = run_study(study, study_dir, selection, executor=executor, device=args.device)
    print(summary)
    return 0 if summary.failed == 0 else 3


def cmd_export(args) -> int:
    from untwine.studies.runner import export_study

    export = export_study(args.dir, args.out, _csv(args.format))
    if export.skipped:
        print(f"untwine study export: {export.skipped}", file=sys.stderr)
    for path in export.paths:
        print(f"wrote {path}")
    return 0


def cmd_report(args) -> int:
    from untwine.report.study_report import write_study_report

    path = write_study_report(args.dir, args.out)
    print(f"wrote {path}")
    return 0
