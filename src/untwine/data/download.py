"""Download the published dataset files: ``untwine data download NAME``.

Every transfer uses only :mod:`urllib` and is

* **resumable** -- bytes go to ``<file>.part``; a later run asks for the rest with an HTTP ``Range``
  request (and starts over if the server ignores it);
* **checksummed while streaming** -- the MD5 of the bytes (those already in the ``.part`` file first)
  is compared with the published one;
* **atomic** -- the ``.part`` file is renamed to its final name only when the transfer is complete and
  the checksum matches.  A wrong checksum deletes the ``.part`` file; a cut-off transfer keeps it for
  resuming; in both cases nothing appears under the final name and a :class:`DownloadError` says why.

Post-processing is atomic too: ``.gz`` files (SmallNORB) are decompressed to a temporary name and
renamed; the ``cars`` folder of the Cars3D archive is extracted into a temporary folder and renamed.
The MD5s of such derived files are recorded in ``.untwine-checksums.json`` in the dataset folder so
that ``untwine data verify`` can later tell whether they changed.

Checksums: the MD5s are those published by the ``disent`` library (nmichlo/disent,
``disent/dataset/data/_groundtruth__*.py``, its "full" file hashes) except for the dSprites ``.npz``,
whose MD5 ``7da33b31...`` is published in the download code of several independent projects (disent
lists only the ``.hdf5`` version).  No checksum is published for The Scream (Wikimedia Commons may
replace the file); it is downloaded unverified, with a warning that prints its MD5.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import http.client
import json
import os
import shutil
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from untwine.utils.io import atomic_open, atomic_write_json, share_like_new_file

USER_AGENT = "untwine-dataset-downloader/0.1"
MANIFEST = ".untwine-checksums.json"
_CHUNK = 1 << 20
_DISENT = "nmichlo/disent, disent/dataset/data/_groundtruth__{}.py (MD5 of the whole file)"


class DownloadError(RuntimeError):
    """A download failed; the message says why and what was left on disk."""


class ChecksumMismatchError(DownloadError):
    """The downloaded bytes do not have the published checksum (the download was deleted)."""


@dataclass(frozen=True)
class RemoteFile:
    """One published file.

    ``filename`` is the name the downloaded bytes get in the dataset folder; ``extract`` says how it is
    post-processed (None, ``"gunzip"``, or ``"cars-folder"``: extract the ``cars/`` folder of a
    ``.tar.gz``) and ``target`` what the dataset then needs (default: ``filename`` itself).
    ``md5`` is the published MD5 of the downloaded bytes, or None when none is published.
    """

    url: str
    filename: str
    md5: str | None
    checksum_source: str
    extract: str | None = None
    target: str | None = None

    @property
    def product(self) -> str:
        return self.target or self.filename


def _norb(split: str, code: str, kind: str, md5: str) -> RemoteFile:
    name = f"smallnorb-5x{code}x9x18x6x2x96x96-{split}-{kind}.mat"
    return RemoteFile(
        f"https://cs.nyu.edu/~ylclab/data/norb-v1.0-small/{name}.gz",
        f"{name}.gz",
        md5,
        _DISENT.format("norb"),
        extract="gunzip",
        target=name,
    )


DSPRITES_NPZ = RemoteFile(
    "https://raw.githubusercontent.com/deepmind/dsprites-dataset/master/dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz",
    "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz",
    "7da33b31b13a06f4b04a70402ce90c2e",
    "published in the download code of several projects (disent lists only the .hdf5)",
)
DSPRITES_HDF5 = RemoteFile(
    "https://raw.githubusercontent.com/deepmind/dsprites-dataset/master/dsprites_ndarray_co1sh3sc6or40x32y32_64x64.hdf5",
    "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.hdf5",
    "b331c4447a651c44bf5e8ae09022e230",
    _DISENT.format("dsprites"),
)
SCREAM = RemoteFile(
    "https://upload.wikimedia.org/wikipedia/commons/f/f4/The_Scream.jpg",
    "scream.jpg",
    None,
    "no checksum is published (Wikimedia Commons may replace the file)",
)
SHAPES3D = RemoteFile(
    "https://storage.googleapis.com/3d-shapes/3dshapes.h5",
    "3dshapes.h5",
    "099a2078d58cec4daad0702c55d06868",
    _DISENT.format("shapes3d"),
)
MPI3D = {
    variant: RemoteFile(
        f"https://storage.googleapis.com/disentanglement_dataset/Final_Dataset/mpi3d_{variant}.npz",
        f"mpi3d_{variant}.npz",
        md5,
        _DISENT.format("mpi3d"),
    )
    for variant, md5 in (
        ("toy", "55889cb7c7dfc655d6e0277beee88868"),
        ("realistic", "59a6225b88b635365f70c91b3e52f70f"),
        ("real", "0f33f609918fb5c97996692f91129802"),
    )
}
CARS3D = RemoteFile(
    "http://www.scottreed.info/files/nips2015-analogy-data.tar.gz",
    "nips2015-analogy-data.tar.gz",
    "4e866a7919c1beedf53964e6f7a23686",
    _DISENT.format("cars3d"),
    extract="cars-folder",
    target="cars",
)
SMALLNORB = (
    _norb("training", "46789", "dat", "66054832f9accfe74a0f4c36a75bc0a2"),
    _norb("training", "46789", "cat", "23c8b86101fbf0904a000b43d3ed2fd9"),
    _norb("training", "46789", "info", "51dee1210a742582ff607dfd94e332e3"),
    _norb("testing", "01235", "dat", "e4ad715691ed5a3a5f138751a4ceb071"),
    _norb("testing", "01235", "cat", "5aa791cd7e6016cf957ce9bdb93b8603"),
    _norb("testing", "01235", "info", "a9454f3864d7fd4bb3ea7fc3eb84924e"),
)

_TORCHVISION = "torchvision.datasets.{} resources (the MD5 of the published .gz)"
MNIST_FILES = tuple(
    RemoteFile(
        f"https://ossci-datasets.s3.amazonaws.com/mnist/{name}", name, md5, _TORCHVISION.format("MNIST")
    )
    for name, md5 in (
        ("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
        ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
        ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
        ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"),
    )
)
FASHION_MNIST_FILES = tuple(
    RemoteFile(
        f"https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/{name}",
        name,
        md5,
        _TORCHVISION.format("FashionMNIST"),
    )
    for name, md5 in (
        ("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
        ("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe"),
        ("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79"),
        ("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310"),
    )
)

# What `untwine data download NAME` fetches, per dataset name.
DOWNLOADS: dict[str, tuple[RemoteFile, ...]] = {
    "dsprites_full": (DSPRITES_NPZ,),
    "dsprites_noshape": (DSPRITES_NPZ,),
    "color_dsprites": (DSPRITES_NPZ,),
    "noisy_dsprites": (DSPRITES_NPZ,),
    "scream_dsprites": (DSPRITES_NPZ, SCREAM),
    "shapes3d": (SHAPES3D,),
    "mpi3d_toy": (MPI3D["toy"],),
    "mpi3d_realistic": (MPI3D["realistic"],),
    "mpi3d_real": (MPI3D["real"],),
    "cars3d": (CARS3D,),
    "smallnorb": SMALLNORB,
    "mnist": MNIST_FILES,
    "fashion_mnist": FASHION_MNIST_FILES,
}
# Published files a dataset can also read (checked by `untwine data verify` when present).
ALTERNATIVES: dict[str, tuple[RemoteFile, ...]] = {
    name: (DSPRITES_HDF5,)
    for name in ("dsprites_full", "dsprites_noshape", "color_dsprites", "noisy_dsprites", "scream_dsprites")
}

Log = Callable[[str], None]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def file_md5(path: str | os.PathLike, chunk_size: int = _CHUNK) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000
    return f"{n:.1f} GB"


def _total_from_content_range(value: str | None) -> int | None:
    """``bytes 100-199/200`` or ``bytes */200`` -> 200 (None when absent or unknown)."""
    if not value or "/" not in value:
        return None
    total = value.rsplit("/", 1)[1].strip()
    return int(total) if total.isdigit() else None


def _start_from_content_range(value: str | None) -> int | None:
    if not value or not value.startswith("bytes ") or "-" not in value:
        return None
    start = value[len("bytes ") :].split("-", 1)[0].strip()
    return int(start) if start.isdigit() else None


def download_file(
    remote: RemoteFile,
    directory: str | os.PathLike,
    *,
    url: str | None = None,
    timeout: float = 60.0,
    log: Log = _stderr,
    _restarted: bool = False,
) -> tuple[Path, str]:
    """Fetch ``remote`` (from ``url`` if given) into ``directory/remote.filename``; return (path, md5).

    Resumes from ``remote.filename + ".part"`` if present.  Raises :class:`ChecksumMismatchError`
    (the ``.part`` file is deleted) or :class:`DownloadError` (cut off: the ``.part`` file is kept for
    the next attempt); in both cases no file of the final name is created.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    url = url or remote.url
    final = directory / remote.filename
    part = directory / f"{remote.filename}.part"
    offset = part.stat().st_size if part.exists() else 0
    digest = hashlib.md5()
    if offset:
        with open(part, "rb") as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    complete_already = False
    try:
        response = urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 - http(s) URLs from the table
    except urllib.error.HTTPError as error:
        total = _total_from_content_range(error.headers.get("Content-Range") if error.headers else None)
        if error.code == 416 and offset and total == offset:
            complete_already, response = True, None  # the .part file already holds every byte
        elif error.code == 416 and offset and not _restarted:
            part.unlink()
            return download_file(remote, directory, url=url, timeout=timeout, log=log, _restarted=True)
        else:
            raise DownloadError(f"downloading {url} failed: HTTP {error.code} {error.reason}") from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise DownloadError(f"could not download {url}: {reason}") from None

    expected_total = offset if complete_already else None
    if response is not None:
        with response:
            status = getattr(response, "status", 200)
            length = response.headers.get("Content-Length")
            length = int(length) if length and length.isdigit() else None
            append = False
            if offset and status == 206:
                start = _start_from_content_range(response.headers.get("Content-Range"))
                if start != offset:
                    raise DownloadError(
                        f"{url}: asked to resume at byte {offset}, the server sent a range starting at {start}"
                    )
                append = True
                expected_total = offset + length if length is not None else None
                log(f"resuming {remote.filename} at {_human(offset)}")
            else:
                if offset:
                    log(f"{url} does not support resuming; starting {remote.filename} again")
                offset, digest = 0, hashlib.md5()
                expected_total = length
            received, cut, last_report = offset, None, time.monotonic()
            with open(part, "ab" if append else "wb") as out:
                try:
                    while chunk := response.read(_CHUNK):
                        out.write(chunk)
                        digest.update(chunk)
                        received += len(chunk)
                        if time.monotonic() - last_report > 10:
                            last_report = time.monotonic()
                            of = f" of {_human(expected_total)}" if expected_total else ""
                            log(f"  {remote.filename}: {_human(received)}{of}")
                except (http.client.HTTPException, OSError) as error:
                    cut = error
                out.flush()
                os.fsync(out.fileno())
            if cut is not None or (expected_total is not None and received != expected_total):
                of = f" of {expected_total}" if expected_total is not None else ""
                why = f" ({type(cut).__name__}: {cut})" if cut is not None else ""
                raise DownloadError(
                    f"the transfer of {url} was cut off after {received}{of} bytes{why}; nothing was written to "
                    f"{final}. The partial data is kept in {part}: run the download again to resume."
                )

    md5 = digest.hexdigest()
    if remote.md5 is not None and md5 != remote.md5.lower():
        with contextlib.suppress(FileNotFoundError):
            part.unlink()
        raise ChecksumMismatchError(
            f"checksum mismatch for {remote.filename} from {url}: expected MD5 {remote.md5} "
            f"({remote.checksum_source}), got {md5}. The download was deleted and nothing was written to {final}; "
            "try again later, or report the changed file."
        )
    if remote.md5 is None:
        log(f"warning: {remote.filename} is unverified: {remote.checksum_source}; its MD5 is {md5}")
    os.replace(part, final)
    return final, md5


