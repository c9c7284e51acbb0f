"""Semi-supervised models: the importance-sampling estimators against exact values, the partially
specified VAE (ss_vae) against quadrature on a tiny instance, edge cases, label validation, the training
loop path, and a digits run that beats a supervised-only classifier with 10 labels."""

import json
import math

import numpy as np
import pytest
import torch

from untwine.data import Batch, LabelledSet
from untwine.data import labels as labels_module
from untwine.models import MODEL_DEFAULTS, build_model, instantiate
from untwine.models.ss_vae import (
    SemiSupervisedVAE,
    gumbel_softmax_sample,
    label_log_likelihood_estimate,
    supervised_bound,
    unsupervised_bound,
)

# ---------------------------------------------------------------------------------------------------
# The estimator on an analytic model with a z -> y recognition factorisation:
#   p(z) = N(0, 1), p(y) = 1/3, p(x | y, z) = N(x; a_y + b z, s^2)      (scalar x and z)
#   proposal r(z) = q(z | x) = N(m, sd^2),  q(y | z, x) = softmax(c z + d)
# so log p(x, y) = log(1/3) + log N(x; a_y, b^2 + s^2) exactly and q(y|x) by 1-d quadrature.
# ---------------------------------------------------------------------------------------------------
A, B, S_X = np.array([-1.0, 0.5, 2.0]), 1.5, 0.7
M, SD = 0.3, 0.9
C, D = np.array([-2.0, 0.0, 2.0]), np.array([0.0, 0.5, 0.0])
X0, Y0 = 0.8, 1


def _log_normal(x, mean, sd):
    return -0.5 * ((x - mean) / sd) ** 2 - np.log(sd) - 0.5 * np.log(2 * np.pi)


def _log_q_y_given_z(z):
    logits = C[None, :] * z[:, None] + D[None, :]
    return logits[:, Y0] - np.logaddexp.reduce(logits, axis=1)


def _log_joint(z):
    return np.log(1 / 3) + _log_normal(z, 0.0, 1.0) + _log_normal(X0, A[Y0] + B * z, S_X)


def _exact():
    grid = np.linspace(-12, 12, 200_001)
    dz = grid[1] - grid[0]
    log_r = _log_normal(grid, M, SD)
    q_yz = np.exp(log_r + _log_q_y_given_z(grid))  # q(y, z | x)
    q_y = q_yz.sum() * dz
    q_z_given_y = q_yz / q_y
    elbo = np.sum(q_z_given_y * (_log_joint(grid) - np.log(q_z_given_y + 1e-300))) * dz
    log_pxy = np.log(1 / 3) + _log_normal(X0, A[Y0], np.sqrt(B**2 + S_X**2))
    return log_pxy, q_y, elbo


def _draw(replicates, samples, seed=0):
    g = torch.Generator().manual_seed(seed)
    z = (M + SD * torch.randn(samples, replicates, generator=g, dtype=torch.float64)).numpy()
    flat = z.reshape(-1)
    log_joint = torch.from_numpy(_log_joint(flat).reshape(z.shape))
    log_r = torch.from_numpy(_log_normal(flat, M, SD).reshape(z.shape))
    log_w = torch.from_numpy(_log_q_y_given_z(flat).reshape(z.shape))
    return log_joint, log_r, log_w


def test_label_probability_estimate_is_unbiased():
    _, q_y, _ = _exact()
    _, _, log_w = _draw(20_000, 4)
    estimates = label_log_likelihood_estimate(log_w).exp().double()
    assert float(estimates.mean()) == pytest.approx(q_y, rel=0.01)
    # log of the estimate is biased low, less so with more samples (Jensen)
    few = float(label_log_likelihood_estimate(_draw(20_000, 1, seed=1)[2]).mean())
    many = float(label_log_likelihood_estimate(_draw(2_000, 64, seed=2)[2]).mean())
    assert few < many <= math.log(q_y) + 0.01


def test_log_sum_exp_bound_is_below_exact_and_tightens():
    log_pxy, _, _ = _exact()
    means = []
    for samples in (1, 4, 16, 128):
        log_joint, log_r, log_w = _draw(40_000 // samples + 500, samples, seed=samples)
        means.append(float(supervised_bound(log_joint, log_r, log_w, alpha=0.0, estimator="iwae").mean()))
    assert all(m <= log_pxy + 0.01 for m in means), (means, log_pxy)
    assert all(a < b for a, b in zip(means, means[1:], strict=False)), means
    assert means[-1] == pytest.approx(log_pxy, abs=0.03)
    assert means[0] < log_pxy - 0.2  # the single-sample bound is visibly loose here


def test_weighted_estimator_converges_to_the_elbo_with_posterior_q_z_given_xy():
    log_pxy, q_y, elbo = _exact()
    assert elbo < log_pxy - 0.05  # a real gap: q(z|x,y) is not the posterior
    log_joint, log_r, log_w = _draw(40, 8192, seed=3)
    weighted = supervised_bound(log_joint, log_r, log_w, alpha=0.0, estimator="weighted").double()
    assert float(weighted.mean()) == pytest.approx(elbo, abs=0.02)
    # alpha adds alpha * log q^(y|x) computed from the same samples, in both forms
    for estimator in ("weighted", "iwae"):
        base = supervised_bound(log_joint, log_r, log_w, alpha=0.0, estimator=estimator)
        shifted = supervised_bound(log_joint, log_r, log_w, alpha=0.1, estimator=estimator)
        torch.testing.assert_close(
            shifted - base, 0.1 * label_log_likelihood_estimate(log_w), atol=1e-5, rtol=0
        )
    assert float(label_log_likelihood_estimate(log_w).exp().mean()) == pytest.approx(q_y, rel=0.02)


def test_forms_coincide_when_weights_do_not_depend_on_z():
    g = torch.Generator().manual_seed(0)
    log_joint, log_r = torch.randn(1, 7, generator=g), torch.randn(1, 7, generator=g)
    log_w = torch.log(torch.rand(1, 7, generator=g))
    a = supervised_bound(log_joint, log_r, log_w, 0.3, "weighted")
    b = supervised_bound(log_joint, log_r, log_w, 0.3, "iwae")
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a, (log_joint - log_r + 0.3 * log_w)[0])
    with pytest.raises(ValueError, match="estimator must be one of"):
        supervised_bound(log_joint, log_r, log_w, 0.1, "mean")
    with pytest.raises(ValueError, match="share one"):
        supervised_bound(log_joint, log_r, log_w[:, :3])


