"""Writers of small dataset files in exactly the published formats (same names, keys, dtypes, headers),
only with fewer rows.  Every image encodes where it belongs, so a lookup can be checked exactly:

* dSprites: the stored row index in binary in the first 16 pixels of row 0, plus a 16x16 "sprite"
  square of ones at rows/cols 24..39;
* shapes3d / MPI3D: the row index in pixels (0, 0, 0) (low byte) and (0, 0, 1) (high byte);
* Cars3D / SmallNORB (resized by the loader): constant images whose grey levels encode the factors.

Each writer returns the reduced full factor sizes to pass to the loader as ``factor_sizes``.
"""

from __future__ import annotations

import gzip
import http.server
import io
import re
import socket
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest

from untwine.data.base import FactorSpace

DSPRITES_SIZES = (1, 3, 2, 2, 2, 2)
SHAPES3D_SIZES = (2, 2, 2, 2, 2, 3)
MPI3D_SIZES = (2, 2, 1, 2, 1, 3, 2)
CARS3D_SIZES = (2, 3, 3)  # elevation, azimuth, object
SMALLNORB_SIZES = (2, 2, 2, 3, 2)  # category, instance, elevation, azimuth, lighting
DSPRITES_NPZ = "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"
DSPRITES_HDF5 = "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.hdf5"
SPRITE = (slice(24, 40), slice(24, 40))


# -- dSprites ---------------------------------------------------------------------------------------
def sprite_image(index: int) -> np.ndarray:
    image = np.zeros((64, 64), dtype=np.uint8)
    image[0, :16] = (index >> np.arange(16)) & 1
    image[SPRITE] = 1
    return image


def decode_sprite(image: np.ndarray) -> int:
    bits = np.asarray(image)[0, :16].reshape(16).round().astype(np.int64)
    return int((bits << np.arange(16)).sum())


def dsprites_arrays(sizes=DSPRITES_SIZES):
    space = FactorSpace(sizes)
    n = space.num_states
    images = np.stack([sprite_image(i) for i in range(n)])
    classes = space.index_to_factors(np.arange(n))
    values = classes.astype(np.float64) / np.maximum(np.asarray(sizes) - 1, 1)
    return images, classes, values


def write_dsprites(directory: Path, sizes=DSPRITES_SIZES, fmt: str = "npz") -> tuple[int, ...]:
    directory.mkdir(parents=True, exist_ok=True)
    images, classes, values = dsprites_arrays(sizes)
    if fmt == "npz":
        metadata = {
            "date": "April 2017",
            "description": "test grid",
            "version": 1,
            "latents_names": ("color", "shape", "scale", "orientation", "posX", "posY"),
            "latents_sizes": np.asarray(sizes, dtype=np.int64),
        }
        np.savez_compressed(
            directory / DSPRITES_NPZ,
            imgs=images,
            latents_classes=classes,
            latents_values=values,
            metadata=np.array(metadata, dtype=object),
        )
    else:
        import h5py

        with h5py.File(directory / DSPRITES_HDF5, "w") as handle:
            handle.create_dataset("imgs", data=images, compression="gzip")
            handle.create_dataset("latents/classes", data=classes)
            handle.create_dataset("latents/values", data=values)
    return tuple(sizes)


def write_scream(directory: Path, color=(200, 100, 50), size=(120, 90)) -> Path:
    from PIL import Image

    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "scream.jpg"
    Image.new("RGB", size, color).save(path, quality=100)
    return path


# -- shapes3d / MPI3D -------------------------------------------------------------------------------
def index_images(n: int) -> np.ndarray:
    images = np.zeros((n, 64, 64, 3), dtype=np.uint8)
    idx = np.arange(n)
    images[:, 0, 0, 0] = idx % 256
    images[:, 0, 0, 1] = idx // 256
    images[:, 1:, :, 2] = ((idx * 37) % 251)[:, None, None]
    return images


def decode_index(images: np.ndarray) -> np.ndarray:
    """Inverse of :func:`index_images` for float observations in [0, 1] (scale 1/255)."""
    pixels = np.rint(np.asarray(images)[:, 0, 0, :2] * 255).astype(np.int64)
    return pixels[:, 0] + 256 * pixels[:, 1]


