"""Storage helpers shared by the real-dataset loaders: nothing here ever holds a whole image grid as float.

* ``.npz`` archives are zip files of ``.npy`` members.  :func:`npz_member` reads one member's ``.npy``
  header without reading its data.  A member stored uncompressed (``numpy.savez``) is read in place
  (:func:`npz_member_rows`): its data starts at the zip local-header offset + 30 + name length +
  extra length + the ``.npy`` header length.  A compressed member (``numpy.savez_compressed``)
  can only be streamed, chunk of rows by chunk of rows (:func:`iter_member_rows`).
* Prepared files are plain ``.npy`` files opened with ``numpy.load(mmap_mode="r")``; they are written
  atomically (:func:`write_npy_atomic`): a temporary file beside the destination, renamed when complete.
* :class:`RowFile` reads rows of a raw C-order array in a file (a ``.npy`` or an uncompressed ``.npz``
  member) with positional reads.  The multi-gigabyte grids (MPI3D, 3D Shapes) use it instead of a
  memory map: a memory map counts every page the kernel maps around a random access (read-ahead
  folios can be megabytes) in the process's resident size, while a read copies just the rows asked for.
* :class:`PackedBitImages` keeps binary images (dSprites) as 1 bit per pixel and unpacks only the
  rows asked for.
"""

from __future__ import annotations

import contextlib
import os
import struct
import tempfile
import threading
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from untwine.utils.io import atomic_open, share_like_new_file

_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")  # the 30-byte zip local file header
_LOCAL_SIGNATURE = b"PK\x03\x04"


