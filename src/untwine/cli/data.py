"""``untwine data``: list, inspect, download, verify, prepare and show datasets (being written)."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    parser = subparsers.add_parser("data", help="datasets: list, info, download, verify, prepare, show")
    parser.set_defaults(func=lambda args: parser.print_help())
    parser.add_subparsers(dest="data_command", metavar="ACTION")


__all__ = ["register", "argparse"]