# -- post-processing --------------------------------------------------------------------------------
def _read_manifest(directory: Path) -> dict:
    try:
        return json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return {}


def record_checksums(directory: Path, entries: dict[str, str], source: str) -> None:
    """Remember the MD5s of derived files (relative paths) in the folder's manifest."""
    manifest = _read_manifest(directory)
    for name, md5 in entries.items():
        manifest[name] = {"md5": md5, "derived_from": source}
    atomic_write_json(directory / MANIFEST, manifest)


def recorded_checksums(directory: str | os.PathLike) -> dict[str, str]:
    return {name: entry["md5"] for name, entry in _read_manifest(Path(directory)).items() if "md5" in entry}


def gunzip(source: Path, target: Path) -> str:
    """Decompress ``source`` to ``target`` atomically; return the MD5 of the decompressed bytes."""
    digest = hashlib.md5()
    try:
        with gzip.open(source, "rb") as stream, atomic_open(target, "wb") as out:
            while chunk := stream.read(_CHUNK):
                out.write(chunk)
                digest.update(chunk)
    except (gzip.BadGzipFile, EOFError, zlib.error) as error:
        raise DownloadError(
            f"could not decompress {source}: {error}; nothing was written to {target}"
        ) from None
    return digest.hexdigest()


def extract_folder(archive: Path, directory: Path, folder: str) -> dict[str, str]:
    """Extract the regular files under any ``.../<folder>/`` of a ``.tar.gz`` into ``directory/folder``.

    The files go to a temporary folder first, which is renamed when complete; paths are flattened to
    their names (no ``..`` or absolute path can escape).  Returns ``{"folder/name": md5}``.
    """
    target = directory / folder
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder}.", suffix=".tmp", dir=directory))
    checksums = {}
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                parts = PurePosixPath(member.name).parts
                if (
                    not member.isfile()
                    or len(parts) < 2
                    or parts[-2] != folder
                    or parts[-1] in ("", ".", "..")
                ):
                    continue
                digest = hashlib.md5()
                source = tar.extractfile(member)
                with source, open(tmp / parts[-1], "wb") as out:
                    while chunk := source.read(_CHUNK):
                        out.write(chunk)
                        digest.update(chunk)
                checksums[f"{folder}/{parts[-1]}"] = digest.hexdigest()
        if not checksums:
            raise DownloadError(f"{archive} has no '{folder}/' folder with files; nothing was extracted")
        old = None
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{folder}.old.", dir=directory))
            os.replace(target, old / folder)
        share_like_new_file(tmp)
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except (tarfile.TarError, EOFError, zlib.error, OSError) as error:
        raise DownloadError(
            f"could not extract {folder}/ from {archive}: {error}; nothing was written to {target}"
        ) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return checksums


