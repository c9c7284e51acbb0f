"""The study metric suite on a *trained model*, encoding included, against an estimate of dlib's time.

``benchmarks/metric_suite.py`` times the metrics on the reference cases, whose "images" are factor
vectors: encoding costs nothing there.  For a trained model the encoder matters: disentanglement_lib's
suite pushes about 3 million images through it (its BetaVAE and FactorVAE scores draw every image
afresh), untwine at most one pass per distinct image (``untwine.metrics.representation.CodeSource``).

This script evaluates one trained run (``untwine train`` or a study run directory) with the nine study
metrics in faithful and/or fast mode and reports

* untwine's wall time, the images it encoded, and the classifier-fit CPU seconds;
* an estimate of disentanglement_lib's time for the same work on this machine: the seconds its own
  code took for the same nine metrics on dSprites-sized codes (``tests/data/reference/expected.json``,
  ``--reference-case``) plus the images its suite encodes with these parameters times the seconds per
  image of the same network measured here in dlib's way (fp32, NCHW, batch 64, one thread, no
  per-image cache).  The encoder timing is a stand-in for TensorFlow 1's, which cannot run here.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/evaluate_trained.py RUN_DIR --modes faithful,fast
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "data" / "reference"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from metric_suite import reference_seconds  # noqa: E402
from untwine.data import get_dataset  # noqa: E402
from untwine.metrics import evaluate_representation, resolve_metrics  # noqa: E402
from untwine.metrics.registry import METRICS, expected_requests  # noqa: E402
from untwine.training.loop import load_run_config  # noqa: E402
from untwine.training.representation import load_trained_model, representation_function  # noqa: E402


def dlib_images_encoded(parameters: dict[str, dict]) -> int:
    """Images disentanglement_lib's study suite passes through the encoder with these parameters.

    BetaVAE: (num_train + num_eval) points x batch_size pairs x 2 images; FactorVAE: num_variance_estimate
    + (num_train + num_eval) x batch_size; every array metric draws its own train (and test) sample;
    the downstream tasks draw a fresh train and test sample for every training-set size.
    """
    total = expected_requests(list(parameters), parameters)  # BetaVAE and FactorVAE, as untwine draws them
    for name, p in parameters.items():
        if name.startswith("downstream_task_"):
            total += sum(int(n) + p["num_test"] for n in p["num_train"])
        elif name not in ("beta_vae_sklearn", "factor_vae_metric"):
            total += p["num_train"] + p.get("num_test", 0)
    return total


def dlib_style_seconds_per_image(run_dir: Path, channels: int, images: int = 6400) -> float:
    """Seconds per image of the run's encoder in fp32, NCHW, batch 64, one thread (dlib's way)."""
    _, model = load_trained_model(run_dir, "cpu")
    model = model.to(memory_format=torch.contiguous_format)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    batch = torch.rand(64, channels, 64, 64, generator=torch.Generator().manual_seed(0))
    encoder = model.encoder
    try:
        with torch.inference_mode():
            encoder(batch)  # warm-up
            start = time.perf_counter()
            for _ in range(images // 64):
                encoder(batch)
            return (time.perf_counter() - start) / (images // 64 * 64)
    finally:
        torch.set_num_threads(threads)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--modes", default="faithful,fast")
    parser.add_argument("--reference-case", default="dsprites/rotated,dsprites/disentangled")
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    dataset = get_dataset(load_run_config(args.run_dir).dataset)
    names = resolve_metrics("study")
    parameters = {name: dict(METRICS[name].defaults) for name in names}
    per_image = dlib_style_seconds_per_image(args.run_dir, dataset.observation_shape[-1])
    dlib_images = dlib_images_encoded(parameters)
    cases = args.reference_case.split(",")
    dlib_metric_seconds = {case: sum(reference_seconds(case, name) for name in names) for case in cases}
    print(
        f"dlib-style encoding: {per_image * 1e3:.3f} ms/image x {dlib_images:,} images = "
        f"{per_image * dlib_images:.0f} s; dlib metric seconds: {dlib_metric_seconds}",
        flush=True,
    )

    rows = []
    for mode in args.modes.split(","):
        representation = representation_function(args.run_dir, "mean", device="auto")
        load = os.getloadavg()[0]
        start, cpu = time.perf_counter(), time.process_time()
        results = evaluate_representation(
            dataset, representation, metrics="study", seed=0, fast=mode == "fast", n_jobs=args.n_jobs
        )
        wall, main_cpu = time.perf_counter() - start, time.process_time() - cpu
        fit_cpu = {r["metric"]: r.get("fit_cpu_seconds", 0.0) for r in results.values()}
        cache = results[names[-1]]["code_cache"]
        first = next(iter(results.values()))
        row = {
            "grid_encode_seconds": first["grid_encode_seconds"],
            "encoder_precision": first["encoder_precision"],
            "mode": mode,
            "seconds": wall,
            "main_process_cpu_seconds": main_cpu,
            "fit_cpu_seconds": sum(fit_cpu.values()),
            "code_cache": cache,
            "load_average_before": load,
            "load_average_after": os.getloadavg()[0],
            "metric_seconds": {name: r["seconds"] for name, r in results.items()},
            "values": {name: r["values"] for name, r in results.items()},
        }
        rows.append(row)
        print(
            f"{mode:9s} {wall:7.1f} s wall, main CPU {main_cpu:.0f} s, "
            f"fit CPU summed over metrics (shared fits counted in each) {row['fit_cpu_seconds']:.0f} s, "
            f"grid encoded in {row['grid_encode_seconds']:.0f} s ({row['encoder_precision']}), "
            f"code cache {cache}, load {load:.1f} -> {row['load_average_after']:.1f}",
            flush=True,
        )
        for name, seconds in row["metric_seconds"].items():
            print(f"    {name:36s} {seconds:7.1f} s")

    print("\n| mode | untwine s | images encoded | dlib estimate s (reference case) | speed-up |")
    print("|---|---|---|---|---|")
    for row in rows:
        for case in cases:
            estimate = dlib_metric_seconds[case] + per_image * dlib_images
            print(
                f"| {row['mode']} | {row['seconds']:.0f} | {row['code_cache']['images_encoded']:,} | "
                f"{estimate:.0f} ({case}: {dlib_metric_seconds[case]:.0f} + encoding {per_image * dlib_images:.0f}) | "
                f"{estimate / row['seconds']:.1f}x |"
            )
    if len(rows) == 2:
        faithful, fast = rows
        worst = max(
            (abs(float(v) - float(fast["values"][m][k])), m, k)
            for m, values in faithful["values"].items()
            for k, v in values.items()
            if isinstance(v, int | float) and np.isfinite(v)
        )
        print(f"\nlargest |fast - faithful|: {worst[0]:.4f} ({worst[1]} / {worst[2]})")
    if args.out:
        args.out.write_text(
            json.dumps(
                {
                    "per_image_seconds": per_image,
                    "dlib_images": dlib_images,
                    "dlib_metric_seconds": dlib_metric_seconds,
                    "rows": rows,
                },
                indent=1,
            )
        )


if __name__ == "__main__":
    main()
