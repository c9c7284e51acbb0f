"""Data throughput: images/s for batches of 64, and peak memory, per dataset.

Each case runs in a fresh interpreter, so that its peak RSS (``resource.getrusage``) is its own:
the import of untwine (numpy + torch) plus building the dataset plus sampling.  ``import s`` is the
import, ``setup s`` the dataset's construction (cache builds, or filling the 3 GB array).

Cases:

* the procedural datasets (built-in, no download), with their default in-memory caches;
* ``dsprites_array``: an :class:`ImageGridDataset` over a random uint8 array of dSprites' real shape
  (737280 x 64 x 64, 3 GB) -- what the downloaded dataset costs once loaded into memory.

Three rates per case: ``dataset.sample(64, rng)`` (numpy HWC float32, factors drawn uniformly), the
training stream (``BatchStream``: the same plus the NCHW torch tensor) and the pair stream of the
weakly-supervised models (``PairStream``, k=1: 64 pairs per batch, counted as 128 images).  Each rate is measured in
``--trials`` windows of ``--seconds``; the table shows the median window and the best one, because
other processes on the machine slow some windows down.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/data_throughput.py [--cases a,b] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

BATCH = 64
CASES = (
    "baseline",
    "procedural_dsprites",
    "procedural_color_dsprites",
    "procedural_noisy_dsprites",
    "procedural_scream_dsprites",
    "procedural_shapes3d",
    "dsprites_array",
)


def _build(case: str):
    """The dataset of a case (None for ``baseline``: the import alone)."""
    import numpy as np

    from untwine.data import get_dataset
    from untwine.data.base import FactorSpace, ImageGridDataset
    from untwine.data.registry import DSPRITES_FACTORS, DSPRITES_SIZES

    if case == "baseline":
        return None
    if case == "dsprites_array":
        space = FactorSpace(DSPRITES_SIZES, DSPRITES_FACTORS)
        images = np.empty((space.num_states, 64, 64), dtype=np.uint8)
        rng = np.random.default_rng(0)
        for start in range(0, space.num_states, 65536):  # chunked: no 3 GB temporary on top
            stop = min(start + 65536, space.num_states)
            images[start:stop] = rng.integers(0, 2, size=(stop - start, 64, 64), dtype=np.uint8)
        return ImageGridDataset("dsprites_array", images, space, latent_indices=range(5), scale=1.0)
    return get_dataset(case)


def _rate(step, seconds: float, trials: int, images_per_batch: int = BATCH) -> list[float]:
    """Images/s of ``step`` (one batch) in ``trials`` windows of at least ``seconds`` each."""
    for _ in range(3):  # warm-up: first-touch page faults, lazy imports
        step()
    rates = []
    for _ in range(trials):
        batches = 0
        start = time.perf_counter()
        while True:
            step()
            batches += 1
            elapsed = time.perf_counter() - start
            if elapsed >= seconds:
                break
        rates.append(batches * images_per_batch / elapsed)
    return rates


def run_case(case: str, seconds: float, trials: int) -> dict:
    start = time.perf_counter()
    import numpy as np

    import untwine.data  # noqa: F401  (numpy + torch: the same for every case)

    imported = time.perf_counter()
    dataset = _build(case)
    result: dict = {"case": case, "import_s": imported - start, "setup_s": time.perf_counter() - imported}
    if dataset is not None:
        from untwine.data import BatchStream, PairStream

        rng = np.random.default_rng(0)
        stream = BatchStream(dataset, batch_size=BATCH, seed=0)
        pairs = PairStream(dataset, batch_size=BATCH, seed=0, k=1)
        result["sample"] = _rate(lambda: dataset.sample(BATCH, rng), seconds, trials)
        result["stream"] = _rate(lambda: next(stream), seconds, trials)
        result["pairs"] = _rate(lambda: next(pairs), seconds, trials, images_per_batch=2 * BATCH)
        result["channels"] = dataset.num_channels
    # ru_maxrss is in KiB on Linux (bytes on macOS).
    scale = 1 if sys.platform == "darwin" else 1024
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20
    return result


def _fmt_rate(rates: list[float] | None) -> str:
    if not rates:
        return "-"
    return f"{statistics.median(rates):,.0f} ({max(rates):,.0f})"


def markdown(results: list[dict]) -> str:
    lines = [
        "| case | import s | setup s | sample() img/s, median (best) | BatchStream img/s, median (best) "
        "| PairStream img/s, median (best) | peak RSS MiB |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['case']} | {r['import_s']:.2f} | {r['setup_s']:.2f} | {_fmt_rate(r.get('sample'))} | "
            f"{_fmt_rate(r.get('stream'))} | {_fmt_rate(r.get('pairs'))} | {r['peak_rss_mib']:,.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated, from: " + ", ".join(CASES))
    parser.add_argument("--seconds", type=float, default=1.0, help="length of one timing window")
    parser.add_argument("--trials", type=int, default=5, help="timing windows per rate")
    parser.add_argument("--json", help="also write the raw results here")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # internal: run one case in this process
    args = parser.parse_args(argv)

    if args.child:
        print(json.dumps(run_case(args.child, args.seconds, args.trials)))
        return 0

    cases = [c for c in args.cases.split(",") if c]
    unknown = sorted(set(cases) - set(CASES))
    if unknown:
        parser.error(f"unknown cases {unknown}; known: {', '.join(CASES)}")
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    load_before = os.getloadavg()
    results = []
    for case in cases:
        command = [
            sys.executable,
            __file__,
            "--child",
            case,
            "--seconds",
            str(args.seconds),
            "--trials",
            str(args.trials),
        ]
        out = subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout
        results.append(json.loads(out.strip().splitlines()[-1]))
        print(f"done: {case}", file=sys.stderr)
    load_after = os.getloadavg()
    print(markdown(results))
    print(
        f"\n{os.cpu_count()} CPUs, {platform.python_implementation()} {platform.python_version()}, "
        f"OMP_NUM_THREADS={env['OMP_NUM_THREADS']}, load average {load_before[0]:.2f} before / "
        f"{load_after[0]:.2f} after, {time.strftime('%Y-%m-%d %H:%M %Z')}"
    )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(
                {"results": results, "load_before": load_before, "load_after": load_after}, handle, indent=2
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
