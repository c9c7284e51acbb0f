"""``untwine data``: list, inspect, download, verify, prepare and show datasets.

* ``untwine data list``                 every dataset: kind, whether its files are on disk, its factors
* ``untwine data info NAME``            description, factors, files, download sources and checksums
* ``untwine data download NAME``        fetch the published files (resumable, checksummed, atomic)
* ``untwine data verify NAME``          checksums and layout checks of the files on disk
* ``untwine data prepare NAME``         convert to the memory-mappable ``.npy`` layout loads prefer
* ``untwine data show NAME --out PNG``  a picture of random samples and one traversal per factor

``--root`` (or ``$UNTWINE_DATA``) chooses the data root; each dataset lives in a folder below it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from untwine.data.paths import data_root


def _sizes(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _common(parser: argparse.ArgumentParser, name: bool = True, sizes: bool = False) -> None:
    if name:
        parser.add_argument("name", metavar="NAME", help="dataset name (see `untwine data list`)")
    parser.add_argument("--root", help="data root (default: $UNTWINE_DATA or ~/.cache/untwine)")
    if sizes:
        # Test-only: the full factor grid of reduced fixture files written in the published format.
        parser.add_argument("--factor-sizes", type=_sizes, default=None, help=argparse.SUPPRESS)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "data",
        help="datasets: list, info, download, verify, prepare, show",
        description=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="data_command", metavar="ACTION")
    parser.set_defaults(func=lambda args: _help(parser))

    p = actions.add_parser("list", help="every dataset, its factors and whether it is on disk")
    _common(p, name=False)
    p.set_defaults(func=cmd_list)

    p = actions.add_parser("info", help="one dataset in detail: factors, files, download sources")
    _common(p)
    p.set_defaults(func=cmd_info)

    p = actions.add_parser("download", help="download the published files of a dataset")
    _common(p)
    p.add_argument("--force", action="store_true", help="download again even if the files are present")
    p.add_argument("--keep-archives", action="store_true", help="keep .gz/.tar.gz files after extracting")
    p.add_argument("--base-url", help="fetch every file from this base URL (a mirror) instead")
    p.add_argument("--timeout", type=float, default=60.0, help="network timeout in seconds (default 60)")
    p.set_defaults(func=cmd_download)

    p = actions.add_parser("verify", help="check checksums and layout of the files on disk")
    _common(p, sizes=True)
    p.set_defaults(func=cmd_verify)

    p = actions.add_parser("prepare", help="convert to the memory-mappable .npy layout (atomic)")
    _common(p, sizes=True)
    p.add_argument("--force", action="store_true", help="rebuild the prepared file even if it exists")
    p.set_defaults(func=cmd_prepare)

    p = actions.add_parser("show", help="save a PNG of samples and factor traversals")
    _common(p, sizes=True)
    p.add_argument("--out", type=Path, default=None, help="PNG path (default: NAME_overview.png)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.set_defaults(func=cmd_show)


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _factors(names, sizes) -> str:
    return " ".join(f"{n}={s}" for n, s in zip(names, sizes, strict=True))


def _root_line(root) -> str:
    where = Path(root).expanduser() if root else data_root()
    return f"data root: {where} (set UNTWINE_DATA or pass --root to change it)"


def cmd_list(args) -> int:
    from untwine.data.prepare import status
    from untwine.data.registry import SPECS

    rows = [("NAME", "KIND", "STATUS", "FACTORS")]
    for name, spec in SPECS.items():
        kind = "procedural" if spec.procedural else "real"
        state = status(name, args.root)
        if state.startswith("missing: ") and state.count(", ") > 1:  # keep the table narrow
            files = state[len("missing: ") :].split(", ")
            state = f"missing: {files[0]} and {len(files) - 1} more"
        rows.append((name, kind, state, _factors(spec.factor_names, spec.factor_sizes)))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row[:3], widths, strict=True)) + "  " + row[3])
    print(_root_line(args.root))
    return 0


def cmd_info(args) -> int:
    import numpy as np

    from untwine.data import download
    from untwine.data.prepare import prepared_file, status
    from untwine.data.registry import get_spec

    spec = get_spec(args.name)
    h, w, c = spec.observation_shape
    print(f"{spec.name}: {spec.description}")
    print(f"  observations: {h}x{w}x{c} float32 in [0, 1]")
    combos = int(np.prod(spec.factor_sizes))
    print(f"  factors:      {_factors(spec.factor_names, spec.factor_sizes)} ({combos} combinations)")
    if spec.nuisance:
        print(f"  nuisance:     {', '.join(spec.nuisance)} (drawn at random for each observation)")
    if spec.procedural:
        print("  kind:         procedural (generated on the fly; nothing to download)")
        return 0
    directory = spec.data_dir(args.root)
    print(f"  folder:       {directory}")
    print(f"  status:       {status(spec.name, args.root)}")
    print("  files:")
    for name in spec.files:
        print(f"    {name}: {'present' if (directory / name).exists() else 'missing'}")
    prepared = prepared_file(spec.name, args.root)
    state = "present" if prepared.exists() else f"not prepared (`untwine data prepare {spec.name}`)"
    print(f"  prepared:     {prepared.name}: {state}")
    print("  download:")
    for remote in download.DOWNLOADS.get(spec.name, ()):
        checksum = f"MD5 {remote.md5}" if remote.md5 else "no published checksum: downloaded unverified"
        then = {"gunzip": ", then decompressed", "cars-folder": ", then its cars/ folder extracted"}.get(
            remote.extract or "", ""
        )
        print(f"    {remote.url}{then}")
        print(f"      {checksum} ({remote.checksum_source})")
    return 0


def cmd_download(args) -> int:
    from untwine.data.download import download_dataset

    def log(message: str) -> None:
        print(message, flush=True)

    paths = download_dataset(
        args.name,
        args.root,
        base_url=args.base_url,
        force=args.force,
        keep_archives=args.keep_archives,
        timeout=args.timeout,
        log=log,
    )
    print(f"{args.name}: ready ({len(paths)} file(s) in {paths[0].parent if paths else '-'})")
    return 0


def cmd_verify(args) -> int:
    from untwine.data.prepare import verify_dataset
    from untwine.data.registry import get_spec

    if get_spec(args.name).procedural:
        print(f"{args.name}: procedural, nothing on disk to verify")
        return 0
    report = verify_dataset(args.name, args.root, factor_sizes=args.factor_sizes)
    for state, message in report.lines:
        print(f"  {state:<10} {message}")
    print(f"{args.name}: {'OK' if report.ok else 'FAILED'}")
    return 0 if report.ok else 1


def cmd_prepare(args) -> int:
    from untwine.data.prepare import prepare_dataset

    path = prepare_dataset(args.name, args.root, force=args.force, factor_sizes=args.factor_sizes)
    print(f"{args.name}: loads will read {path}")
    return 0


def cmd_show(args) -> int:
    from untwine.data.registry import get_dataset

    try:
        from untwine.visualisation.images import dataset_overview, save_png
    except ImportError as error:  # pragma: no cover - only while the module is being written
        print(f"untwine data show: the visualisation module is unavailable ({error})", file=sys.stderr)
        return 1
    kwargs = {"factor_sizes": args.factor_sizes} if args.factor_sizes else {}
    dataset = get_dataset(args.name, args.root, **kwargs)
    picture = dataset_overview(dataset, args.seed)
    out = args.out if args.out is not None else Path(f"{args.name}_overview.png")
    save_png(out, picture)
    print(f"{args.name}: wrote {out} ({picture.shape[1]}x{picture.shape[0]})")
    return 0
