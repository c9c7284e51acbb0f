"""The IDX format (MNIST, Fashion-MNIST): exact bytes, round trips, corrupt files, the datasets over small
files written here, and Debian's Fashion-MNIST when installed."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from untwine.data import get_dataset
from untwine.data.download import DOWNLOADS
from untwine.data.idx import DEBIAN_FASHION_MNIST, file_names, load_mnist, read_idx, write_idx


def test_the_header_is_the_published_layout(tmp_path):
    path = tmp_path / "labels-idx1-ubyte"
    write_idx(path, np.array([7, 2, 1], dtype=np.uint8))
    # 0x00 0x00, type 0x08 (uint8), 1 dimension, size 3 big-endian, then the bytes.
    assert path.read_bytes() == bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 2, 1])


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_round_trip(tmp_path, dtype, suffix):
    array = (np.arange(24).reshape(2, 3, 4) * 3 - 7).astype(dtype)
    path = tmp_path / f"a-idx3{suffix}"
    write_idx(path, array)
    back = read_idx(path)
    assert back.dtype == np.dtype(dtype) and back.shape == (2, 3, 4)
    np.testing.assert_array_equal(back, array)


def test_corrupt_files_are_named(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x01\x02\x08\x01")
    with pytest.raises(ValueError, match="bad is not an IDX file"):
        read_idx(tmp_path / "bad")
    write_idx(tmp_path / "short", np.zeros((4, 2), dtype=np.uint8))
    (tmp_path / "short").write_bytes((tmp_path / "short").read_bytes()[:-1])
    with pytest.raises(ValueError, match=r"short holds 7 bytes of values but its header \(4, 2\) needs 8"):
        read_idx(tmp_path / "short")
    (tmp_path / "x.gz").write_bytes(b"not gzip")
    with pytest.raises(ValueError, match="x.gz is not readable as gzip"):
        read_idx(tmp_path / "x.gz")


def _mnist_folder(folder, train=40, test=20):
    rng = np.random.default_rng(0)
    for split, n in (("train", train), ("test", test)):
        labels = np.arange(n, dtype=np.uint8) % 10
        rng.shuffle(labels)
        images = np.repeat(labels[:, None, None] * 20, 28, axis=1).repeat(28, axis=2).astype(np.uint8)
        images_name, labels_name = file_names(split)
        write_idx(folder / images_name, images)
        write_idx(folder / labels_name, labels)


def test_mnist_from_small_files_serves_images_of_the_asked_label(tmp_path):
    _mnist_folder(tmp_path)
    dataset = load_mnist(tmp_path)
    assert dataset.factor_names == ("label",) and dataset.factor_sizes == (10,)
    assert dataset.observation_shape == (28, 28, 1) and not dataset.deterministic  # 4 images per label
    labels = np.arange(10)[:, None]
    images = dataset.sample_observations_from_factors(labels, 0)
    np.testing.assert_allclose(images[:, 0, 0, 0], labels[:, 0] * 20 / 255, rtol=1e-6)
    assert len(load_mnist(tmp_path, split="test")._images) == 20
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte.gz is not in"):
        load_mnist(tmp_path / "empty")


def test_downloads_are_the_published_files_with_their_checksums():
    for name in ("mnist", "fashion_mnist"):
        files = DOWNLOADS[name]
        assert [f.filename for f in files] == [*file_names("train"), *file_names("test")]
        assert all(f.md5 and len(f.md5) == 32 and f.url.endswith(f.filename) for f in files)


@pytest.mark.skipif(
    not DEBIAN_FASHION_MNIST.is_dir(),
    reason="Debian's dataset-fashion-mnist is not installed (scripts/install_test_packages.sh)",
)
def test_debians_fashion_mnist_is_the_published_split(tmp_path, monkeypatch):
    monkeypatch.setenv("UNTWINE_DATA", str(tmp_path))  # an empty data root: the Debian folder is used
    train = get_dataset("fashion_mnist")
    test = get_dataset("fashion_mnist", split="test")
    assert train.source_files[0].parent == DEBIAN_FASHION_MNIST
    assert len(train._images) == 60000 and len(test._images) == 10000
    # Fashion-MNIST is balanced: 6,000 training and 1,000 test images per class.
    for dataset, per_class in ((train, 6000), (test, 1000)):
        labels = read_idx(dataset.source_files[1])
        assert np.array_equal(np.bincount(labels, minlength=10), np.full(10, per_class))
    with gzip.open(train.source_files[0]) as handle:
        assert handle.read(8) == bytes([0, 0, 8, 3, 0, 0, 0xEA, 0x60])  # uint8, 3 dims, 60000
