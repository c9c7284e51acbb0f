"""``untwine train`` and ``untwine export``."""

from __future__ import annotations

from pathlib import Path


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a model (config as key=value overrides)",
        description=(
            "Train a model. Configuration is given as key=value overrides, e.g. "
            "`untwine train model=beta_vae model.beta=4 dataset=procedural_dsprites steps=5000 seed=0`. "
            "Keys: model, model.<param>, dataset, steps, batch_size, seed, learning_rate, num_latents, "
            "architecture, encoder_kernels, reconstruction, checkpoint_every, log_every, eval_batches, device, "
            "threads, channels_last, bf16, progress. Unknown keys are errors."
        ),
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
