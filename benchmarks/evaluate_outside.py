"""One trained run scored three ways, side by side: from its run directory, as a TorchScript file and as
an ONNX file (``untwine evaluate --torchscript / --onnx``), with the same metrics, seed and mode.

The three must give the same values up to float32 differences between runtimes (printed); the times show
what loading an outside encoder costs.  The ONNX file is exported here from the run's TorchScript mean
encoder with ``torch.onnx.export``.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/evaluate_outside.py RUN_DIR --metrics mig,dci,sap --fast
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--metrics", default="mig,dci,sap")
    parser.add_argument("--fast", action="store_true")
    args = parser.parse_args()

    import torch

    from untwine.training.loop import load_run_config
    from untwine.training.representation import export_torchscript

    dataset = load_run_config(args.run_dir).dataset
    python = [sys.executable, "-m", "untwine"]
    mode = ["--fast"] if args.fast else []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        script = export_torchscript(args.run_dir, tmp / "encoder.pt")
        module = torch.jit.load(str(script))
        onnx_path = tmp / "encoder.onnx"
        torch.onnx.export(
            module,
            (torch.rand(2, 64, 64, 1),),
            str(onnx_path),
            dynamo=False,
            input_names=["images"],
            output_names=["codes"],
            dynamic_axes={"images": {0: "n"}, "codes": {0: "n"}},
        )
        rows = []
        copy = tmp / "run"
        subprocess.run(["cp", "-r", str(args.run_dir), str(copy)], check=True)
        subprocess.run(["rm", "-rf", str(copy / "metrics")], check=True)  # only this evaluation's files
        for label, command, out in (
            ("run directory", [*python, "evaluate", str(copy), "--metrics", args.metrics, *mode], copy),
            (
                "TorchScript",
                [
                    *python,
                    "evaluate",
                    "--torchscript",
                    str(script),
                    "--dataset",
                    dataset,
                    "--metrics",
                    args.metrics,
                    *mode,
                    "--out",
                    str(tmp / "ts"),
                ],
                tmp / "ts",
            ),
            (
                "ONNX",
                [
                    *python,
                    "evaluate",
                    "--onnx",
                    str(onnx_path),
                    "--dataset",
                    dataset,
                    "--metrics",
                    args.metrics,
                    *mode,
                    "--out",
                    str(tmp / "onnx"),
                ],
                tmp / "onnx",
            ),
        ):
            seconds = timed(command)
            values = {
                p.stem: json.loads(p.read_text())["values"]
                for p in sorted((out / "metrics" / "mean").glob("*.json"))
            }
            rows.append((label, seconds, values))
        for label, seconds, values in rows:
            summary = ", ".join(
                f"{m}:{k}={v:.4f}"
                for m, vals in values.items()
                for k, v in vals.items()
                if "factor" not in k and isinstance(v, float)
            )
            print(f"{label:14s} {seconds:7.1f} s   {summary}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
