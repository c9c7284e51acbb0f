"""``untwine train`` and ``untwine export``."""

from __future__ import annotations

import argparse
import textwrap
from pathlib import Path
from typing import Any

_INDENT = 18  # column of the model descriptions and parameter lists in --help


def _override_text(value: Any) -> str:
    """A default as it is written in a key=value override (see untwine.utils.overrides)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _models_help() -> str:
    """Every model of the model table with its description, its parameters' defaults and what they take."""
    from untwine.models import MODELS

    lines = [
        "models (model=NAME) and their parameters (model.PARAM=VALUE, shown at their defaults, with what",
        "each takes; other values are refused before training):",
    ]
    for name, entry in MODELS.items():
        lines.append(f"  {name:<{_INDENT - 3}} {entry.description}")
        params = " ".join(
            f"model.{p.name}={_override_text(p.default)} ({p.allowed()})" for p in entry.param_specs
        )
        lines += textwrap.wrap(
            params or "(no parameters)",
            width=100,
            initial_indent=" " * _INDENT,
            subsequent_indent=" " * _INDENT,
            break_on_hyphens=False,
        )
    return "\n".join(lines)


def register(subparsers) -> None:
    from untwine.training import TrainConfig

    parser = subparsers.add_parser(
        "train",
        help="train a model (config as key=value overrides)",
        description=(
            "Train a model. Configuration is given as key=value overrides, e.g.\n"
            "  untwine train model=beta_vae model.beta=4 dataset=procedural_dsprites steps=5000 seed=0\n"
            + textwrap.fill(
                f"Keys: model, model.<param>, {', '.join(k for k in TrainConfig.keys() if k != 'model')}. "
                "Unknown keys are errors.",
                width=100,
                break_on_hyphens=False,
            )
        ),
        epilog=_models_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    parser.add_argument("--out", type=Path, help="run directory (default runs/<model>-<dataset>-seed<seed>)")
    parser.add_argument(
        "--resume", type=Path, metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint"
    )
    parser.add_argument("--device", help="force a device (cpu, cuda, cuda:N); same as device=...")
    parser.set_defaults(func=_train)

    export = subparsers.add_parser(
        "export",
        help="export a trained run's mean encoder as TorchScript",
        description="Write RUN_DIR's mean encoder as TorchScript (input NHWC float32 in [0,1], output codes).",
    )
    export.add_argument("run_dir", type=Path)
    export.add_argument("--out", type=Path, help="output file (default RUN_DIR/encoder_mean.pt)")
    export.set_defaults(func=_export)


def _train(args) -> int:
    from untwine.training import TrainConfig, train

    if args.resume is not None:
        if args.overrides:
            raise ValueError("--resume continues with the run's saved config; do not pass overrides")
        run_dir = train(None, args.resume, resume=True)
    else:
        overrides = list(args.overrides) + ([f"device={args.device}"] if args.device else [])
        config = TrainConfig.from_overrides(overrides)
        run_dir = args.out or Path("runs") / f"{config.model}-{config.dataset}-seed{config.seed}"
        train(config, run_dir)
    print(f"run finished: {run_dir}")
    return 0


def _export(args) -> int:
    from untwine.training import export_torchscript

    path = export_torchscript(args.run_dir, args.out or args.run_dir / "encoder_mean.pt")
    print(f"wrote {path}")
    return 0
