"""The IDX file format of MNIST and Fashion-MNIST, and the two datasets as ground-truth data.

An IDX file (LeCun et al.): two zero bytes, a type code (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
0x0D float32, 0x0E float64), the number of dimensions, each dimension as a big-endian uint32, then the
values in C order, big-endian.  The published files are gzip-compressed (``.gz``); both are read.

``mnist`` and ``fashion_mnist`` are :class:`~untwine.data.user.ArrayGroundTruthDataset` s with one
factor, ``label`` (10 classes), over the published split (``split="train"``: 60,000 images,
``"test"``: 10,000), 28x28x1 uint8 images served as float32 in [0, 1]; each class has thousands of
images, one drawn at random per observation.  Fashion-MNIST is read from Debian's package
``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist``) when the data root lacks it, in place.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

from untwine.data.user import ArrayGroundTruthDataset

TYPES = {
    0x08: np.uint8,
    0x09: np.int8,
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
SPLITS = {"train": "train", "test": "t10k"}
SPLIT_SIZES = {"train": 60000, "test": 10000}
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


def read_idx(path: str | Path) -> np.ndarray:
    """The array in an IDX file (gzip-compressed when the name ends in ``.gz``), in native byte order."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            data = handle.read()
    except (OSError, EOFError) as error:
        raise ValueError(
            f"{path} is not readable as {'gzip' if path.suffix == '.gz' else 'an IDX file'}: {error}"
        ) from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in TYPES:
        raise ValueError(f"{path} is not an IDX file (magic bytes {data[:4].hex() or 'missing'})")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{path} is truncated inside its header")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    dtype = np.dtype(TYPES[data[2]])
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) - header != expected:
        raise ValueError(
            f"{path} holds {len(data) - header} bytes of values but its header {shape} needs {expected} "
            "(truncated or corrupt: download it again)"
        )
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def write_idx(path: str | Path, array) -> None:
    """Write ``array`` as an IDX file (gzip-compressed when the name ends in ``.gz``)."""
    array = np.asarray(array)
    code = {np.dtype(v).newbyteorder("=").str: k for k, v in TYPES.items()}.get(
        array.dtype.newbyteorder("=").str
    )
    if code is None:
        raise ValueError(f"IDX has no type for dtype {array.dtype}")
    payload = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload += array.astype(np.dtype(TYPES[code]).newbyteorder(">")).tobytes()
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wb") as handle:
        handle.write(payload)


def file_names(split: str) -> tuple[str, str]:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}")
    prefix = SPLITS[split]
    return f"{prefix}-images-idx3-ubyte.gz", f"{prefix}-labels-idx1-ubyte.gz"


def _find(directory: Path | None, name: str, fallbacks: tuple[Path, ...]) -> Path:
    for folder in ([directory] if directory is not None else []) + list(fallbacks):
        for candidate in (folder / name, folder / name.removesuffix(".gz")):
            if candidate.is_file():
                return candidate
    where = [str(directory)] if directory is not None else []
    raise FileNotFoundError(
        f"{name} is not in {', '.join(where + [str(f) for f in fallbacks]) or 'the data root'}; "
        "run `untwine data download` for this dataset"
    )


def read_split(
    data_dir: Path | None, split: str = "train", fallbacks: tuple[str, ...] = ()
) -> tuple[np.ndarray, np.ndarray, tuple[Path, Path]]:
    """(images (n, 28, 28) uint8, labels (n,) int64, (images path, labels path)) of an MNIST-format split,
    in the published order, from ``data_dir`` (or the first fallback folder holding it), checked."""
    images_name, labels_name = file_names(split)
    folders = tuple(Path(f) for f in fallbacks)
    images_path = _find(data_dir, images_name, folders)
    labels_path = _find(data_dir, labels_name, folders)
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ValueError(
            f"{images_path}: expected uint8 images (n, 28, 28), got {images.dtype} {images.shape}"
        )
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise ValueError(
            f"{labels_path}: {labels.shape[0]} labels for {images.shape[0]} images in {images_path}"
        )
    if labels.min() < 0 or labels.max() > 9:
        raise ValueError(f"{labels_path}: labels must lie in 0..9, found {labels.min()}..{labels.max()}")
    return images, labels.astype(np.int64), (images_path, labels_path)


def load_mnist_format(
    data_dir: Path | None, *, name: str, split: str = "train", fallbacks: tuple[str, ...] = (), classes=None
) -> ArrayGroundTruthDataset:
    """The ``split`` of an MNIST-format dataset from ``data_dir`` (or the first fallback folder holding it)."""
    images, labels, (images_path, labels_path) = read_split(data_dir, split, fallbacks)
    dataset = ArrayGroundTruthDataset(
        images, labels[:, np.newaxis], factor_names=["label"], factor_sizes=[10], name=name
    )
    dataset.class_names = tuple(classes) if classes else tuple(str(c) for c in range(10))
    dataset.source_files = (images_path, labels_path)
    return dataset


# Per dataset: the folders searched after the data root, and the class names.
DATASETS = {
    "mnist": {"fallbacks": (), "classes": None},
    "fashion_mnist": {"fallbacks": (str(DEBIAN_FASHION_MNIST),), "classes": FASHION_MNIST_CLASSES},
}


def load_mnist(data_dir: Path | None, split: str = "train") -> ArrayGroundTruthDataset:
    return load_idx_dataset(data_dir, dataset="mnist", split=split)


def read_dataset_split(
    dataset: str, split: str = "train", data_root=None
) -> tuple[np.ndarray, np.ndarray, tuple[Path, Path]]:
    """:func:`read_split` for ``mnist`` or ``fashion_mnist`` in the dataset's folder under the data root
    (``$UNTWINE_DATA``), as the dataset table names it."""
    from untwine.data.registry import get_spec

    if dataset not in DATASETS:
        raise ValueError(f"unknown MNIST-format dataset {dataset!r}; valid: {', '.join(DATASETS)}")
    return read_split(get_spec(dataset).data_dir(data_root), split, DATASETS[dataset]["fallbacks"])


def load_idx_dataset(data_dir: Path | None, *, dataset: str, split: str = "train") -> ArrayGroundTruthDataset:
    """The registry's loader of ``mnist`` and ``fashion_mnist``."""
    return load_mnist_format(data_dir, name=dataset, split=split, **DATASETS[dataset])


# -- the data layer's storage hooks (untwine.data.prepare) ----------------------------------------------
def missing(data_dir, *, dataset: str, **_: object) -> list[str]:
    """Published files found neither in ``data_dir`` nor in the dataset's fallback folders."""
    absent = []
    for split in SPLITS:
        for name in file_names(split):
            try:
                _find(data_dir, name, tuple(Path(f) for f in DATASETS[dataset]["fallbacks"]))
            except FileNotFoundError:
                absent.append(name)
    return absent


def prepared_file(data_dir=None, *, dataset: str, **_: object) -> Path:
    """IDX files are read whole (47 MB for 60,000 images): the published training images are what loads use."""
    return _find(data_dir, file_names("train")[0], tuple(Path(f) for f in DATASETS[dataset]["fallbacks"]))


def prepare(data_dir, force: bool = False, *, dataset: str, **_: object) -> Path:
    """Nothing to convert: checks the files parse and returns the training images' path."""
    for split in SPLITS:
        load_idx_dataset(data_dir, dataset=dataset, split=split)
    return prepared_file(data_dir, dataset=dataset)