def test_unsupervised_bound_is_the_enumerated_elbo():
    log_q_y = torch.log_softmax(torch.tensor([[0.2, -1.0, 0.5]]), 1)
    elbo_y = torch.tensor([[-3.0, -5.0, -2.0]])
    expected = sum(math.exp(log_q_y[0, k]) * (elbo_y[0, k] - math.log(3) - log_q_y[0, k]) for k in range(3))
    assert float(unsupervised_bound(log_q_y, elbo_y, -math.log(3))) == pytest.approx(
        float(expected), rel=1e-6
    )
    # maximised over q(y|x) by the posterior softmax(elbo_y + log p(y)), where it equals logsumexp
    best = torch.log_softmax(elbo_y, 1)
    assert float(unsupervised_bound(best, elbo_y, -math.log(3))) == pytest.approx(
        float(torch.logsumexp(elbo_y, 1) - math.log(3)), rel=1e-6
    )


# ---------------------------------------------------------------------------------------------------
# The model on a tiny instance: 2x2 binary images, one style dimension, 3 classes.
# ---------------------------------------------------------------------------------------------------
def _tiny_model(**kwargs):
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


X_TINY = torch.tensor([[[[1.0, 0.0], [1.0, 1.0]]]])


@torch.no_grad()
def _tiny_exact(model):
    """log p(x, y) for every y by quadrature over z, and the exact enumerated ELBO."""
    grid = torch.linspace(-10, 10, 8001)
    dz = float(grid[1] - grid[0])
    log_pz = (-0.5 * grid**2 - 0.5 * math.log(2 * math.pi)).double()
    log_pxy, expected_loglik = [], []
    h, logits = model.encoder(X_TINY)
    log_q_y = torch.log_softmax(logits, 1)[0]
    mean, logvar = model.encoder.style(h.expand(3, -1), torch.eye(3))
    mean, logvar, grid64 = mean.double(), logvar.double(), grid.double()
    elbo = 0.0
    for y in range(3):
        logits_x = model.decode(grid[:, None], torch.full((grid.shape[0],), y))
        log_px = (
            -torch.nn.functional.binary_cross_entropy_with_logits(
                logits_x, X_TINY.expand_as(logits_x), reduction="none"
            )
            .flatten(1)
            .sum(1)
            .double()
        )
        log_pxy.append(float(torch.logsumexp(log_px + log_pz, 0) + math.log(dz) - math.log(3)))
        q = torch.exp(-0.5 * (grid64 - mean[y, 0]) ** 2 / logvar[y, 0].exp()) / torch.sqrt(
            2 * math.pi * logvar[y, 0].exp()
        )
        expected_loglik.append(float((q * log_px).sum() * dz))
        kl = 0.5 * float(mean[y, 0] ** 2 + logvar[y, 0].exp() - logvar[y, 0] - 1)
        elbo += float(log_q_y[y].exp()) * (expected_loglik[y] - kl - math.log(3) - float(log_q_y[y]))
    return np.array(log_pxy), elbo, log_q_y


