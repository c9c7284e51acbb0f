"""Run every benchmark in turn (``make bench``); each prints a markdown table for docs/benchmarks.md.

    python benchmarks/run_all.py [--quick]

``--quick`` runs a reduced version of each (fewer steps and cases) to check they work.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

BENCHMARKS = {
    "data_throughput.py": ([], ["--trials", "2", "--cases", "procedural_dsprites,procedural_shapes3d"]),
    "train_throughput.py": ([], ["--steps", "20", "--models", "beta_vae", "--skip-variants"]),
    "metric_suite.py": ([], ["--cases", "small/rotated", "--modes", "fast"]),
}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    failed = []
    for script, (full, quick) in BENCHMARKS.items():
        print(f"\n## {script}\n", flush=True)
        result = subprocess.run([sys.executable, str(HERE / script), *(quick if args.quick else full)])
        if result.returncode:
            failed.append(script)
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