def read_npy_header(handle, where: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    """Read a ``.npy`` magic string and header from ``handle``; return ``(shape, fortran_order, dtype)``."""
    try:
        version = np.lib.format.read_magic(handle)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(handle)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(handle)
        else:
            raise ValueError(f"unsupported .npy format version {version}")
    except ValueError as error:
        raise ValueError(f"{where} is not a valid .npy array: {error}") from None
    return tuple(int(s) for s in shape), bool(fortran), np.dtype(dtype)


@dataclass(frozen=True)
class NpyMember:
    """One array inside an ``.npz`` archive: its header and where its raw data starts (if stored)."""

    path: Path
    key: str
    shape: tuple[int, ...]
    dtype: np.dtype
    fortran_order: bool
    compressed: bool
    data_offset: int | None  # byte offset of the array data in the archive; None when compressed

    @property
    def where(self) -> str:
        return f"array '{self.key}' of {self.path}"


def open_zip(path: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as error:
        raise ValueError(
            f"{path} is not a readable .npz (zip) archive ({error}); the file may be truncated or not the "
            "published one -- delete it and download it again"
        ) from None


def npz_keys(path: Path) -> list[str]:
    with open_zip(path) as archive:
        return [n[: -len(".npy")] for n in archive.namelist() if n.endswith(".npy")]


def npz_member(path: str | os.PathLike, key: str) -> NpyMember:
    """Describe array ``key`` of the ``.npz`` at ``path`` (reads headers only, never the data)."""
    path = Path(path)
    with open_zip(path) as archive:
        try:
            info = archive.getinfo(f"{key}.npy")
        except KeyError:
            keys = [n[: -len(".npy")] for n in archive.namelist()]
            raise ValueError(f"{path} has no array '{key}' (it holds {keys})") from None
        compressed = info.compress_type != zipfile.ZIP_STORED
        where = f"array '{key}' of {path}"
        if compressed:
            with archive.open(info) as member:
                shape, fortran, dtype = read_npy_header(member, where)
            return NpyMember(path, key, shape, dtype, fortran, True, None)
    with open(path, "rb") as handle:
        handle.seek(info.header_offset)
        fields = _LOCAL_HEADER.unpack(handle.read(_LOCAL_HEADER.size))
        if fields[0] != _LOCAL_SIGNATURE:
            raise ValueError(f"{path}: corrupt zip local header for '{key}'")
        name_length, extra_length = fields[-2], fields[-1]
        handle.seek(info.header_offset + _LOCAL_HEADER.size + name_length + extra_length)
        member_start = handle.tell()
        shape, fortran, dtype = read_npy_header(handle, where)
        data_offset = handle.tell()
    expected_end = member_start + info.file_size
    if data_offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize != expected_end:
        raise ValueError(
            f"{where}: the header promises {shape} {dtype} but the member holds {info.file_size} bytes"
        )
    return NpyMember(path, key, shape, dtype, fortran, False, data_offset)


def iter_member_rows(member: NpyMember, chunk_rows: int) -> Iterator[np.ndarray]:
    """Yield the rows of an ``.npz`` member in order, ``chunk_rows`` at a time (each chunk a fresh array).

    Works for compressed and uncompressed members; memory use is one chunk.
    """
    if member.fortran_order:
        raise ValueError(f"{member.where} is stored in Fortran order; expected C order")
    row_shape = member.shape[1:]
    row_bytes = int(np.prod(row_shape, dtype=np.int64)) * member.dtype.itemsize
    with open_zip(member.path) as archive, archive.open(f"{member.key}.npy") as stream:
        read_npy_header(stream, member.where)
        done = 0
        while done < member.shape[0]:
            rows = min(chunk_rows, member.shape[0] - done)
            buffer = bytearray(rows * row_bytes)
            view = memoryview(buffer)
            filled = 0
            try:
                while filled < len(buffer):
                    n = stream.readinto(view[filled:])
                    if not n:
                        break
                    filled += n
            except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as error:
                raise ValueError(
                    f"{member.where} could not be read ({error}); the file is probably truncated"
                ) from None
            if filled < len(buffer):
                raise ValueError(
                    f"{member.where} ends after {done + filled // row_bytes} of {member.shape[0]} rows; "
                    "the file is truncated"
                )
            yield np.frombuffer(buffer, dtype=member.dtype).reshape((rows, *row_shape))
            done += rows


def open_npy(path: str | os.PathLike) -> np.ndarray:
    """Open a prepared ``.npy`` file as a read-only memory map, with a clear error if it is damaged."""
    try:
        return np.load(path, mmap_mode="r")
    except (ValueError, OSError) as error:
        raise ValueError(
            f"{path} is not a readable .npy file ({error}); delete it and prepare it again"
        ) from None


def check_array(array, where: str, shape: tuple[int, ...], dtype) -> None:
    """Raise a ValueError saying what was expected and what was found if shape or dtype differ."""
    found_shape = tuple(int(s) for s in array.shape)
    if found_shape != tuple(shape) or np.dtype(array.dtype) != np.dtype(dtype):
        raise ValueError(
            f"{where}: expected an array of shape {tuple(shape)} and dtype {np.dtype(dtype)}, "
            f"found shape {found_shape} and dtype {np.dtype(array.dtype)}"
        )


def write_npy_atomic(
    path: str | os.PathLike, shape: tuple[int, ...], dtype, fill: Callable[[np.ndarray], None]
) -> Path:
    """Create ``path`` as a ``.npy`` of ``shape``/``dtype`` whose contents ``fill(array)`` writes.

    ``array`` is a writable memory map of a temporary file in the same folder; only after ``fill``
    returns is the file flushed, fsynced and renamed to ``path``.  On any error nothing is left behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        array = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.dtype(dtype), shape=tuple(shape))
        fill(array)
        array.flush()
        del array
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        share_like_new_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def write_npy_chunks_atomic(
    path: str | os.PathLike, shape: tuple[int, ...], dtype, chunks: Iterable[np.ndarray]
) -> Path:
    """Write a C-order ``.npy`` of ``shape``/``dtype`` from consecutive row ``chunks``, atomically.

    Plain sequential writes (no memory map, so resident memory stays one chunk); the file appears
    under ``path`` only when every byte is written, and a ValueError is raised if the chunks do not
    add up to ``shape``.
    """
    path = Path(path)
    dtype = np.dtype(dtype)
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    written = 0
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": tuple(shape)}
    with atomic_open(path, "wb") as handle:
        np.lib.format.write_array_header_2_0(handle, header)
        for chunk in chunks:
            block = np.ascontiguousarray(chunk, dtype=dtype)
            handle.write(memoryview(block.reshape(-1).view(np.uint8)))
            written += block.nbytes
        if written != expected:
            raise ValueError(
                f"{path}: the chunks hold {written} bytes, {tuple(shape)} {dtype} needs {expected}"
            )
    share_like_new_file(path)
    return path


def pack_binary_images(images: np.ndarray, where: str) -> np.ndarray:
    """Pack a chunk of 0/1 uint8 images ``(n, H, W)`` to ``(n, ceil(H*W/8))`` bytes (1 bit per pixel)."""
    if images.size and images.max() > 1:
        raise ValueError(
            f"{where}: expected binary images with values 0/1, found a value {int(images.max())}"
        )
    return np.packbits(images.reshape(images.shape[0], -1), axis=1)


class PackedBitImages:
    """Binary images ``(N, H, W)`` stored as 1 bit per pixel; indexing returns uint8 0/1 rows.

    ``packed`` is a ``(N, ceil(H*W/8))`` uint8 array (or memory map) as made by :func:`pack_binary_images`.
    """

    def __init__(self, packed: np.ndarray, height: int, width: int):
        if packed.ndim != 2 or packed.shape[1] != (height * width + 7) // 8:
            raise ValueError(
                f"packed binary images of {height}x{width} need shape (N, {(height * width + 7) // 8}), "
                f"got {packed.shape}"
            )
        self.packed = packed
        self.shape = (packed.shape[0], height, width)
        self.dtype = np.dtype(np.uint8)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.int64)
        bits = np.unpackbits(np.atleast_2d(self.packed[rows]), axis=1, count=self.shape[1] * self.shape[2])
        out = bits.reshape((-1, self.shape[1], self.shape[2]))
        return out[0] if rows.ndim == 0 else out


class RowFile:
    """Rows of a C-order array stored raw in a file from byte ``offset`` on, read only when indexed.

    Indexing with an int or an integer array returns a fresh ``(..., *row_shape)`` array; memory use is
    the rows returned.  Reads are positional (``os.pread``), so one instance may serve several threads,
    and it pickles by path (the file is reopened where it is unpickled).
    """

    def __init__(self, path: str | os.PathLike, offset: int, shape: tuple[int, ...], dtype):
        self.path = Path(path)
        self.offset = int(offset)
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        self.row_shape = self.shape[1:]
        self.row_bytes = int(np.prod(self.row_shape, dtype=np.int64)) * self.dtype.itemsize
        needed = self.offset + self.shape[0] * self.row_bytes
        size = os.path.getsize(self.path)
        if size < needed:
            raise ValueError(
                f"{self.path}: expected at least {needed} bytes for {self.shape} {self.dtype} at offset "
                f"{self.offset}, the file has {size}; it is truncated"
            )
        self._handle = None
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return f"RowFile({str(self.path)!r}, shape={self.shape}, dtype={self.dtype})"

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k not in ("_handle", "_lock")}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._handle, self._lock = None, threading.Lock()

    def _read(self, row: int, out: memoryview) -> None:
        if self._handle is None:
            with self._lock:
                if self._handle is None:
                    self._handle = open(self.path, "rb")  # noqa: SIM115 - kept open for the object's life
        position = self.offset + row * self.row_bytes
        if hasattr(os, "pread"):
            data = os.pread(self._handle.fileno(), self.row_bytes, position)
            if len(data) != self.row_bytes:
                raise ValueError(f"{self.path}: short read of row {row}; the file is truncated")
            out[:] = data
        else:  # pragma: no cover - Windows
            with self._lock:
                self._handle.seek(position)
                if self._handle.readinto(out) != self.row_bytes:
                    raise ValueError(f"{self.path}: short read of row {row}; the file is truncated")

    def __getitem__(self, rows) -> np.ndarray:
        rows = np.asarray(rows)
        if rows.dtype.kind not in "iu":
            raise IndexError(f"RowFile rows must be integers, got dtype {rows.dtype}")
        flat = rows.reshape(-1).astype(np.int64)
        flat = np.where(flat < 0, flat + self.shape[0], flat)
        if flat.size and (flat.min() < 0 or flat.max() >= self.shape[0]):
            raise IndexError(f"row index out of range for {self.shape[0]} rows")
        out = np.empty((flat.size, *self.row_shape), dtype=self.dtype)
        buffer = memoryview(out.reshape(-1).view(np.uint8))
        for i, row in enumerate(flat):
            self._read(int(row), buffer[i * self.row_bytes : (i + 1) * self.row_bytes])
        return out.reshape(rows.shape + self.row_shape)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def npz_member_rows(member: NpyMember) -> RowFile:
    """Row reader for an uncompressed, C-order ``.npz`` member."""
    if member.compressed or member.data_offset is None:
        raise ValueError(f"{member.where} is compressed and cannot be read in place")
    if member.fortran_order:
        raise ValueError(f"{member.where} is stored in Fortran order; expected C order")
    return RowFile(member.path, member.data_offset, member.shape, member.dtype)


def npy_rows(path: str | os.PathLike) -> RowFile:
    """Row reader for a prepared ``.npy`` file, with a clear error if it is damaged."""
    path = Path(path)
    with open(path, "rb") as handle:
        shape, fortran, dtype = read_npy_header(handle, str(path))
        offset = handle.tell()
    if fortran:
        raise ValueError(f"{path} is stored in Fortran order; expected C order")
    try:
        return RowFile(path, offset, shape, dtype)
    except ValueError as error:
        raise ValueError(f"{error}; delete it and prepare it again") from None