def test_ss_vae_bounds_against_quadrature():
    model = _tiny_model(alpha=0.0, estimator="iwae")
    log_pxy, elbo, _ = _tiny_exact(model)
    log_px = float(np.logaddexp.reduce(log_pxy))
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        # unlabelled: the enumerated ELBO, one z sample per class -> its mean matches quadrature
        out = model.semi_supervised_loss(X_TINY.expand(20_000, -1, -1, -1), g)
        assert -float(out.loss) == pytest.approx(elbo, abs=0.02)
        assert elbo < log_px
        # labelled, importance-weighted: below log p(x, y), tightening with the number of samples
        y = 2
        means = []
        for samples in (1, 8, 64, 512):
            model.num_samples = samples
            replicates = max(20_000 // samples, 100)
            out = model.semi_supervised_loss(
                None, g, X_TINY.expand(replicates, -1, -1, -1), np.full(replicates, y)
            )
            means.append(-float(out.loss))
    assert all(m <= log_pxy[y] + 0.02 for m in means), (means, log_pxy[y])
    assert means[0] < means[1] < means[2] < means[3], means
    assert means[0] < log_pxy[y] - 1.0  # q(z|x,y) of an untrained encoder: a loose single-sample bound
    assert means[3] == pytest.approx(log_pxy[y], abs=0.06)


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
    enumerated = _tiny_model(unlabelled="enumerate")
    concrete = _tiny_model(unlabelled="concrete", temperature=1e-3, num_samples=4)
    torch.testing.assert_close(dict(enumerated.named_parameters()), dict(concrete.named_parameters()))
    batch = X_TINY.expand(40_000, -1, -1, -1)
    with torch.no_grad():
        exact = -float(enumerated.semi_supervised_loss(batch, torch.Generator().manual_seed(1)).loss)
        relaxed = concrete.semi_supervised_loss(batch, torch.Generator().manual_seed(2))
    assert -float(relaxed.loss) == pytest.approx(exact, abs=0.03)
    # at a high temperature the decoder sees blends of classes: a different (lower here) bound
    hot = _tiny_model(unlabelled="concrete", temperature=5.0, num_samples=4)
    with torch.no_grad():
        blended = -float(hot.semi_supervised_loss(batch, torch.Generator().manual_seed(2)).loss)
    assert abs(blended - exact) > 0.2


def test_concrete_unlabelled_images_train_the_classifier_and_labelled_ones_are_unchanged():
    model = _tiny_model(unlabelled="concrete", num_samples=3)
    out = model.semi_supervised_loss(X_TINY.expand(5, -1, -1, -1), torch.Generator().manual_seed(0))
    out.loss.backward()
    assert float(model.encoder.class_logits.weight.grad.abs().max()) > 0  # through the relaxed sample
    assert out.mean.shape == (5, 1) and out.logits.shape == (5, 1, 2, 2)
    assert {"elbo", "reconstruction", "kl", "kl_y", "class_entropy", "regularizer"} <= set(out.terms)
    # labelled images: the same bound whichever way unlabelled images are treated
    images, labels = X_TINY.expand(4, -1, -1, -1), np.array([0, 2, 1, 2])
    a = _tiny_model(unlabelled="concrete", num_samples=3).semi_supervised_loss(
        None, torch.Generator().manual_seed(5), images, labels
    )
    b = _tiny_model(unlabelled="enumerate", num_samples=3).semi_supervised_loss(
        None, torch.Generator().manual_seed(5), images, labels
    )
    torch.testing.assert_close(a.loss, b.loss)
    with pytest.raises(ValueError, match="unlabelled must be one of"):
        _tiny_model(unlabelled="sample")
    with pytest.raises(ValueError, match="temperature must be > 0"):
        _tiny_model(unlabelled="concrete", temperature=0.0)


def test_alpha_zero_and_all_labelled_edge_cases():
    model = _tiny_model(alpha=0.0)
    labels = np.array([0, 1, 2, 1])
    images = X_TINY.expand(4, -1, -1, -1)
    out = model.semi_supervised_loss(None, torch.Generator().manual_seed(0), images, labels)
    out.loss.backward()
    # all labelled and alpha = 0: the supervised bound is the plain ELBO of log p(x, y); q(y|x) gets no gradient
    assert float(model.encoder.class_logits.weight.grad.abs().max()) < 1e-10
    assert float(model.encoder.style_mean.weight.grad.abs().max()) > 0
    assert set(out.terms) >= {
        "loss",
        "supervised_bound",
        "log_q_y_labelled",
        "accuracy_labelled",
        "kl_per_latent",
    }
    # alpha > 0 adds exactly -alpha * mean log q(y|x) to the loss (same noise)
    with torch.no_grad():
        a0 = model.semi_supervised_loss(None, torch.Generator().manual_seed(3), images, labels)
        model.alpha = 0.5
        a5 = model.semi_supervised_loss(None, torch.Generator().manual_seed(3), images, labels)
    assert float(a5.loss - a0.loss) == pytest.approx(-0.5 * float(a0.terms["log_q_y_labelled"]), abs=1e-5)
    # an empty unlabelled batch is the same as none
    empty = model.semi_supervised_loss(images[:0], torch.Generator().manual_seed(3), images, labels)
    torch.testing.assert_close(empty.loss, a5.loss)
    # nothing at all is an error; unlabelled only works without a labelled set
    with pytest.raises(ValueError, match="at least one"):
        model.semi_supervised_loss(None, torch.Generator())
    out = model.compute_loss(Batch(images), 0, torch.Generator().manual_seed(0))
    assert "supervised_bound" not in out.terms and "elbo" in out.terms
    model.attach_labels(np.ones((2, 2, 2, 1)), [0, 2])
    assert "supervised_bound" in model.compute_loss(Batch(images), 0, torch.Generator().manual_seed(0)).terms


def test_labelled_fraction_one_labels_the_whole_grid():
    from untwine.data import get_dataset

    dataset = get_dataset("procedural_dsprites")
    everything = LabelledSet.from_dataset(dataset, 0, 3, seed=0, labelled_fraction=1.0)
    assert len(everything) == dataset.num_states
    np.testing.assert_array_equal(np.sort(everything.indices), np.arange(dataset.num_states))
    np.testing.assert_array_equal(np.bincount(everything.labels), [dataset.num_states // 3] * 3)


def test_labelled_subset_is_a_function_of_the_seed():
    from untwine.data import get_dataset

    dataset = get_dataset("procedural_dsprites")
    a = LabelledSet.from_dataset(dataset, 0, 3, seed=5, labelled_fraction=0.001)
    b = LabelledSet.from_dataset(dataset, 0, 3, seed=5, labelled_fraction=0.001)
    c = LabelledSet.from_dataset(dataset, 0, 3, seed=6, labelled_fraction=0.001)
    assert len(a) == round(0.001 * dataset.num_states) == 737
    np.testing.assert_array_equal(a.indices, b.indices)
    assert not np.array_equal(a.indices, c.indices)
    np.testing.assert_array_equal(a.labels, dataset.index_to_factors(a.indices)[:, 0])
    images, labels = a.draw(5, torch.Generator().manual_seed(0))
    images2, labels2 = b.draw(5, torch.Generator().manual_seed(0))
    assert images.shape == (5, 1, 64, 64) and torch.equal(images, images2) and torch.equal(labels, labels2)
    assert len(LabelledSet.from_dataset(dataset, 4, 32, seed=0, num_labels=10)) == 10


def test_bad_labels_raise_value_errors_naming_the_argument():
    from untwine.data import get_dataset
    from untwine.experiments.semi_supervised import choose_labelled

    model = _tiny_model()
    images = np.zeros((4, 2, 2, 1), np.float32)
    with pytest.raises(ValueError, match="labels has 3 entries but images has 4"):
        model.attach_labels(images, [0, 1, 2])
    with pytest.raises(ValueError, match=r"labels\[1\] = 3 is out of range: class indices must lie in 0..2"):
        model.attach_labels(images, [0, 3, 1, 1])
    with pytest.raises(ValueError, match=r"labels\[0\] = -1 is out of range"):
        LabelledSet.from_arrays(images, [-1, 0, 0, 0], 3)
    with pytest.raises(ValueError, match="labels must hold integer class indices"):
        model.attach_labels(images, [0.5, 1, 1, 1])
    with pytest.raises(ValueError, match="labels must be a one-dimensional array"):
        model.attach_labels(images, np.zeros((4, 1), int))
    x = torch.zeros(4, 1, 2, 2)
    with pytest.raises(ValueError, match="labels has 2 entries but labelled_images has 4"):
        model.semi_supervised_loss(None, torch.Generator(), x, [0, 1])
    with pytest.raises(ValueError, match="labels is missing"):
        model.semi_supervised_loss(None, torch.Generator(), x)
    with pytest.raises(ValueError, match="factors has 3 rows but images has 4"):
        model.compute_loss(Batch(x, np.zeros((3, 5), int)), 0, torch.Generator())
    with pytest.raises(ValueError, match=r"factors\[:, 0\]\[2\] = 7 is out of range"):
        model.compute_loss(Batch(x, np.array([[0], [1], [7], [0]])), 0, torch.Generator())
    with pytest.raises(ValueError, match="unlabelled_labels has 1 entries but x has 4"):
        model.semi_supervised_loss(x, torch.Generator(), unlabelled_labels=[1])
    dataset = get_dataset("procedural_dsprites")
    with pytest.raises(
        ValueError, match=r"label_factor=5 is out of range: procedural_dsprites has 5 factors"
    ):
        LabelledSet.from_dataset(dataset, 5, 3, seed=0, num_labels=10)
    with pytest.raises(ValueError, match="num_classes=4 but the label factor 'shape' has 3 values"):
        LabelledSet.from_dataset(dataset, 0, 4, seed=0, num_labels=10)
    with pytest.raises(ValueError, match="num_labels must lie in 1"):
        LabelledSet.from_dataset(dataset, 0, 3, seed=0, num_labels=0)
    with pytest.raises(
        ValueError, match="labelled_fraction=0.0 is not allowed .* takes a number > 0 and <= 1"
    ):
        build_model("ss_vae", num_channels=1, init_generator=0, labelled_fraction=0.0)
    with pytest.raises(ValueError, match=r"labels\[2\] = 10 is out of range"):
        choose_labelled([0, 1, 10], 2, seed=0)
    with pytest.raises(ValueError, match="num_labels=5 exceeds"):
        choose_labelled([0, 1, 2], 5, seed=0)


# ---------------------------------------------------------------------------------------------------
# Training loop path: model=ss_vae trains, logs, resumes bit-identically, gives representations
# ---------------------------------------------------------------------------------------------------
def test_ss_vae_through_the_training_loop_and_cli(tmp_path):
    from untwine.cli import main as cli_main
    from untwine.training import TrainConfig, representation_function, train
    from untwine.training.checkpoint import load_checkpoint

    assert MODEL_DEFAULTS["ss_vae"]["alpha"] == 0.1
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) model.gamma for model 'ss_vae'"):
        TrainConfig.from_overrides(["model=ss_vae", "model.gamma=3"])
    args = [
        "model=ss_vae",
        "dataset=procedural_dsprites",
        "batch_size=8",
        "threads=1",
        "progress=false",
        "eval_batches=1",
        "num_latents=4",
        "model.labelled_fraction=0.001",
        "model.labelled_batch_size=4",
        "model.alpha=5",
        "checkpoint_every=2",
        "log_every=2",
    ]
    assert cli_main(["train", *args, "steps=4", "--out", str(tmp_path / "full")]) == 0
    part = train(TrainConfig.from_overrides([*args, "steps=2"]), tmp_path / "part")
    saved = json.loads((part / "config.json").read_text())
    saved["config"]["steps"] = 4
    (part / "config.json").write_text(json.dumps(saved))
    train(None, part, resume=True)
    full, resumed = (
        load_checkpoint(tmp_path / "full" / "checkpoint.pt"),
        load_checkpoint(part / "checkpoint.pt"),
    )
    for key in full["model"]:
        assert torch.equal(full["model"][key], resumed["model"][key]), key
    log = [json.loads(line) for line in (tmp_path / "full" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [2, 4]
    for key in (
        "loss",
        "elbo",
        "supervised_bound",
        "accuracy_labelled",
        "accuracy_unlabelled",
        "kl_per_latent",
    ):
        assert key in log[-1], key
    assert saved["config"]["model_params"]["alpha"] == 5
    final = json.loads((tmp_path / "full" / "final_eval.json").read_text())
    assert final["finite"] and "accuracy_unlabelled" in final["terms"]
    from untwine.data import get_dataset

    codes = representation_function(tmp_path / "full", "mean")(
        get_dataset("procedural_dsprites").sample_observations(6, 0)
    )
    assert codes.shape == (6, 4) and np.isfinite(codes).all()


# ---------------------------------------------------------------------------------------------------
# Digits: 10 labels, better than chance and than the supervised-only classifier
# ---------------------------------------------------------------------------------------------------
def test_digits_with_ten_labels_beats_supervised_only():
    from untwine.experiments.semi_supervised import DigitsConfig, _digits_job

    torch.set_num_threads(1)
    result = _digits_job(
        DigitsConfig(num_labels=10, seed=1, steps=1500, hidden=128, num_latents=2, alpha=1.0)
    )
    assert len(result["labelled_indices"]) == 10
    ss, supervised = result["ss_vae_test_error"], result["supervised_test_error"]
    assert ss < 0.35, result  # chance is 0.9
    assert ss < supervised - 0.08, (ss, supervised)


# ---------------------------------------------------------------------------------------------------
# Part 2: the few-label S^2 models (Locatello et al. 2020)
# ---------------------------------------------------------------------------------------------------
DSPRITES_SIZES = (3, 6, 40, 32, 32)


def _factors(n=3000, seed=0):
    rng = np.random.default_rng(seed)
    return np.stack([rng.integers(0, k, n) for k in DSPRITES_SIZES], 1)


def test_labellers():
    from untwine.data import apply_labeller

    factors = _factors()
    perfect = apply_labeller(factors, DSPRITES_SIZES, "perfect", np.random.default_rng(0))
    np.testing.assert_array_equal(perfect.labels, factors)
    assert perfect.sizes == DSPRITES_SIZES and perfect.observed_factors == (0, 1, 2, 3, 4)
    binned = apply_labeller(factors, DSPRITES_SIZES, "bin", np.random.default_rng(0), num_bins=5)
    assert binned.sizes == (3, 5, 5, 5, 5)
    np.testing.assert_array_equal(binned.labels[:, 0], factors[:, 0])
    np.testing.assert_array_equal(binned.labels[:, 2], factors[:, 2] // 8)
    np.testing.assert_array_equal(binned.labels[:, 1], np.minimum((factors[:, 1] / 1.2).astype(int), 4))
    assert binned.labels.max(0).tolist() == [2, 4, 4, 4, 4]
    for p in (0.0, 1.0, 0.1):
        noisy = apply_labeller(factors, DSPRITES_SIZES, "noisy", np.random.default_rng(1), prob_random=p)
        changed = (noisy.labels != factors).mean(0)
        expected = p * (1 - 1 / np.array(DSPRITES_SIZES))
        np.testing.assert_allclose(changed, expected, atol=0.03)
        assert (noisy.labels < np.array(DSPRITES_SIZES)).all() and noisy.sizes == DSPRITES_SIZES
    permuted = apply_labeller(factors, DSPRITES_SIZES, "permuted", np.random.default_rng(2))
    for j, size in enumerate(DSPRITES_SIZES):
        mapping = {}
        for f, label in zip(factors[:, j], permuted.labels[:, j], strict=True):
            assert mapping.setdefault(f, label) == label  # a function of the factor...
        assert sorted(mapping.values()) == list(range(size))  # ...and a bijection
    partial = apply_labeller(
        factors, DSPRITES_SIZES, "partial", np.random.default_rng(3), num_observed_factors=2
    )
    assert len(set(partial.observed_factors)) == 2 and partial.labels.shape == (3000, 2)
    np.testing.assert_array_equal(partial.labels, factors[:, list(partial.observed_factors)])
    assert partial.sizes == tuple(DSPRITES_SIZES[j] for j in partial.observed_factors)
    again = apply_labeller(
        factors, DSPRITES_SIZES, "partial", np.random.default_rng(3), num_observed_factors=2
    )
    assert again.observed_factors == partial.observed_factors
    with pytest.raises(ValueError, match="labeller must be one of"):
        apply_labeller(factors, DSPRITES_SIZES, "oracle", np.random.default_rng(0))
    with pytest.raises(ValueError, match="num_observed_factors must be an int in 1..5"):
        apply_labeller(factors, DSPRITES_SIZES, "partial", np.random.default_rng(0), num_observed_factors=6)
    with pytest.raises(ValueError, match="prob_random must lie in"):
        apply_labeller(factors, DSPRITES_SIZES, "noisy", np.random.default_rng(0), prob_random=2)
    with pytest.raises(ValueError, match=r"factors\[:, 2\]\[0\] = 40 is out of range"):
        apply_labeller(np.array([[0, 0, 40, 0, 0]]), DSPRITES_SIZES, "perfect", np.random.default_rng(0))


def test_supervised_losses_match_hand_computation():
    from untwine.models.few_label import (
        supervised_loss_cov,
        supervised_loss_embed,
        supervised_loss_l2,
        supervised_loss_xent,
    )

    rng = np.random.default_rng(0)
    rep = rng.normal(size=(6, 3))
    labels = np.stack([rng.integers(0, 3, 6), rng.integers(0, 5, 6)], 1)
    sizes = (3, 5)
    r, y = torch.tensor(rep, dtype=torch.float32), torch.tensor(labels)
    sig = 1 / (1 + np.exp(-rep[:, :2]))
    t = labels / np.array(sizes)
    xent = -(t * np.log(sig) + (1 - t) * np.log(1 - sig)).sum()
    assert float(supervised_loss_xent(r, y, sizes)) == pytest.approx(xent, rel=1e-5)
    assert float(supervised_loss_l2(r, y, sizes, torch.tensor(2.0))) == pytest.approx(
        ((2 * rep[:, :2] - labels) ** 2).sum(), rel=1e-5
    )
    assert float(supervised_loss_l2(r, y, sizes)) == pytest.approx(((sig - t) ** 2).sum(), rel=1e-5)
    cov = ((rep - rep.mean(0))[:, :, None] * (labels - labels.mean(0))[:, None, :]).mean(0)
    cov[0, 0] = cov[1, 1] = 0
    assert float(supervised_loss_cov(r, y)) == pytest.approx((cov**2).sum(), rel=1e-5)
    embeddings = [rng.normal(size=3), rng.normal(size=5)]
    sigmas = [0.7, 1.3]
    expected = 0.0
    for j in range(2):
        logits = -(((rep[:, j : j + 1] - embeddings[j][None, :]) * sigmas[j]) ** 2)
        log_softmax = logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)
        expected += -log_softmax[np.arange(6), labels[:, j]].mean()
    got = supervised_loss_embed(r, y, [torch.tensor(e, dtype=torch.float32) for e in embeddings], sigmas)
    assert float(got) == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="at least as many latents as labelled factors: 1 latents for 2"):
        supervised_loss_xent(r[:, :1], y, sizes)


def test_annealers():
    from untwine.models.few_label import annealed_gamma

    assert [annealed_gamma("fixed", 4.0, s, 10) for s in (0, 50)] == [4.0, 4.0]
    assert [annealed_gamma("anneal", 4.0, s, 10) for s in (0, 5, 10, 20)] == [0.0, 2.0, 4.0, 4.0]
    assert [annealed_gamma("fine_tune", 4.0, s, 10) for s in (0, 10, 11, 30)] == [0.0, 0.0, 4.0, 4.0]
    with pytest.raises(ValueError, match="annealer must be one of"):
        annealed_gamma("cosine", 1.0, 0, 1)


def test_s2_supervision_reaches_only_the_first_latents_and_checks_sizes():
    from untwine.data import get_dataset

    dataset = get_dataset("procedural_dsprites")
    images = dataset.sample_observations_from_factors(_factors(4), 0)
    model = build_model(
        "s2_beta_vae",
        num_channels=1,
        num_latents=6,
        init_generator=torch.Generator().manual_seed(0),
        gamma_sup=3.0,
        labelled_batch_size=4,
    )
    model.attach_labels(images, _factors(4)[:, :2], (3, 6))
    unsupervised = build_model(
        "beta_vae", num_channels=1, num_latents=6, init_generator=torch.Generator().manual_seed(0)
    )
    x = torch.from_numpy(images.transpose(0, 3, 1, 2).copy())
    with torch.no_grad():
        out = model.compute_loss(Batch(x), 0, torch.Generator().manual_seed(0))
        base = unsupervised.compute_loss(Batch(x), 0, torch.Generator().manual_seed(0))
    # same noise, so the loss is the beta-VAE's plus gamma_sup times the supervised loss
    assert float(out.loss - base.loss) == pytest.approx(3.0 * float(out.terms["supervised_loss"]), rel=1e-4)
    model.zero_grad()
    mean, _ = model.encode(x)
    model.supervised_term(mean, torch.from_numpy(_factors(4)[:, :2])).backward()
    grad = model.encoder.mean.weight.grad  # xent ties latent j to factor j: only 2 of the 6 means move
    assert float(grad[:2].abs().sum()) > 0 and float(grad[2:].abs().sum()) == 0.0
    assert model.encoder.logvar.weight.grad is None
    with pytest.raises(ValueError, match="num_latents=3 is fewer than the 5 labelled factors"):
        build_model("s2_beta_vae", num_channels=1, num_latents=3, init_generator=0).attach_dataset(dataset, 0)
    build_model(
        "s2_beta_vae", num_channels=1, num_latents=3, init_generator=0, supervised_loss="cov", num_labels=10
    ).attach_dataset(dataset, 0)
    with pytest.raises(ValueError, match=r"labels has shape|labels must have shape \(n, 2\)"):
        model.attach_labels(images, _factors(4)[:, :3], (3, 6))
    with pytest.raises(ValueError, match=r"labels\[:, 1\]\[0\] = 6 is out of range"):
        model.attach_labels(images, np.array([[0, 6]] * 4), (3, 6))
    with pytest.raises(
        ValueError, match="supervised_loss='hinge' is not allowed .* takes one of xent, l2, cov"
    ):
        build_model("s2_factor_vae", num_channels=1, init_generator=0, supervised_loss="hinge")


@pytest.mark.parametrize(
    "model, extra",
    [
        ("s2_beta_vae", ["model.beta=4"]),
        ("s2_factor_vae", ["model.supervised_loss=l2", "model.labeller=noisy"]),
        (
            "s2_dip_vae_i",
            [
                "model.supervised_loss=cov",
                "model.labeller=permuted",
                "model.annealer=anneal",
                "model.iteration_threshold=2",
            ],
        ),
        ("s2_dip_vae_ii", ["model.supervised_loss=embed", "model.labeller=bin", "model.annealer=fine_tune"]),
        (
            "s2_beta_tc_vae",
            ["model.supervised_loss=embed", "model.embed_use_order=true", "model.labeller=partial"],
        ),
        ("s2_mine_vae", ["model.beta=2", "model.gamma_sup=3"]),
        ("supervised", ["model.supervised_loss=l2"]),
    ],
)
def test_s2_models_train_and_resume_through_the_loop(tmp_path, model, extra):
    from untwine.training import TrainConfig, representation_function, train
    from untwine.training.checkpoint import load_checkpoint

    args = [
        f"model={model}",
        *extra,
        "dataset=procedural_dsprites",
        "batch_size=4",
        "threads=1",
        "progress=false",
        "eval_batches=1",
        "model.num_labels=50",
        "checkpoint_every=1",
        "log_every=1",
    ]
    full = train(TrainConfig.from_overrides([*args, "steps=2"]), tmp_path / "full")
    part = train(TrainConfig.from_overrides([*args, "steps=1"]), tmp_path / "part")
    saved = json.loads((part / "config.json").read_text())
    saved["config"]["steps"] = 2
    (part / "config.json").write_text(json.dumps(saved))
    train(None, part, resume=True)
    a, b = load_checkpoint(full / "checkpoint.pt")["model"], load_checkpoint(part / "checkpoint.pt")["model"]
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    log = [json.loads(line) for line in (full / "log.jsonl").read_text().splitlines()]
    assert "supervised_loss" in log[-1] and "gamma_sup" in log[-1] and np.isfinite(log[-1]["loss"])
    from untwine.data import get_dataset

    codes = representation_function(full, "mean")(
        get_dataset("procedural_dsprites").sample_observations(3, 0)
    )
    assert codes.shape == (3, 10)


def test_labelled_split_follows_dlibs_train_test_split():
    labelled = LabelledSet.from_arrays(np.zeros((10, 4, 4, 1)), np.arange(20).reshape(10, 2) % 3, (3, 3))
    train, validation = labelled.split(0.75)  # ceil(7.5) = 8 train, 2 validation, in order
    assert len(train) == 8 and len(validation) == 2
    assert np.array_equal(train.labels, labelled.labels[:8]) and np.array_equal(
        validation.labels, labelled.labels[8:]
    )
    assert labelled.split(1.0) == (labelled, None)
    assert labelled.split(0.95)[1] is None  # ceil(9.5) = 10: nothing left to validate on
    with pytest.raises(ValueError, match=r"train_percentage must be in \(0, 1\]"):
        labelled.split(0.0)


def test_the_validation_split_of_a_grid_subset_spans_the_grid():
    """The labelled points keep the order they were drawn in, so the split's last 10 % are a random 10 %
    (as in dlib, whose labelled points are random draws); on sorted grid indices they would be the grid's
    end -- for dSprites, whose slowest factor is shape, only hearts (the bug a scaled study showed)."""
    from untwine.data import get_dataset

    dataset = get_dataset("procedural_dsprites")
    labelled = LabelledSet.from_dataset_factors(dataset, seed=0, num_labels=1000)
    rng = np.random.default_rng(np.random.SeedSequence([0, labels_module._LABEL_SEED_SALT]))
    np.testing.assert_array_equal(labelled.indices, rng.choice(dataset.num_states, 1000, replace=False))
    _, validation = labelled.split(0.9)
    assert len(validation) == 100
    np.testing.assert_array_equal(validation.indices, labelled.indices[900:])
    # every shape among the 100 validation points (all hearts before), each about a third of them
    counts = np.bincount(validation.factors[:, 0], minlength=3)
    assert counts.min() >= 20, counts


def test_few_label_run_scores_its_validation_split(tmp_path):
    from untwine.data import get_dataset
    from untwine.metrics.dci import dci
    from untwine.metrics.mig import mig
    from untwine.training import TrainConfig, train
    from untwine.training.loop import RunSeeds
    from untwine.training.representation import load_trained_model

    args = ["model=s2_beta_vae", "dataset=procedural_dsprites", "batch_size=8", "threads=1", "progress=false"]
    args += ["eval_batches=1", "steps=3", "model.num_labels=60", "model.train_percentage=0.5"]
    run = train(TrainConfig.from_overrides(args), tmp_path / "run")
    stored = json.loads((run / "validation.json").read_text())
    assert (stored["num_points"], stored["num_train_points"]) == (
        30,
        27,
    )  # ceil(0.9 * 30) train the predictors
    assert stored["label_sizes"] == list(get_dataset("procedural_dsprites").factor_sizes)
    # the same numbers from the trained model, its own split and the metric functions, by hand
    config, model = load_trained_model(run, "cpu")
    data_seed = RunSeeds.from_seed(config.seed).data
    model.attach_dataset(get_dataset("procedural_dsprites"), data_seed)
    assert len(model.labelled_set) == 30 and len(model.validation_set) == 30
    full = LabelledSet.from_dataset_factors(get_dataset("procedural_dsprites"), data_seed, 60)
    assert np.array_equal(model.validation_set.indices, full.indices[30:])  # the held-out half, in order
    images = model.validation_set.images_of(np.arange(30))
    with torch.no_grad():
        codes = model.encode(torch.from_numpy(images.transpose(0, 3, 1, 2)).contiguous())[0].double().numpy()
    labels = model.validation_set.labels
    if "mig" in stored["values"]:
        assert stored["values"]["mig"]["discrete_mig"] == pytest.approx(
            mig(codes, labels)["discrete_mig"], abs=1e-9
        )
    else:
        with pytest.raises(ValueError):
            mig(codes, labels)
    if "dci" in stored["values"]:
        expected = dci(codes[:27], labels[:27], codes[27:], labels[27:])
        assert stored["values"]["dci"]["disentanglement"] == pytest.approx(
            expected["disentanglement"], abs=1e-9
        )
    assert set(stored["values"]) | set(stored["errors"]) == {"mig", "sap_score", "dci", "unified_scores"}
    # 3 test points of 5 factors: scikit-learn warns that the classes outnumber half the samples
    assert stored["warnings"]["dci"]["UserWarning"]["count"] >= 1
    assert not (tmp_path / "run2").exists()
    no_split = train(
        TrainConfig.from_overrides([*args[:-1], "model.train_percentage=1.0"]), tmp_path / "run2"
    )
    assert not (no_split / "validation.json").exists()


def test_a_study_stores_the_validation_split_scores_beside_the_test_scores(tmp_path):
    from untwine.studies.definitions import ModelSweep, Study
    from untwine.studies.executors import InlineExecutor
    from untwine.studies.runner import run_study
    from untwine.studies.store import open_store

    study = Study(
        name="few_labels",
        description="",
        datasets=("procedural_dsprites",),
        models=(
            ModelSweep("s2_beta_vae", "beta", (1.0,), fixed={"num_labels": 40, "train_percentage": 0.5}),
        ),
        seeds=(0,),
        train={"steps": 3, "batch_size": 8, "eval_batches": 1},
        metrics=("mig",),
        metric_params={"mig": {"num_train": 500}},
        representations=("mean",),
    )
    summary = run_study(study, tmp_path / "study", executor=InlineExecutor(threads=1), progress=False)
    assert summary.done == 1 and summary.failed == 0
    with open_store(tmp_path / "study") as store:
        wide = store.results_frame(wide=True)
    (run,) = [p for p in (tmp_path / "study" / "runs").iterdir()]
    stored = json.loads((run / "validation.json").read_text())
    assert wide["validation/mig/discrete_mig"].iloc[0] == pytest.approx(
        stored["values"]["mig"]["discrete_mig"]
    )
    assert wide["validation/dci/disentanglement"].iloc[0] == pytest.approx(
        stored["values"]["dci"]["disentanglement"]
    )
    assert np.isfinite(wide["mean/mig/discrete_mig"].iloc[0])


def test_supervised_baseline_trains_the_encoder_on_labels_only():
    from untwine.models.few_label import supervised_loss_xent

    sizes = (3, 4)
    model = build_model("supervised", 1, num_latents=4, init_generator=0, labelled_batch_size=6)
    images = (
        torch.rand(12, 1, 64, 64, generator=torch.Generator().manual_seed(1)).numpy().transpose(0, 2, 3, 1)
    )
    labels = np.stack([np.arange(12) % 3, np.arange(12) % 4], axis=1)
    model.attach_labels(images, labels, sizes)
    assert set(model.params) == set(MODEL_DEFAULTS["supervised"]) and "gamma_sup" not in model.params
    x = torch.rand(5, 1, 64, 64, generator=torch.Generator().manual_seed(2))
    out = model.compute_loss(Batch(x), 0, torch.Generator().manual_seed(3))
    # loss = reconstruction of the unlabelled batch + the supervised loss on the labelled draw, unweighted
    replay = torch.Generator().manual_seed(3)
    torch.randn(5, 4, generator=replay)  # the reparameterisation noise comes first, then the labelled draw
    drawn_images, drawn_labels = model.labelled_set.draw(6, replay)
    assert float(out.terms["gamma_sup"]) == 1.0
    assert float(out.loss.detach()) == pytest.approx(
        float(out.terms["reconstruction"]) + float(out.terms["supervised_loss"]), rel=1e-6
    )
    out.loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.decoder.parameters())
    # the reconstruction reaches the decoder only: with the supervised part alone the encoder's gradient
    # is the same (None for the log-variance head, which nothing trains, as in dlib)
    encoder_grad = [None if p.grad is None else p.grad.clone() for p in model.encoder.parameters()]
    assert any(g is None for g in encoder_grad) and any(
        g is not None and g.abs().sum() > 0 for g in encoder_grad
    )
    model.zero_grad(set_to_none=True)
    mean, _ = model.encode(drawn_images)
    supervised_loss_xent(mean, drawn_labels, sizes).backward()
    for got, expected in zip(encoder_grad, (p.grad for p in model.encoder.parameters()), strict=True):
        assert (got is None) == (expected is None)
        assert got is None or torch.allclose(got, expected, rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) model.gamma_sup for model 'supervised'"):
        from untwine.training import TrainConfig

        TrainConfig.from_overrides(["model=supervised", "model.gamma_sup=2"])


def test_mine_estimate_matches_a_loop_over_pairs_and_gradients_stay_apart():
    from untwine.models.few_label import MineHead

    head = MineHead(2, 3)
    head.reset_parameters(torch.Generator().manual_seed(0))
    with torch.no_grad():
        head.bx.normal_(generator=torch.Generator().manual_seed(1))
        head.b2.normal_(generator=torch.Generator().manual_seed(2))
    rng = np.random.default_rng(0)
    z = torch.tensor(rng.normal(size=(7, 3)), dtype=torch.float32)
    y = torch.tensor(rng.integers(0, 4, size=(7, 2)))
    order = torch.stack([torch.randperm(7, generator=torch.Generator().manual_seed(p)) for p in range(6)])
    got = head.mutual_information(z, y, order, detach_weights=False)
    for factor in range(2):
        for r in range(3):
            p = factor * 3 + r

            def t(x, label, p=p):
                hidden = torch.nn.functional.elu(
                    x * head.wx[p] + head.bx[p] + label * head.wy[p] + head.by[p]
                )
                return float(((hidden * head.w2[p]).sum() + head.b2[p]).detach())

            joint = [t(z[b, r], float(y[b, factor])) for b in range(7)]
            marginal = [t(z[b, r], float(y[order[p, b], factor])) for b in range(7)]
            expected = np.mean(joint) + math.log(7) - math.log(np.sum(np.exp(marginal)))
            assert float(got[factor, r]) == pytest.approx(expected, rel=1e-5, abs=1e-6)

    model = build_model(
        "s2_mine_vae", 1, num_latents=3, init_generator=0, gamma_sup=2.0, labelled_batch_size=6
    )
    images = (
        torch.rand(12, 1, 64, 64, generator=torch.Generator().manual_seed(1)).numpy().transpose(0, 2, 3, 1)
    )
    model.attach_labels(images, np.stack([np.arange(12) % 3, np.arange(12) % 4], axis=1), (3, 4))
    out = model.compute_loss(Batch(torch.rand(5, 1, 64, 64)), 0, torch.Generator().manual_seed(3))
    assert out.discriminator_loss is not None and float(out.terms["gamma_sup"]) == 2.0
    out.loss.backward()  # the VAE's loss: no gradient on the statistics networks
    assert all(p.grad is None for p in model.mine_head.parameters())
    encoder = [p.grad.clone() for p in model.encoder.parameters() if p.grad is not None]
    out.discriminator_loss.backward()  # the networks' loss: no gradient on the encoder
    assert all(p.grad is not None for p in model.mine_head.parameters())
    after = [p.grad for p in model.encoder.parameters() if p.grad is not None]
    assert all(torch.equal(a, b) for a, b in zip(encoder, after, strict=True))
    assert [o.defaults["lr"] for o in model.make_optimizers()] == [1e-4, 0.01]
    with pytest.raises(ValueError, match="num_latents=1 is fewer than the 2 labelled factors"):
        build_model("s2_mine_vae", 1, num_latents=1, init_generator=0).attach_labels(
            images, np.zeros((12, 2), int), (3, 4)
        )


def test_semi_supervised_study_grid():
    from untwine.studies.definitions import SEMI_SUPERVISED_STUDY as study
    from untwine.studies.grid import Selection, decode_model_num, expand, model_num

    keys = [
        f"{m}_{n}"
        for m in ("s2_beta_vae", "s2_factor_vae", "s2_dip_vae_i", "s2_beta_tc_vae")
        for n in (100, 1000)
    ]
    assert [m.key for m in study.models] == [*keys, "supervised"]
    assert study.size == 7 * (8 * 6 + 2) * 5
    # datasets outermost (9 sweeps x 6 value slots x 5 seeds = 270), then sweeps (30), values (5), seeds
    assert model_num(study, "cars3d", "s2_dip_vae_i_1000", 3, 4) == 270 * 5 + 30 * 5 + 5 * 3 + 4
    assert decode_model_num(study, 270 * 6 + 30 * 8 + 5 * 1 + 2) == ("shapes3d", "supervised", 1, 2)
    (factor, supervised) = expand(
        study,
        Selection(
            datasets=("procedural_dsprites",),
            models=("s2_factor_vae_100", "supervised"),
            values=(0,),
            seeds=(0,),
        ),
    )
    assert (
        factor.config["model"] == "s2_factor_vae" and factor.config["steps"] == 150_000
    )  # dlib's global steps
    assert (
        factor.config["model_params"]["num_labels"] == 100 and factor.config["model_params"]["gamma"] == 10.0
    )
    assert factor.config["model_params"]["train_percentage"] == 0.9
    assert (
        supervised.config["model"] == "supervised" and supervised.config["model_params"]["num_labels"] == 100
    )
