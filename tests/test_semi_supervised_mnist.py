"""The paper's MNIST setting: the one-layer networks, M2's classifier weight, and the experiment end to
end on small IDX files.  (The Concrete treatment of unlabelled images is tested in test_semi_supervised.py.)"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from untwine.data.idx import file_names, write_idx
from untwine.experiments.semi_supervised import choose_labelled
from untwine.experiments.semi_supervised_mnist import (
    RunConfig,
    build,
    load_split,
    run_experiment,
    style_traversal_grid,
    summarise,
    train_run,
)
from untwine.models.ss_vae import SemiSupervisedVAE


def test_the_authors_mnist_networks():
    model = build(RunConfig(method="ss_vae"))
    count = {name: p.numel() for name, p in model.named_parameters()}
    assert count["encoder.trunk.fc1.weight"] == 784 * 256 and "encoder.trunk.fc2.weight" not in count
    assert count["encoder.class_logits.weight"] == 256 * 10
    assert count["encoder.style_mean.weight"] == (256 + 10) * 50
    assert count["decoder.fc1.weight"] == (50 + 10) * 256 and "decoder.fc2.weight" not in count
    assert count["decoder.out.weight"] == 256 * 784
    assert model.unlabelled == "concrete" and model.num_samples == 8 and model.temperature == 0.66
    assert model.alpha == 0.1
    m2 = build(RunConfig(method="m2"))
    assert m2.unlabelled == "enumerate" and m2.num_samples == 1
    # Kingma et al.'s alpha = 0.1 N: 0.1 per image of the mean objective; a step's mean runs over
    # 128 + 32 images of which 32 are labelled, so each labelled row carries 0.1 * 160 / 32 = 0.5
    assert m2.alpha == pytest.approx(0.5)
    with pytest.raises(ValueError, match="hidden_layers must be 1 or 2"):
        SemiSupervisedVAE(1, 2, architecture="mlp", image_size=28, hidden=8, hidden_layers=3)
    with pytest.raises(ValueError, match="method must be one of"):
        RunConfig(method="m1")


def _idx_root(root, train=200, test=60, dataset="mnist"):
    """MNIST-format files whose class is written in the image: a block at a class-dependent place."""
    rng = np.random.default_rng(0)
    folder = root / dataset
    folder.mkdir(parents=True)
    for split, n in (("train", train), ("test", test)):
        labels = (np.arange(n) % 10).astype(np.uint8)
        rng.shuffle(labels)
        images = rng.integers(0, 40, (n, 28, 28)).astype(np.uint8)
        for i, c in enumerate(labels):
            images[i, 2 + 2 * c : 4 + 2 * c, 1 + 2 * c : 9 + 2 * c] = 255  # a block moving down and right
        images_name, labels_name = file_names(split)
        write_idx(folder / images_name, images)
        write_idx(folder / labels_name, labels)


def test_supervised_only_trains_the_classifier_alone(tmp_path):
    _idx_root(tmp_path)
    data = load_split("mnist", tmp_path)
    assert data.x_train.shape == (200, 28, 28, 1) and data.x_test.shape == (60, 28, 28, 1)
    assert data.x_train.max() == 1.0 and data.y_test.dtype == np.int64
    config = RunConfig(method="supervised", dataset="mnist", num_labels=20, steps=150, hidden=32)
    before = build(config)
    model, _ = train_run(data, choose_labelled(data.y_train, 20, 0), config)  # two of each class
    torch.testing.assert_close(
        dict(before.decoder.named_parameters()), dict(model.decoder.named_parameters())
    )
    assert not torch.equal(before.encoder.trunk.fc1.weight, model.encoder.trunk.fc1.weight)
    # the bar's row gives the class away: 150 steps on 20 labels classify the test images
    predictions = model.classify(torch.from_numpy(data.x_test).permute(0, 3, 1, 2)).argmax(1).numpy()
    assert np.mean(predictions == data.y_test) > 0.9


SMALL = {
    "steps": 3,
    "hidden": 16,
    "num_latents": 3,
    "batch_size": 16,
    "labelled_batch_size": 4,
    "num_samples": 2,
}


def test_experiment_end_to_end_on_small_files(tmp_path, monkeypatch):
    _idx_root(tmp_path / "data")
    data_root = str(tmp_path / "data")
    results = run_experiment(
        tmp_path / "out", "mnist", label_counts=(20, 30), seeds=(0, 1), data_root=data_root, **SMALL
    )
    assert len(results["runs"]) == 3 * 2 * 2
    # the labelled subset is a function of (label count, seed) only: the three methods share it
    subsets = {}
    for run in results["runs"]:
        key = (run["config"]["num_labels"], run["config"]["seed"])
        subsets.setdefault(key, []).append(run["labelled_indices"])
    assert all(len(v) == 3 and v[0] == v[1] == v[2] and len(v[0]) == key[0] for key, v in subsets.items())
    row = next(r for r in results["table"] if r["num_labels"] == 20 and r["method"] == "m2")
    errors = [
        r["test_error"]
        for r in results["runs"]
        if r["config"]["method"] == "m2" and r["config"]["num_labels"] == 20
    ]
    assert row["test_errors"] == errors and row["test_error_mean"] == pytest.approx(np.mean(errors))
    assert row["test_error_std"] == pytest.approx(np.std(errors, ddof=1))
    written = json.loads((tmp_path / "out" / "results.json").read_text())
    assert written["table"] == results["table"] and written["versions"]["torch"] == torch.__version__
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert "| 20 |" in summary and "paper: M2 (MNIST)" in summary
    for name in [results["pictures"]["analogies"], *(t["file"] for t in results["pictures"]["traversals"])]:
        assert (tmp_path / "out" / name).stat().st_size > 0
    # a second call reuses the runs written as they finished; only the picture run trains again
    import untwine.experiments.semi_supervised_mnist as experiment

    trained = []
    real_train_run = experiment.train_run
    monkeypatch.setattr(
        experiment, "train_run", lambda *a, **k: trained.append(a[2]) or real_train_run(*a, **k)
    )
    again = run_experiment(
        tmp_path / "out", "mnist", label_counts=(20, 30), seeds=(0, 1), data_root=data_root, **SMALL
    )
    assert again["runs"] == results["runs"] and [c.method for c in trained] == ["ss_vae"]
    # other settings are other runs: trained again, not mixed with the stored ones
    trained.clear()
    run_experiment(
        tmp_path / "out",
        "mnist",
        label_counts=(20,),
        seeds=(0,),
        data_root=data_root,
        **{**SMALL, "steps": 4},
    )
    assert len(trained) == 3 + 1


def test_missing_files_and_impossible_label_counts_fail_before_training(tmp_path):
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte.gz is not in"):
        run_experiment(tmp_path / "out", "mnist", data_root=str(tmp_path / "empty"), steps=1)
    assert not (tmp_path / "out").exists()
    _idx_root(tmp_path / "data")
    with pytest.raises(ValueError, match="num_labels=300 exceeds the 200 examples available"):
        run_experiment(tmp_path / "out", "mnist", label_counts=(30, 300), data_root=str(tmp_path / "data"))
    with pytest.raises(ValueError, match="method must be one of"):
        run_experiment(tmp_path / "out", "mnist", methods=("m1",), data_root=str(tmp_path / "data"))
    assert not (tmp_path / "out").exists()


def test_style_traversal_sweeps_one_dimension_per_row():
    model = build(RunConfig(method="ss_vae", hidden=16, num_latents=4))
    image = np.random.default_rng(0).random((28, 28, 1)).astype(np.float32)
    grid, dims = style_traversal_grid(model, image, 3, num_dims=2, steps=5)
    assert grid.shape == (2, 5, 28, 28, 1) and len(set(dims)) == 2
    mean, logvar = model.encode_style(torch.from_numpy(image[None]).permute(0, 3, 1, 2), torch.tensor([3]))
    kl = (0.5 * (mean.square() + logvar.exp() - logvar - 1.0))[0]
    assert dims == [int(d) for d in torch.argsort(kl, descending=True)[:2]]
    z = mean.expand(5, -1).clone()
    z[:, dims[1]] = torch.linspace(-2.5, 2.5, 5)
    expected = torch.sigmoid(model.decode(z, torch.full((5,), 3))).detach().numpy().transpose(0, 2, 3, 1)
    np.testing.assert_allclose(grid[1], expected, rtol=1e-6)


def test_summary_uses_the_sample_standard_deviation():
    runs = [
        {"config": {"num_labels": 100, "method": "ss_vae", "seed": s}, "test_error": e}
        for s, e in enumerate([0.1, 0.2, 0.3])
    ]
    (row,) = summarise(runs)
    assert row["test_error_mean"] == pytest.approx(0.2)
    assert row["test_error_std"] == pytest.approx(0.1)  # sqrt(((0.1)^2 + 0 + (0.1)^2) / 2)
    assert math.isclose(row["test_errors"][2], 0.3)


def test_label_accuracy_curve_averages_equal_groups_of_log_records(tmp_path):
    from untwine.experiments.semi_supervised import label_accuracy_curve

    log = tmp_path / "log.jsonl"
    records = [{"step": 10 * (i + 1), "loss": 1.0, "accuracy_unlabelled": i / 10} for i in range(10)]
    log.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    curve = label_accuracy_curve(log, windows=3)  # groups of 4, 3, 3 records
    assert [c["step"] for c in curve] == [40, 70, 100] and [c["batches"] for c in curve] == [4, 3, 3]
    assert [c["accuracy"] for c in curve] == pytest.approx([0.15, 0.5, 0.8])
    log.write_text(json.dumps({"step": 1, "loss": 2.0}) + "\n")
    with pytest.raises(ValueError, match="no accuracy_unlabelled records"):
        label_accuracy_curve(log)