SHAPES3D_VALUES = (
    np.linspace(0, 0.9, 10),
    np.linspace(0, 0.9, 10),
    np.linspace(0, 0.9, 10),
    np.linspace(0.75, 1.25, 8),
    np.arange(4.0),
    np.linspace(-30, 30, 15),
)


def write_shapes3d(directory: Path, sizes=SHAPES3D_SIZES, shuffle_labels: bool = False) -> tuple[int, ...]:
    import h5py

    directory.mkdir(parents=True, exist_ok=True)
    space = FactorSpace(sizes)
    classes = space.index_to_factors(np.arange(space.num_states))
    labels = np.stack([SHAPES3D_VALUES[j][classes[:, j]] for j in range(6)], axis=1)
    if shuffle_labels:
        labels = labels[::-1].copy()
    with h5py.File(directory / "3dshapes.h5", "w") as handle:
        handle.create_dataset(
            "images", data=index_images(space.num_states), chunks=(4, 64, 64, 3), compression="gzip"
        )
        handle.create_dataset("labels", data=labels)
    return tuple(sizes)


def write_mpi3d(
    directory: Path, variant: str = "toy", sizes=MPI3D_SIZES, compressed: bool = False
) -> tuple[int, ...]:
    directory.mkdir(parents=True, exist_ok=True)
    n = int(np.prod(sizes))
    save = np.savez_compressed if compressed else np.savez
    save(directory / f"mpi3d_{variant}.npz", images=index_images(n))
    return tuple(sizes)


# -- Cars3D -----------------------------------------------------------------------------------------
def car_levels(elevation, azimuth, obj):
    """Grey levels (R, G, B) of the constant image of one car view."""
    return 40 * np.asarray(elevation) + 5, 20 * np.asarray(azimuth) + 5, 30 * np.asarray(obj) + 5


def decode_car(images: np.ndarray) -> np.ndarray:
    """(elevation, azimuth, object) from float observations (mean over the image, scale 1/255)."""
    levels = np.asarray(images).mean(axis=(1, 2)) * 255
    return np.rint((levels - 5) / np.array([40, 20, 30])).astype(np.int64)


def write_cars3d(directory: Path, sizes=CARS3D_SIZES, names=None) -> tuple[int, ...]:
    """``cars/*.mat`` with ``im`` (128, 128, 3, azimuths, elevations) uint8; file order = sorted names."""
    import scipy.io

    elevations, azimuths, objects = sizes
    folder = directory / "cars"
    folder.mkdir(parents=True, exist_ok=True)
    names = names or [f"car_{i:03d}_mesh.mat" for i in range(objects)]
    for obj, name in enumerate(sorted(names)):
        im = np.zeros((128, 128, 3, azimuths, elevations), dtype=np.uint8)
        for az in range(azimuths):
            for el in range(elevations):
                im[:, :, :, az, el] = np.array(car_levels(el, az, obj), dtype=np.uint8)
        scipy.io.savemat(
            folder / name,
            {"im": im, "mask": np.ones((128, 128, azimuths, elevations), np.uint8)},
            do_compression=True,
        )
    return tuple(sizes)


def cars_tarball(sizes=CARS3D_SIZES, tmp: Path | None = None) -> bytes:
    """A ``nips2015-analogy-data.tar.gz`` look-alike: ``data/cars/*.mat`` plus an unrelated file."""
    import tempfile

    with tempfile.TemporaryDirectory(dir=tmp) as work:
        work = Path(work)
        write_cars3d(work / "data", sizes)
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
            tar.add(work / "data" / "cars", arcname="data/cars")
            extra = b"not part of cars3d"
            info = tarfile.TarInfo("data/shapes48.mat")
            info.size = len(extra)
            tar.addfile(info, io.BytesIO(extra))
        return buffer.getvalue()


