"""Time the metric suite against disentanglement_lib's own time on the reference cases.

For each reference case (a toy factor space and a representation family, ``tests/data/reference``) and
each mode (faithful, fast), run :func:`untwine.metrics.evaluate_representation` end to end -- sampling,
encoding, every metric of the suite -- and compare its wall time with the seconds disentanglement_lib
took for the same metrics on the same kind of data (``expected.json``: per-metric ``seconds`` of the
array metrics, ``seconds_mean`` over seeds of the sampling metrics; measured on a 2-core machine of this
kind with two harness processes side by side).  With both modes, every value of the fast run is
compared with the faithful run on the same seed (same samples).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/metric_suite.py --cases small/rotated --modes faithful,fast

Prints a markdown table and writes the raw numbers to ``--out`` (JSON).

``--agreement`` instead feeds the stored reference arrays to the array-layer metrics (faithful and fast)
and prints the largest deviation from disentanglement_lib's values per metric and case:

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/metric_suite.py --agreement --cases small/rotated
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "data" / "reference"))

import toy  # noqa: E402

from untwine.metrics import evaluate_representation, resolve_metrics  # noqa: E402

# untwine metric name -> key of the reference entry in expected.json
REFERENCE_NAMES = {
    "beta_vae_sklearn": "beta_vae",
    "factor_vae_metric": "factor_vae",
    "mig": "mig",
    "dci": "dci",
    "modularity_explicitness": "modularity_explicitness",
    "sap_score": "sap",
    "unsupervised": "unsupervised",
    "downstream_task_logistic_regression": "downstream_logistic_regression",
    "downstream_task_boosted_trees": "downstream_boosted_trees",
    "fairness": "fairness",
    "irs": "irs",
}


def reference_seconds(case: str, metric: str) -> float:
    entry = toy.expected()[case]["metrics"][REFERENCE_NAMES[metric]]
    return float(entry["seconds"] if "seconds" in entry else entry["seconds_mean"])


def run(case: str, suite: str, fast: bool, n_jobs: int, seed: int) -> dict:
    space, family = case.split("/")
    dataset = toy.ToyDataset(space)
    representation = toy.family_fn(space, family, seed)
    load_before = os.getloadavg()[0]
    start, cpu = time.perf_counter(), time.process_time()
    results = evaluate_representation(
        dataset,
        representation,
        metrics=suite,
        seed=seed,
        fast=fast,
        n_jobs=n_jobs,
        deterministic=not toy.is_stochastic(family),
    )
    wall = time.perf_counter() - start
    main_cpu = time.process_time() - cpu
    fit_cpu = {}  # fits shared by several metrics are counted once
    for result in results.values():
        fit_cpu[result["metric"]] = result.get("fit_cpu_seconds", 0.0)
    return {
        "case": case,
        "mode": "fast" if fast else "faithful",
        "suite": suite,
        "seconds": wall,
        "main_process_cpu_seconds": main_cpu,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg()[0],
        "reference_seconds": sum(reference_seconds(case, m) for m in results),
        "metrics": {
            name: {
                "seconds": r["seconds"],
                "reference_seconds": reference_seconds(case, name),
                "fit_cpu_seconds": r.get("fit_cpu_seconds"),
                "values": r["values"],
            }
            for name, r in results.items()
        },
        "shared_sample_seconds": max(r["shared_sample_seconds"] for r in results.values()),
    }


def max_deviation(fast: dict, faithful: dict) -> dict[str, tuple[float, str]]:
    out = {}
    for name, entry in faithful["metrics"].items():
        worst, worst_key = 0.0, ""
        for key, value in entry["values"].items():
            other = fast["metrics"][name]["values"][key]
            if isinstance(value, int | float) and isinstance(other, int | float):
                deviation = abs(float(other) - float(value))
                if deviation > worst:
                    worst, worst_key = deviation, key
        out[name] = (worst, worst_key)
    return out


def agreement(case: str, fast: bool, n_jobs: int) -> dict[str, tuple[float, str, float]]:
    """Largest |untwine - dlib| per array metric on the stored arrays: (deviation, key, seconds)."""
    from untwine.metrics import dci, downstream_task, mig, modularity_explicitness, sap, unsupervised_scores

    data = toy.load_case(case)
    train = (data["codes_train"], data["factors_train"])
    both = (*train, data["codes_test"], data["factors_test"])
    calls = {
        "mig": lambda: mig(*train),
        "unsupervised": lambda: unsupervised_scores(train[0]),
        "sap": lambda: sap(*both),
        "modularity_explicitness": lambda: modularity_explicitness(*both),
        "dci": lambda: dci(*both, fast=fast, n_jobs=n_jobs),
        "downstream_logistic_regression": lambda: downstream_task(
            *both, predictor="logistic_regression", fast=fast, n_jobs=n_jobs
        ),
        "downstream_boosted_trees": lambda: downstream_task(
            *both, predictor="boosted_trees", fast=fast, n_jobs=n_jobs
        ),
    }
    out = {}
    for name, call in calls.items():
        if fast and name in ("mig", "unsupervised", "sap", "modularity_explicitness"):
            continue  # no fast variant: the same computation
        start = time.perf_counter()
        values = call()
        seconds = time.perf_counter() - start
        expected = toy.expected()[case]["metrics"][name]["values"]
        worst, worst_key = 0.0, ""
        for key, value in expected.items():
            deviation = abs(values[key] - value)
            if deviation > worst or not worst_key:
                worst, worst_key = deviation, key
        out[name] = (worst, worst_key, seconds)
        print(
            f"{case:24s} {'fast' if fast else 'faithful':8s} {name:32s} {worst:.2e} ({worst_key}) {seconds:.1f} s",
            flush=True,
        )
    return out


def warm_up(n_jobs: int) -> float:
    """Import what the metrics import and start the reusable worker pool, untimed, as a long-running
    session (or disentanglement_lib's harness, whose per-metric seconds exclude imports) would have.
    Returns the seconds it took: the extra cost of a first call in a fresh process."""
    from untwine.metrics._estimators import FitEngine, _import_estimators

    start = time.perf_counter()
    import sklearn.svm  # noqa: F401  (SAP)

    _import_estimators()
    FitEngine(n_jobs).warm_up(wait=True)
    return time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", default=",".join(toy.CASES))
    parser.add_argument("--modes", default="faithful,fast")
    parser.add_argument("--suite", default="study", help="study | fairness_study | all | name,name")
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument(
        "--agreement", action="store_true", help="compare with dlib's values on the stored arrays"
    )
    args = parser.parse_args(argv)
    print(f"warm-up (imports, worker pool; not counted): {warm_up(args.n_jobs):.1f} s", flush=True)
    if args.agreement:
        table = {
            f"{case} {mode}": agreement(case, mode == "fast", args.n_jobs)
            for case in args.cases.split(",")
            for mode in args.modes.split(",")
        }
        print("\n| case | mode | metric | max abs deviation | key | seconds |")
        print("|---|---|---|---|---|---|")
        for label, per_metric in table.items():
            case, mode = label.split(" ")
            for name, (deviation, key, seconds) in per_metric.items():
                print(f"| {case} | {mode} | {name} | {deviation:.2g} | {key} | {seconds:.1f} |")
        if args.out is not None:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(table, indent=1) + "\n")
        return 0
    suite = args.suite if args.suite in ("study", "fairness_study", "all") else args.suite.split(",")
    resolve_metrics(suite)
    rows = []
    for case in args.cases.split(","):
        for mode in args.modes.split(","):
            row = run(case, suite, mode == "fast", args.n_jobs, args.seed)
            rows.append(row)
            print(
                f"{case:24s} {mode:8s} {row['seconds']:8.1f} s  reference {row['reference_seconds']:8.1f} s  "
                f"x{row['reference_seconds'] / row['seconds']:.1f}  load {row['load_average_before']:.1f}",
                flush=True,
            )
            for name, entry in row["metrics"].items():
                print(
                    f"    {name:38s} {entry['seconds']:8.1f} s (reference {entry['reference_seconds']:7.1f} s)",
                    flush=True,
                )
    print("\n| case | mode | untwine s | dlib s | speed-up | load avg |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['case']} | {row['mode']} | {row['seconds']:.1f} | {row['reference_seconds']:.1f} | "
            f"{row['reference_seconds'] / row['seconds']:.1f}x | {row['load_average_before']:.1f} |"
        )
    pairs = {(r["case"], r["mode"]): r for r in rows}
    deviations = {}
    for case in args.cases.split(","):
        if (case, "fast") in pairs and (case, "faithful") in pairs:
            deviations[case] = max_deviation(pairs[(case, "fast")], pairs[(case, "faithful")])
    if deviations:
        print("\nLargest |fast - faithful| per metric (same seed, same samples):\n")
        print("| case | metric | max deviation | key |")
        print("|---|---|---|---|")
        for case, per_metric in deviations.items():
            for name, (value, key) in per_metric.items():
                print(f"| {case} | {name} | {value:.4f} | {key} |")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(
            json.dumps({"rows": rows, "deviations": deviations}, indent=1, default=float) + "\n"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
