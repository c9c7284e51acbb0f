"""A user's own ground-truth data: arrays, files and a render function, validated, usable by evaluation
and training."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from untwine.cli import main
from untwine.data import get_dataset, get_spec
from untwine.data.user import ArrayGroundTruthDataset, RenderedGroundTruthDataset


def square_images(factors: np.ndarray, size: int = 64) -> np.ndarray:
    """A 6x6 white square at (x, y) = (8 * factor 0, 8 * factor 1)."""
    images = np.zeros((len(factors), size, size), dtype=np.uint8)
    for i, (x, y) in enumerate(factors[:, :2]):
        images[i, 8 * y : 8 * y + 6, 8 * x : 8 * x + 6] = 255
    return images


def grid(sizes):
    return np.stack(np.unravel_index(np.arange(int(np.prod(sizes))), sizes), axis=1)


def test_arrays_become_a_dataset_that_returns_each_combinations_image():
    factors = grid((4, 3))[::-1]  # any row order
    images = square_images(factors)
    dataset = ArrayGroundTruthDataset(images, factors, factor_names=["x", "y"], name="squares")
    assert dataset.factor_sizes == (4, 3) and dataset.factor_names == ("x", "y") and dataset.deterministic
    assert dataset.observation_shape == (64, 64, 1)
    asked = np.array([[3, 2], [0, 0], [1, 2]])
    observed = dataset.sample_observations_from_factors(asked, 0)
    np.testing.assert_array_equal(observed[..., 0], square_images(asked) / 255.0)
    assert observed.dtype == np.float32


def test_repeated_combinations_are_drawn_at_random_and_make_the_dataset_random():
    factors = np.array([[0], [1], [1]])
    images = np.stack([np.zeros((4, 4)), np.full((4, 4), 0.5), np.ones((4, 4))]).astype(np.float32)
    dataset = ArrayGroundTruthDataset(images, factors)
    assert not dataset.deterministic
    seen = dataset.sample_observations_from_factors(np.ones((200, 1), dtype=np.int64), 0)[:, 0, 0, 0]
    assert set(np.unique(seen)) == {0.5, 1.0} and 0.4 < np.mean(seen == 1.0) < 0.6


def test_bad_arrays_are_refused_naming_the_problem():
    factors = grid((2, 2))
    images = square_images(factors)
    with pytest.raises(ValueError, match="4 images but 3 rows of factors"):
        ArrayGroundTruthDataset(images, factors[:3])
    with pytest.raises(
        ValueError, match=r"1 of the 4 factor combinations have no image \(e.g. \{'factor_0': 1"
    ):
        ArrayGroundTruthDataset(images[:3], factors[:3], factor_sizes=(2, 2))
    with pytest.raises(ValueError, match=r"factors\[1, 1\] = 1 is outside factor_1's 1 values 0..0"):
        ArrayGroundTruthDataset(images, factors, factor_sizes=(2, 1))
    with pytest.raises(ValueError, match=r"float images must lie in \[0, 1\], found values in \[0, 255\]"):
        ArrayGroundTruthDataset(images.astype(np.float32), factors)
    with pytest.raises(ValueError, match="factors must be integers"):
        ArrayGroundTruthDataset(images, factors + 0.5)
    with pytest.raises(ValueError, match="images contain NaN"):
        ArrayGroundTruthDataset(np.full((4, 4, 4), np.nan), factors)


def test_render_function_dataset_is_checked_and_rendered():
    dataset = RenderedGroundTruthDataset((4, 3), lambda f: square_images(f) / 255.0, factor_names=["x", "y"])
    assert dataset.observation_shape == (64, 64, 1)
    factors = np.array([[2, 1]])
    np.testing.assert_array_equal(
        dataset.sample_observations_from_factors(factors, 0)[..., 0], square_images(factors) / 255.0
    )
    with pytest.raises(ValueError, match="render returned shape"):
        RenderedGroundTruthDataset((2,), lambda f: np.zeros((1, 4, 4)))


def test_files_are_datasets_for_evaluation_and_training(tmp_path):
    factors = grid((4, 3))
    np.savez(
        tmp_path / "squares.npz", images=square_images(factors), factors=factors, factor_names=["x", "y"]
    )
    with h5py.File(tmp_path / "squares.h5", "w") as handle:
        handle["images"] = square_images(factors)
        handle["factors"] = factors
    from_npz = get_dataset(f"file:{tmp_path / 'squares.npz'}")
    from_h5 = get_dataset(f"file:{tmp_path / 'squares.h5'}")
    assert from_npz.factor_names == ("x", "y") and from_h5.factor_names == ("factor_0", "factor_1")
    np.testing.assert_array_equal(
        from_npz.sample_observations_from_factors(factors, 0),
        from_h5.sample_observations_from_factors(factors, 0),
    )
    assert get_spec(f"file:{tmp_path / 'squares.npz'}").factor_sizes == (4, 3)
    # Evaluation of a callable on the file's images: the square's centre is the factors.
    (tmp_path / "enc.py").write_text(
        "import numpy as np\n"
        "def centre(images):\n"
        "    images = np.asarray(images)[..., 0]\n"
        "    ys, xs = np.mgrid[:64, :64]\n"
        "    mass = images.sum(axis=(1, 2))\n"
        "    return np.stack([(images * xs).sum(axis=(1, 2)) / mass, (images * ys).sum(axis=(1, 2)) / mass], 1)\n"
    )
    out = tmp_path / "scores"
    assert (
        main(
            [
                "evaluate",
                "--callable",
                f"{tmp_path / 'enc.py'}:centre",
                "--dataset",
                f"file:{tmp_path / 'squares.npz'}",
                "--metrics",
                "mig",
                "--metric-param",
                "mig.num_train=500",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    result = json.loads((out / "metrics" / "mean" / "mig.json").read_text())
    # The same data and function from Python give the same score (each code is one factor: MIG is 1 up
    # to the sample's spurious mutual information between the other code and the factor).
    import importlib.util

    spec = importlib.util.spec_from_file_location("enc", tmp_path / "enc.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    from untwine.metrics import evaluate_representation

    arrays = ArrayGroundTruthDataset(square_images(factors), factors, factor_names=["x", "y"])
    expected = evaluate_representation(
        arrays, module.centre, ["mig"], params={"mig": {"num_train": 500}}, n_jobs=1
    )
    assert result["values"] == expected["mig"]["values"]
    assert 0.99 < result["values"]["discrete_mig"] <= 1.0
    # Training reads the same file.
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "model=beta_vae",
                f"dataset=file:{tmp_path / 'squares.npz'}",
                "steps=2",
                "batch_size=8",
                "eval_batches=1",
                "--out",
                str(run),
            ]
        )
        == 0
    )
    assert (run / "config.json").exists()