# -- SmallNORB --------------------------------------------------------------------------------------
def norb_matrix(array: np.ndarray) -> bytes:
    """Serialise ``array`` (uint8 or int32) as a NORB binary matrix."""
    magic = {np.dtype(np.uint8): 0x1E3D4C55, np.dtype(np.int32): 0x1E3D4C54}[array.dtype]
    dims = list(array.shape) + [1] * max(0, 3 - array.ndim)
    header = np.array([magic, array.ndim, *dims], dtype="<i4").tobytes()
    return header + np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<")).tobytes()


def norb_level(full_index) -> np.ndarray:
    return 5 * np.asarray(full_index) + 3


def decode_norb(images: np.ndarray) -> np.ndarray:
    """The full row index from float observations (mean grey level, scale 1/255)."""
    return np.rint((np.asarray(images).mean(axis=(1, 2, 3)) * 255 - 3) / 5).astype(np.int64)


def norb_file_names():
    return {
        split: [f"smallnorb-5x{code}x9x18x6x2x96x96-{split}-{kind}.mat" for kind in ("dat", "cat", "info")]
        for split, code in (("training", "46789"), ("testing", "01235"))
    }


def smallnorb_splits(sizes=SMALLNORB_SIZES, seed: int = 0) -> dict[str, tuple[bytes, bytes, bytes]]:
    """The three matrices per split; instance 0 goes to testing, the rest to training; rows shuffled."""
    rng = np.random.default_rng(seed)
    space = FactorSpace(sizes)
    features = space.index_to_factors(np.arange(space.num_states))
    out = {}
    for split, in_split in (("training", features[:, 1] > 0), ("testing", features[:, 1] == 0)):
        rows = np.flatnonzero(in_split)
        rows = rows[rng.permutation(len(rows))]
        f = features[rows]
        dat = np.empty((len(rows), 2, 96, 96), dtype=np.uint8)
        dat[:, 0] = norb_level(rows)[:, None, None]
        dat[:, 1] = 255 - norb_level(rows)[:, None, None]
        cat = f[:, 0].astype(np.int32)
        info = np.stack([f[:, 1], f[:, 2], 2 * f[:, 3], f[:, 4]], axis=1).astype(np.int32)
        out[split] = (norb_matrix(dat), norb_matrix(cat), norb_matrix(info))
    return out


def write_smallnorb(directory: Path, sizes=SMALLNORB_SIZES, seed: int = 0) -> tuple[int, ...]:
    directory.mkdir(parents=True, exist_ok=True)
    names = norb_file_names()
    for split, blobs in smallnorb_splits(sizes, seed).items():
        for name, blob in zip(names[split], blobs, strict=True):
            (directory / name).write_bytes(blob)
    return tuple(sizes)


def gzip_bytes(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


# -- a local HTTP server for download tests ---------------------------------------------------------
class _Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):  # keep test output quiet
        pass

    def do_GET(self):
        server = self.server
        name = self.path.lstrip("/")
        range_header = self.headers.get("Range")
        server.requests.append((name, range_header))
        data = server.files.get(name)
        if data is None:
            self.send_error(404, "no such file")
            return
        start = 0
        if range_header and server.ranges:
            start = int(re.fullmatch(r"bytes=(\d+)-", range_header).group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if server.cut_after is not None:  # close the connection early
            self.wfile.write(body[: server.cut_after])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


def _serve():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.files, httpd.requests, httpd.ranges, httpd.cut_after = {}, [], True, None
    httpd.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


def _only_localhost(monkeypatch):
    """Fail any connection that is not to 127.0.0.1, and any proxy use."""
    real = socket.create_connection

    def guarded(address, *args, **kwargs):
        if address[0] != "127.0.0.1":
            raise AssertionError(f"test tried to contact {address}")
        return real(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", guarded)
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)


def http_server_fixture():
    """A pytest fixture: a threaded HTTP server on 127.0.0.1 (ephemeral port) serving ``server.files``
    (name -> bytes), honouring ``Range`` requests unless ``server.ranges`` is False, closing the
    connection after ``server.cut_after`` body bytes when set, and logging ``server.requests``."""
    return pytest.fixture(name="server")(_serve)


def only_localhost_fixture():
    """An autouse pytest fixture that fails any connection not to 127.0.0.1 and removes proxies."""
    return pytest.fixture(autouse=True, name="only_localhost")(_only_localhost)