def _postprocess(remote: RemoteFile, directory: Path, keep_archive: bool, log: Log) -> None:
    source = directory / remote.filename
    if remote.extract == "gunzip":
        checksums = {remote.product: gunzip(source, directory / remote.product)}
    elif remote.extract == "cars-folder":
        checksums = extract_folder(source, directory, remote.product)
    else:
        raise ValueError(f"unknown post-processing {remote.extract!r} for {remote.filename}")
    record_checksums(directory, checksums, remote.filename)
    log(f"{remote.product}: extracted from {remote.filename}")
    if not keep_archive:
        source.unlink()


# -- whole datasets ---------------------------------------------------------------------------------
def remote_files(name: str) -> tuple[RemoteFile, ...]:
    from untwine.data.registry import get_spec

    spec = get_spec(name)
    if spec.procedural:
        raise ValueError(f"{name} is procedural: it is generated on the fly and has nothing to download")
    try:
        return DOWNLOADS[name]
    except KeyError:
        raise ValueError(f"no download source is known for {name}") from None


def download_dataset(
    name: str,
    root: str | os.PathLike | None = None,
    *,
    files: Sequence[RemoteFile] | None = None,
    base_url: str | None = None,
    force: bool = False,
    keep_archives: bool = False,
    timeout: float = 60.0,
    log: Log = _stderr,
) -> list[Path]:
    """Download (and unpack) every file dataset ``name`` needs into its folder under the data root.

    ``files`` replaces the published table and ``base_url`` the location of every file (its name is
    appended) -- both for tests and mirrors.  Files already present are skipped unless ``force``.
    Returns the paths of what the dataset needs.
    """
    from untwine.data.registry import get_spec

    table = tuple(files) if files is not None else remote_files(name)
    directory = get_spec(name).data_dir(root)
    assert directory is not None
    directory.mkdir(parents=True, exist_ok=True)
    products = []
    for remote in table:
        product = directory / remote.product
        products.append(product)
        if product.exists() and not force:
            log(f"{remote.product}: already present in {directory}")
            continue
        downloaded = directory / remote.filename
        if not (remote.extract and downloaded.exists() and not force):
            url = (
                remote.url if base_url is None else f"{base_url.rstrip('/')}/{remote.url.rsplit('/', 1)[-1]}"
            )
            log(f"downloading {url}")
            path, md5 = download_file(remote, directory, url=url, timeout=timeout, log=log)
            verified = "checksum verified" if remote.md5 else "unverified"
            log(f"{path.name}: {_human(path.stat().st_size)}, MD5 {md5} ({verified})")
        if remote.extract:
            _postprocess(remote, directory, keep_archives, log)
    return products
