"""The ``untwine`` command: a thin layer that parses arguments and calls the library.

Each sub-command lives in its own module with a ``register(subparsers)`` function that adds its parser
and sets ``func``; the list below is explicit so nothing registers itself by being imported.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from untwine import __version__

# (module, help) for every sub-command, in the order ``untwine --help`` shows them.
_COMMANDS = (
    ("untwine.cli.data", "datasets: list, info, download, verify, prepare, show"),
    ("untwine.cli.train", "train a model; export a trained encoder"),
    ("untwine.cli.evaluate", "score a trained run or any encoder with the metrics"),
    ("untwine.cli.visualise", "draw a trained run and write its HTML report"),
    ("untwine.cli.study", "reproducible sweeps: run, status, reproduce, export, report, reevaluate, udr"),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="untwine",
        description="Learn and evaluate disentangled representations: data, train, evaluate, visualise, study.",
    )
    parser.add_argument("--version", action="version", version=f"untwine {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name, _ in _COMMANDS:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from untwine.training import RunDirectoryError, TrainingInterrupted

    try:
        result = args.func(args)
    except (ValueError, KeyError, FileNotFoundError, RuntimeError, RunDirectoryError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"untwine {args.command}: error: {message}", file=sys.stderr)
        return 1
    except TrainingInterrupted as stopped:
        print(f"untwine {args.command}: {stopped}", file=sys.stderr)
        return 130  # the shell's code for "ended by SIGINT"
    except KeyboardInterrupt:
        print(f"untwine {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(result or 0)
