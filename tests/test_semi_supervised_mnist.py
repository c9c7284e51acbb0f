"""The paper's MNIST setting: the Concrete treatment of unlabelled images against the exact enumeration,
the one-layer networks, M2's classifier weight, and the experiment end to end on small IDX files."""

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
from untwine.models import instantiate
from untwine.models.ss_vae import SemiSupervisedVAE, gumbel_softmax_sample


def _tiny(**kwargs):
    model = instantiate(
        SemiSupervisedVAE,
        torch.Generator().manual_seed(0),
        1,
        1,
        architecture="mlp",
        image_size=2,
        hidden=6,
        num_classes=3,
        **kwargs,
    )
    with torch.no_grad():  # larger weights: a decoder that really depends on y and z
        for p in model.parameters():
            p.mul_(2.5)
    return model


X = torch.tensor([[[[1.0, 0.0], [1.0, 1.0]]]])


def test_gumbel_softmax_argmax_is_distributed_as_the_softmax():
    logits = torch.tensor([[2.0, 0.0, -1.0, 0.5]])
    samples = gumbel_softmax_sample(logits, 0.66, 200_000, torch.Generator().manual_seed(0))
    assert samples.shape == (200_000, 1, 4)
    torch.testing.assert_close(samples.sum(-1), torch.ones(200_000, 1))
    frequencies = np.bincount(samples.argmax(-1).flatten().numpy(), minlength=4) / 200_000
    np.testing.assert_allclose(frequencies, torch.softmax(logits, 1)[0].numpy(), atol=0.004)
    # the same generator state gives the same draws (no global random state involved)
    a = gumbel_softmax_sample(logits, 0.5, 3, torch.Generator().manual_seed(7))
    b = gumbel_softmax_sample(logits, 0.5, 3, torch.Generator().manual_seed(7))
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_concrete_bound_tends_to_the_enumerated_elbo_at_low_temperature():
    """At temperature -> 0 a relaxed sample is the one-hot of a class drawn from q(y|x) (Gumbel-max), so
    the Concrete estimate averages to sum_y q(y|x)[E log p(x|y,z) - KL(z) + log p(y) - log q(y|x)]."""
    enumerated = _tiny(unlabelled="enumerate")
    concrete = _tiny(unlabelled="concrete", temperature=1e-3, num_samples=4)
    torch.testing.assert_close(dict(enumerated.named_parameters()), dict(concrete.named_parameters()))
    batch = X.expand(40_000, -1, -1, -1)
    with torch.no_grad():
        exact = -float(enumerated.semi_supervised_loss(batch, torch.Generator().manual_seed(1)).loss)
        relaxed = concrete.semi_supervised_loss(batch, torch.Generator().manual_seed(2))
    assert -float(relaxed.loss) == pytest.approx(exact, abs=0.03)
    # at a high temperature the decoder sees blends of classes: a different (lower here) bound
    hot = _tiny(unlabelled="concrete", temperature=5.0, num_samples=4)
    with torch.no_grad():
        blended = -float(hot.semi_supervised_loss(batch, torch.Generator().manual_seed(2)).loss)
    assert abs(blended - exact) > 0.2


def test_concrete_unlabelled_images_train_the_classifier_and_labelled_ones_are_unchanged():
    model = _tiny(unlabelled="concrete", num_samples=3)
    out = model.semi_supervised_loss(X.expand(5, -1, -1, -1), torch.Generator().manual_seed(0))
    out.loss.backward()
    assert float(model.encoder.class_logits.weight.grad.abs().max()) > 0  # through the relaxed sample
    assert out.mean.shape == (5, 1) and out.logits.shape == (5, 1, 2, 2)
    assert {"elbo", "reconstruction", "kl", "kl_y", "class_entropy", "regularizer"} <= set(out.terms)
    # labelled images: the same bound whichever way unlabelled images are treated
    images, labels = X.expand(4, -1, -1, -1), np.array([0, 2, 1, 2])
    a = _tiny(unlabelled="concrete", num_samples=3).semi_supervised_loss(
        None, torch.Generator().manual_seed(5), images, labels
    )
    b = _tiny(unlabelled="enumerate", num_samples=3).semi_supervised_loss(
        None, torch.Generator().manual_seed(5), images, labels
    )
    torch.testing.assert_close(a.loss, b.loss)
    with pytest.raises(ValueError, match="unlabelled must be one of"):
        _tiny(unlabelled="sample")
    with pytest.raises(ValueError, match="temperature must be > 0"):
        _tiny(unlabelled="concrete", temperature=0.0)


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
