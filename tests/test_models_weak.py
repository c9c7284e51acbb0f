"""Pairs and the weakly-supervised models: the pair rule, the aggregated posteriors, the adaptive rule,
the loss against a hand computation, gradients into both images, and the errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from untwine.data import Batch, PairStream, get_dataset
from untwine.data.pairs import RANDOM_K, check_k, sample_pair_factors, sample_pairs
from untwine.models import build_model
from untwine.models import losses as L
from untwine.models.weak import (
    adaptive_keep_mask,
    group_posterior,
    label_keep_mask,
    pair_divergence,
    product_of_experts,
)
from untwine.training import TrainConfig, train


@pytest.fixture(scope="module")
def dsprites():
    return get_dataset("procedural_dsprites")


# --------------------------------------------------------------------------------------------------
# pairs
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("k", [1, 2, 4, RANDOM_K])
def test_pairs_follow_the_rule(dsprites, k):
    n, num_factors = 20_000, dsprites.num_factors
    pairs = sample_pair_factors(dsprites, n, k, np.random.default_rng(0))
    differs = pairs.first != pairs.second
    # only the resampled factors can differ, so never more than num_resampled of them
    assert (differs.sum(1) <= pairs.num_resampled).all()
    # the label is a resampled factor: every other factor that differs is one of the others resampled
    assert differs[np.arange(n), pairs.changed].mean() > 0.5
    # the number resampled is 1 or k_observed, each with probability 1/2
    if k == RANDOM_K:
        assert set(np.unique(pairs.num_resampled)) == set(range(1, num_factors))
        # P(1) = 1/2 + 1/2 * 1/(K-1); the others 1/2 * 1/(K-1)
        expected = {1: 0.5 + 0.5 / (num_factors - 1), 3: 0.5 / (num_factors - 1)}
        for value, p in expected.items():
            share = (pairs.num_resampled == value).mean()
            assert abs(share - p) < 5 * math.sqrt(p * (1 - p) / n)
    else:
        assert set(np.unique(pairs.num_resampled)) == {1, k} or k == 1
        if k > 1:
            share = (pairs.num_resampled == 1).mean()
            assert abs(share - 0.5) < 5 * math.sqrt(0.25 / n)
    # a resampled value is uniform over all values, so it equals the old one with probability 1/size:
    # with one factor resampled, the pair is identical with probability mean(1/size) over the factors
    single = pairs.num_resampled == 1
    sizes = np.asarray(dsprites.factor_sizes)
    p_same = np.mean(1 / sizes)
    share_same = (~differs[single]).all(1).mean()
    assert abs(share_same - p_same) < 5 * math.sqrt(p_same * (1 - p_same) / single.sum())
    # each factor is the label equally often
    counts = np.bincount(pairs.changed, minlength=num_factors) / n
    assert np.abs(counts - 1 / num_factors).max() < 5 * math.sqrt(1 / num_factors / n)


def test_pairs_come_from_the_generator_only(dsprites):
    a = sample_pairs(dsprites, 16, 2, np.random.default_rng(3))
    b = sample_pairs(dsprites, 16, 2, np.random.default_rng(3))
    c = sample_pairs(dsprites, 16, 2, np.random.default_rng(4))
    assert np.array_equal(a[0].second, b[0].second) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0].second, c[0].second)
    factors, images = a
    assert images.shape == (32, 64, 64, 1)
    assert np.array_equal(images[:16], dsprites.sample_observations_from_factors(factors.first, 0))
    assert np.array_equal(images[16:], dsprites.sample_observations_from_factors(factors.second, 0))


def test_pair_stream_resumes_exactly_and_hands_out_pairs(dsprites):
    stream = PairStream(dsprites, 8, seed=5, k=1)
    next(stream)
    state = stream.state_dict()
    expected = next(stream)
    other = PairStream(dsprites, 8, seed=5, k=1)
    other.load_state_dict(state)
    again = next(other)
    assert again.is_pairs and again.second_images.shape == (8, 1, 64, 64)
    assert torch.equal(again.images, expected.images) and torch.equal(
        again.second_images, expected.second_images
    )
    assert np.array_equal(again.changed_factor, expected.changed_factor)
    # k = 1: each pair differs at most in its label's factor
    differs = again.factors != again.second_factors
    assert (differs.sum(1) <= 1).all() and differs[np.arange(8), again.changed_factor].sum() == differs.sum()


@pytest.mark.parametrize(
    "k, message",
    [
        (0, r"k=0 is outside 1 \.\. 4"),
        (5, r"k=5 is outside 1 \.\. 4"),
        (1.5, "k must be an int"),
        (True, "int"),
    ],
)
def test_bad_k_is_refused(k, message):
    with pytest.raises(ValueError, match=message):
        check_k(k, 5)


# --------------------------------------------------------------------------------------------------
# aggregation, closed forms
# --------------------------------------------------------------------------------------------------
def _gaussians():
    m1, m2 = torch.tensor([[1.0, 0.0, -2.0]]), torch.tensor([[3.0, 0.5, -2.0]])
    v1, v2 = torch.tensor([[1.0, 0.25, 2.0]]), torch.tensor([[3.0, 0.25, 2.0]])
    return m1, v1.log(), m2, v2.log()


def test_group_and_product_posteriors_by_hand():
    m1, lv1, m2, lv2 = _gaussians()
    mean, logvar = group_posterior(m1, lv1, m2, lv2)
    assert torch.allclose(mean, torch.tensor([[2.0, 0.25, -2.0]]))
    assert torch.allclose(logvar.exp(), torch.tensor([[2.0, 0.25, 2.0]]))
    mean, logvar = product_of_experts(m1, lv1, m2, lv2)
    # var = 2 v1 v2 / (v1 + v2): 2*3/4 = 1.5, 2*0.0625/0.5 = 0.25, 2*4/4 = 2
    assert torch.allclose(logvar.exp(), torch.tensor([[1.5, 0.25, 2.0]]))
    # mean = (m1/v1 + m2/v2) * var / 2: (1 + 1) * 0.75 = 1.5, (0 + 2) * 0.125 = 0.25, (-1 - 1) * 1 = -2
    assert torch.allclose(mean, torch.tensor([[1.5, 0.25, -2.0]]))


def test_divergence_is_twice_the_kl():
    m1, lv1, m2, lv2 = _gaussians()
    q1 = torch.distributions.Normal(m1, (lv1 / 2).exp())
    q2 = torch.distributions.Normal(m2, (lv2 / 2).exp())
    assert torch.allclose(pair_divergence(m1, lv1, m2, lv2), 2 * torch.distributions.kl_divergence(q1, q2))
    assert float(pair_divergence(m1, lv1, m2, lv2)[0, 2]) == 0.0


def test_adaptive_rule_keeps_the_upper_bin():
    deltas = torch.tensor(
        [
            [0.0, 0.1, 5.0, 4.9, 0.2],  # midpoint 2.5: latents 2 and 3 differ
            [1.0, 3.0, 2.0, 1.0, 1.0],  # midpoint 2.0 itself is in the upper bin
            [0.7, 0.7, 0.7, 0.7, 0.7],  # all equal: everything shared
        ]
    )
    assert adaptive_keep_mask(deltas).tolist() == [
        [False, False, True, True, False],
        [False, True, True, False, False],
        [False] * 5,
    ]
    assert label_keep_mask(torch.tensor([2, 0]), 4).tolist() == [
        [False, False, True, False],
        [True, False, False, False],
    ]


class _FixedEncoder(torch.nn.Module):
    """Encodes image b of the batch to the given (mean, logvar) rows, whatever the pixels."""

    def __init__(self, mean, logvar):
        super().__init__()
        self.mean, self.logvar = mean, logvar

    def forward(self, x):
        scale = x.flatten(1).mean(1, keepdim=True) * 0 + 1  # keeps the graph through x
        return self.mean * scale, self.logvar * scale


@pytest.mark.parametrize("name, aggregate", [("group_vae", group_posterior), ("ml_vae", product_of_experts)])
@pytest.mark.parametrize("aggregation", ["argmax", "labels"])
def test_loss_matches_a_hand_computation(name, aggregate, aggregation):
    """Constructed pair posteriors: latent 1 differs strongly, so the adaptive rule keeps latent 1 (and
    the labels rule keeps the labelled latent 1 as well); the loss is recomputed from the formulas."""
    model = build_model(name, 1, num_latents=3, init_generator=0, beta=2.0, aggregation=aggregation)
    m1 = torch.tensor([[0.5, -1.0, 0.2], [0.0, 2.0, 0.1]])
    m2 = torch.tensor([[0.4, 1.5, 0.2], [0.1, -2.0, 0.0]])
    lv1 = torch.tensor([[0.0, -1.0, 0.3], [-0.5, -1.0, 0.0]])
    lv2 = torch.tensor([[0.1, -1.2, 0.3], [-0.4, -1.0, 0.1]])
    model.encoder = _FixedEncoder(torch.cat([m1, m2]), torch.cat([lv1, lv2]))
    x1, x2 = torch.rand(2, 1, 64, 64), torch.rand(2, 1, 64, 64)
    out = model.compute_loss(
        Batch(x1, second_images=x2, changed_factor=np.array([1, 1])), 0, torch.Generator()
    )
    keep = torch.tensor([[False, True, False]] * 2)
    assert torch.equal(model.keep_mask(m1, lv1, m2, lv2, np.array([1, 1])), keep)
    sm, slv = aggregate(m1, lv1, m2, lv2)
    post_m = torch.cat([torch.where(keep, m1, sm), torch.where(keep, m2, sm)])
    post_lv = torch.cat([torch.where(keep, lv1, slv), torch.where(keep, lv2, slv)])
    # KL(q || N(0, 1)) per latent, averaged over the two images of each pair and over pairs
    kl = (0.5 * (post_m**2 + post_lv.exp() - post_lv - 1)).sum(1).mean()
    rec = L.bernoulli_reconstruction_loss(out.logits, torch.cat([x1, x2]))
    expected = 0.5 * rec[:2].mean() + 0.5 * rec[2:].mean() + 2.0 * kl
    assert float(out.terms["kl"]) == pytest.approx(float(kl), rel=1e-6)
    assert float(out.loss.detach()) == pytest.approx(float(expected.detach()), rel=1e-6)
    assert float(out.terms["shared_latents"]) == 2.0
    # the samples were drawn from the aggregated posteriors: the shared latent 0 of both images of a pair
    # has one mean and one variance, so (z - mean) / std is the reparameterisation noise of each
    noise = torch.randn(4, 3, generator=torch.Generator())
    assert torch.allclose(out.z, post_m + (post_lv / 2).exp() * noise, atol=1e-6)


def test_gradients_reach_both_images_of_a_pair():
    model = build_model("group_vae", 1, init_generator=0, aggregation="argmax")
    x1 = torch.rand(4, 1, 64, 64, requires_grad=True)
    x2 = torch.rand(4, 1, 64, 64, requires_grad=True)
    out = model.compute_loss(Batch(x1, second_images=x2), 0, torch.Generator().manual_seed(0))
    out.loss.backward()
    assert x1.grad.abs().sum() > 0 and x2.grad.abs().sum() > 0
    assert all(p.grad is not None for p in model.encoder.parameters())


def test_single_images_and_bad_settings_are_refused_before_training(tmp_path):
    model = build_model("ml_vae", 1, init_generator=0)
    with pytest.raises(ValueError, match="trains on pairs of images"):
        model.compute_loss(Batch(torch.rand(2, 1, 64, 64)), 0, torch.Generator())
    with pytest.raises(ValueError, match=r"model\.k=0 is not allowed .* takes an integer >= 1 or rnd"):
        TrainConfig.from_overrides(["model=group_vae", "model.k=0"])
    config = TrainConfig.from_overrides(["model=group_vae", "model.k=5", "steps=2", "progress=false"])
    with pytest.raises(ValueError, match=r"k=5 is outside 1 \.\. 4"):
        train(config, tmp_path / "k5")
    assert not (tmp_path / "k5" / "checkpoint.pt").exists()
    config = TrainConfig.from_overrides(
        ["model=group_vae", "model.aggregation=labels", "num_latents=3", "steps=2", "progress=false"]
    )
    with pytest.raises(ValueError, match="needs num_latents >= 5"):
        train(config, tmp_path / "labels")


def test_a_pair_model_trains_from_the_pair_stream_with_k_rnd(tmp_path):
    config = TrainConfig.from_overrides(
        ["model=ml_vae", "model.k=rnd", "model.beta=4", "steps=3", "batch_size=4", "eval_batches=1"]
        + ["progress=false", "threads=1"]
    )
    run = train(config, tmp_path / "run")
    saved = json.loads((run / "config.json").read_text())["config"]
    assert saved["model_params"] == {"beta": 4, "aggregation": "argmax", "k": "rnd"}  # defaults resolved
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == 3 and 0 <= log[-1]["shared_latents"] <= 10


def test_pair_chains_resample_from_the_previous_frame(dsprites):
    from untwine.visualisation.pair_animation import pair_chains

    factors, captions = pair_chains(dsprites, 1, 0, num_chains=6, num_frames=8)
    assert factors.shape == (8, 6, 5) and captions[0] == ["start"] * 6
    for before, after, caption in zip(factors[:-1], factors[1:], captions[1:], strict=True):
        changed = before != after
        assert (changed.sum(1) <= 1).all()  # k = 1: one factor resampled per frame
        expected = [
            dsprites.factor_names[int(i)] if row.any() else "="
            for row, i in zip(changed, changed.argmax(1), strict=True)
        ]
        assert caption == expected
