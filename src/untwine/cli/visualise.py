"""``untwine visualise RUN_DIR``: pictures of a trained run and its self-contained HTML report."""

from __future__ import annotations

from pathlib import Path


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "visualise",
        aliases=["visualize"],  # both spellings: the issue tracker and half the field write it with a z
        help="draw a trained run; write RUN_DIR/report.html",
        description=(
            "Write reconstructions, prior samples, latent traversals labelled by KL, the five animated latent "
            "cycles of disentanglement_lib (GIF), training curves and metric heatmaps to RUN_DIR/visualisation "
            "(or --out), and a self-contained HTML report (images embedded) to RUN_DIR/report.html."
        ),
    )
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    parser.add_argument("--out", type=Path, help="folder for the pictures (default RUN_DIR/visualisation)")
    parser.add_argument("--report", type=Path, help="path of the HTML report (default RUN_DIR/report.html)")
    parser.add_argument("--no-report", action="store_true", help="write the pictures only")
    parser.add_argument(
        "--device", default="cpu", help="device for the model: cpu (default), cuda, cuda:N, auto"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="which images are shown and the prior samples (default 0)"
    )
    parser.add_argument(
        "--num-animations", type=int, default=3, help="base images per animation kind (default 3)"
    )
    parser.add_argument("--num-frames", type=int, default=20, help="frames per animation (default 20)")
    parser.add_argument("--fps", type=float, default=10.0, help="animation frame rate (default 10)")
    parser.add_argument(
        "--num-traversals", type=int, default=3, help="base images with a traversal picture (default 3)"
    )
    parser.add_argument("--traversal-steps", type=int, default=9, help="values per traversal row (default 9)")
    parser.add_argument(
        "--traversal-interval",
        type=float,
        nargs=2,
        default=(-2.0, 2.0),
        metavar=("LOW", "HIGH"),
        help="values a traversal sets the latent to (default -2 2)",
    )
    parser.set_defaults(func=_visualise)


def _visualise(args) -> int:
    from untwine.report import VisualisationSettings, visualise_run, write_run_report
    from untwine.visualisation.run_visuals import default_out_dir

    settings = VisualisationSettings(
        seed=args.seed,
        num_animations=args.num_animations,
        num_frames=args.num_frames,
        fps=args.fps,
        num_traversals=args.num_traversals,
        traversal_steps=args.traversal_steps,
        traversal_interval=tuple(args.traversal_interval),
    )
    out_dir = args.out or default_out_dir(args.run_dir)
    if args.no_report:
        visualise_run(args.run_dir, out_dir, settings=settings, device=args.device)
        print(f"wrote pictures to {out_dir}")
        return 0
    path = write_run_report(args.run_dir, out_dir, args.report, settings=settings, device=args.device)
    print(f"wrote pictures to {out_dir}")
    print(f"wrote {path}")
    return 0
