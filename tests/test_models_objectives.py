"""untwine.models objectives: loss terms against hand computations and disentanglement_lib's test values,
FactorVAE's two-player update, determinism and the build_model interface."""

import math

import numpy as np
import pytest
import torch

from untwine.data import Batch
from untwine.models import MODEL_DEFAULTS, MODELS, build_model
from untwine.models import losses as L
from untwine.models.networks import Discriminator
from untwine.training import training_step


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _images(n=6, c=1, seed=1):
    return torch.rand(n, c, 64, 64, generator=_gen(seed))


# --------------------------------------------------------------------------------------------------
# KL and the reparameterisation
# --------------------------------------------------------------------------------------------------
def test_kl_values():
    zeros = torch.zeros(10, 10)
    assert float(L.gaussian_kl(zeros, zeros)) == 0.0
    # disentanglement_lib's vae_test values
    assert float(L.gaussian_kl(torch.ones(10, 10), zeros)) == pytest.approx(5.0)
    assert float(L.gaussian_kl(torch.ones(10, 10), torch.ones(10, 10))) == pytest.approx(
        5 * (math.e - 1), rel=1e-6
    )
    # hand-computed: KL(N(m, s^2) || N(0, 1)) = (m^2 + s^2 - log s^2 - 1) / 2, batch-averaged per latent
    mean = torch.tensor([[1.0, -2.0], [0.0, 0.5]])
    logvar = torch.tensor([[0.0, math.log(4.0)], [math.log(0.25), 0.0]])
    per = L.gaussian_kl_per_latent(mean, logvar)
    expected0 = ((1 + 1 - 0 - 1) / 2 + (0 + 0.25 - math.log(0.25) - 1) / 2) / 2
    expected1 = ((4 + 4 - math.log(4) - 1) / 2 + (0.25 + 1 - 0 - 1) / 2) / 2
    torch.testing.assert_close(per, torch.tensor([expected0, expected1]))
    assert float(L.gaussian_kl(mean, logvar)) == pytest.approx(expected0 + expected1, rel=1e-6)


def test_sample_gaussian_uses_the_generator_only():
    mean, logvar = (
        torch.tensor([[1.0, -1.0]]).repeat(20000, 1),
        torch.tensor([[math.log(4.0), 0.0]]).repeat(20000, 1),
    )
    state = torch.get_rng_state()
    z = L.sample_gaussian(mean, logvar, _gen(0))
    assert torch.equal(torch.get_rng_state(), state)
    torch.testing.assert_close(z, L.sample_gaussian(mean, logvar, _gen(0)), rtol=0, atol=0)
    eps = torch.randn(20000, 2, generator=_gen(0))
    torch.testing.assert_close(z, mean + torch.exp(logvar / 2) * eps)
    assert float(z[:, 0].std()) == pytest.approx(2.0, rel=0.03)
    with pytest.raises(TypeError, match="torch.Generator"):
        L.sample_gaussian(mean, logvar, 0)


# --------------------------------------------------------------------------------------------------
# reconstruction
# --------------------------------------------------------------------------------------------------
def test_bernoulli_loss_against_hand_computation():
    logits = torch.randn(3, 2, 64, 64, generator=_gen(2)) * 3
    x = torch.rand(3, 2, 64, 64, generator=_gen(3))
    p = torch.sigmoid(logits.double())
    expected = -(x * torch.log(p) + (1 - x) * torch.log(1 - p)).flatten(1).sum(1)
    torch.testing.assert_close(
        L.bernoulli_reconstruction_loss(logits, x).double(), expected, rtol=1e-5, atol=1e-3
    )
    # logits 0: log 2 per pixel and channel, whatever the image
    assert float(
        L.bernoulli_reconstruction_loss(torch.zeros(1, 3, 64, 64), x[:1, :1].repeat(1, 3, 1, 1))[0]
    ) == pytest.approx(3 * 4096 * math.log(2), rel=1e-6)
    # subtracting the image entropy: perfect prediction of grey images costs 0
    grey = torch.full((2, 1, 64, 64), 0.5)
    assert float(L.bernoulli_reconstruction_loss(torch.zeros_like(grey), grey)[0]) == pytest.approx(
        4096 * math.log(2)
    )
    sub = L.bernoulli_reconstruction_loss(torch.zeros_like(grey), grey, subtract_true_image_entropy=True)
    torch.testing.assert_close(sub, torch.zeros(2), atol=1e-3, rtol=0)


def test_l2_loss_against_hand_computation():
    logits = torch.randn(3, 3, 64, 64, generator=_gen(4))
    x = torch.rand(3, 3, 64, 64, generator=_gen(5))
    expected = ((x - torch.sigmoid(logits)) ** 2).sum((1, 2, 3))
    torch.testing.assert_close(L.l2_reconstruction_loss(logits, x), expected)
    assert float(
        L.l2_reconstruction_loss(torch.zeros(1, 1, 64, 64), torch.zeros(1, 1, 64, 64))[0]
    ) == pytest.approx(0.25 * 4096)


@pytest.mark.parametrize("reconstruction", ["bernoulli", "l2"])
def test_compute_loss_is_batch_mean_of_per_image_sums(reconstruction):
    model = build_model("beta_vae", 3, reconstruction=reconstruction, init_generator=_gen(0), beta=4.0)
    x = _images(5, 3)
    out = model.compute_loss(Batch(x), 0, _gen(7))
    per_image = (
        L.bernoulli_reconstruction_loss if reconstruction == "bernoulli" else L.l2_reconstruction_loss
    )(out.logits, x)
    torch.testing.assert_close(out.terms["reconstruction"], per_image.mean().detach())
    kl = L.gaussian_kl(out.mean, out.logvar).detach()
    t = out.terms
    torch.testing.assert_close(t["kl"], kl)
    torch.testing.assert_close(t["kl_per_latent"].sum(), kl)
    assert t["kl_per_latent"].shape == (10,)
    torch.testing.assert_close(t["regularizer"], 4.0 * kl)
    torch.testing.assert_close(out.loss.detach(), t["reconstruction"] + 4.0 * kl)
    torch.testing.assert_close(t["elbo"], -(t["reconstruction"] + kl))
    assert out.discriminator_loss is None
    assert all(v.dtype == torch.float32 and not v.requires_grad for v in t.values())


# --------------------------------------------------------------------------------------------------
# AnnealedVAE
# --------------------------------------------------------------------------------------------------
def test_anneal_schedule():
    # disentanglement_lib's test values (c_max 100, threshold 100)
    assert [L.anneal(100.0, t, 100) for t in (0, 10, 100, 101)] == [0.0, 10.0, 100.0, 100.0]
    model = build_model("annealed_vae", 1, init_generator=_gen(0), c_max=25.0)
    assert [model.capacity(t) for t in (0, 1, 50_000, 99_999, 100_000, 300_000)] == [
        0.0,
        25.0 / 100_000,
        12.5,
        25.0 * 99_999 / 100_000,
        25.0,
        25.0,
    ]
    x = _images(4)
    for step, c in ((0, 0.0), (40_000, 10.0), (250_000, 25.0)):
        out = model.compute_loss(Batch(x), step, _gen(1))
        assert float(out.terms["c"]) == pytest.approx(c)
        torch.testing.assert_close(out.terms["regularizer"], 1000.0 * (out.terms["kl"] - c).abs())
        torch.testing.assert_close(out.loss.detach(), out.terms["reconstruction"] + out.terms["regularizer"])


# --------------------------------------------------------------------------------------------------
# DIP-VAE
# --------------------------------------------------------------------------------------------------
def test_covariance_and_dip_penalty():
    mean = torch.tensor([[1.0, 1.0], [-1.0, -1.0], [1.0, -1.0], [-1.0, -1.0]]) + torch.tensor([3.0, -2.0])
    # population covariance (divides by N = 4): var0 = 1, var1 = 0.75, cov01 = 0.5
    cov = L.covariance(mean)
    torch.testing.assert_close(cov, torch.tensor([[1.0, 0.5], [0.5, 0.75]]))
    penalty, off, diag = L.dip_penalty(cov, 2.0, 20.0)
    assert float(off) == pytest.approx(0.5)
    assert float(diag) == pytest.approx(0.0625)
    assert float(penalty) == pytest.approx(2.0 * 0.5 + 20.0 * 0.0625)
    # disentanglement_lib's regularize_diag_off_diag_dip test values with lambda_od = lambda_d = 1
    for matrix, value in (
        (torch.ones(10, 10), 90.0),
        (torch.zeros(10, 10), 10.0),
        (torch.eye(10), 0.0),
        (2 * torch.eye(10), 10.0),
    ):
        assert float(L.dip_penalty(matrix, 1.0, 1.0)[0]) == pytest.approx(value)


def test_dip_vae_regularizers():
    mean = torch.tensor([[1.0, 1.0], [-1.0, -1.0], [1.0, -1.0], [-1.0, -1.0]])
    logvar = torch.log(torch.tensor([[0.5, 1.0], [1.5, 1.0], [0.5, 2.0], [1.5, 2.0]]))
    kl = torch.tensor(3.0)
    m1 = build_model("dip_vae_i", 1, num_latents=2, init_generator=_gen(0), lambda_od=5.0)
    reg, extra, d_loss = m1.regularizer(kl, mean, logvar, mean, 0, _gen(0))
    # Cov[mu] = [[1, .5], [.5, .75]]; lambda_d = 10 * 5
    assert float(reg) == pytest.approx(3.0 + 5.0 * 0.5 + 50.0 * 0.0625)
    assert d_loss is None and float(extra["dip_penalty"]) == pytest.approx(float(reg) - 3.0)
    m2 = build_model("dip_vae_ii", 1, num_latents=2, init_generator=_gen(0), lambda_od=5.0)
    reg2, _, _ = m2.regularizer(kl, mean, logvar, mean, 0, _gen(0))
    # E[diag sigma^2] = (1.0, 1.5) added to the diagonal: diag = (2.0, 2.25); lambda_d = 1 * 5
    assert float(reg2) == pytest.approx(3.0 + 5.0 * 0.5 + 5.0 * (1.0 + 1.5625), rel=1e-6)
    assert m1.lambda_d == 50.0 and m2.lambda_d == 5.0


# --------------------------------------------------------------------------------------------------
# beta-TC-VAE: total correlation
# --------------------------------------------------------------------------------------------------
def test_gaussian_log_density_values():
    # disentanglement_lib's test values
    assert float(
        L.gaussian_log_density(torch.ones(1), torch.tensor(0.0), torch.tensor(0.0))
    ) == pytest.approx(-1.41894, abs=1e-4)
    assert float(
        L.gaussian_log_density(torch.ones(1), torch.tensor(1.0), torch.tensor(0.0))
    ) == pytest.approx(-0.91894, abs=1e-4)


def test_mws_total_correlation_matches_dlib_value():
    """disentanglement_lib's check: 10,000 codes z ~ N(0, I_10) under posteriors that all equal N(0, I)
    (z_mean = 0, z_logvar = 0).  Every row of the mixture is the same, so the constant-free estimate is
    exactly (1 - d) * log(M) = -9 * log(10000) = -82.893, whatever z is; for d = 1 it is 0."""
    z = torch.randn(10_000, 10, generator=_gen(0))
    value = float(L.total_correlation_mws(z, torch.zeros_like(z), torch.zeros_like(z)))
    assert value == pytest.approx(-82.89, abs=0.05)
    assert value == pytest.approx(-9 * math.log(10_000), abs=1e-3)
    z1 = torch.randn(10_000, 1, generator=_gen(1))
    assert abs(float(L.total_correlation_mws(z1, torch.zeros_like(z1), torch.zeros_like(z1)))) < 1e-4


def _tc_brute_force(z, mean, logvar, log_w=None):
    z, mean, logvar = (t.double().numpy() for t in (z, mean, logvar))
    m, d = z.shape
    w = np.ones((m, m)) if log_w is None else np.exp(log_w.double().numpy())
    total = 0.0
    for j in range(m):
        dens = np.exp(-0.5 * ((z[j] - mean) ** 2 / np.exp(logvar) + logvar + math.log(2 * math.pi)))  # (i, l)
        total += math.log(np.sum(w[j] * np.prod(dens, 1))) - np.sum(np.log(np.sum(w[j][:, None] * dens, 0)))
    return total / m


def test_tc_estimators_match_brute_force():
    g = _gen(3)
    mean = torch.randn(7, 3, generator=g)
    logvar = torch.randn(7, 3, generator=g) * 0.5
    z = mean + torch.exp(logvar / 2) * torch.randn(7, 3, generator=g)
    assert float(L.total_correlation_mws(z, mean, logvar)) == pytest.approx(
        _tc_brute_force(z, mean, logvar), abs=1e-4
    )
    # chunked evaluation gives the same value
    assert float(L.total_correlation_mws(z, mean, logvar, max_elements=5)) == pytest.approx(
        float(L.total_correlation_mws(z, mean, logvar)), abs=1e-5
    )
    log_w = L.mss_log_weights(7, 100)
    assert float(L.total_correlation_mss(z, mean, logvar, 100)) == pytest.approx(
        _tc_brute_force(z, mean, logvar, log_w), abs=1e-4
    )
    assert float(L.total_correlation_mss(z, mean, logvar, 100, max_elements=5)) == pytest.approx(
        float(L.total_correlation_mss(z, mean, logvar, 100)), abs=1e-5
    )


def test_mss_weights_and_independent_value():
    w = L.mss_log_weights(5, 1000).exp().double()
    torch.testing.assert_close(w.sum(1), torch.ones(5, dtype=torch.float64))
    assert float(w[2, 2]) == pytest.approx(1 / 1000)
    assert float(w[2, 3]) == pytest.approx((1000 - 5 + 1) / (1000 * 4))
    assert float(w[4, 0]) == pytest.approx((1000 - 5 + 1) / (1000 * 4))
    assert float(w[2, 0]) == pytest.approx(1 / 4)
    # identical posteriors: each row's mixture is the posterior itself, so the estimate is 0
    z = torch.randn(500, 10, generator=_gen(4))
    assert abs(float(L.total_correlation_mss(z, torch.zeros_like(z), torch.zeros_like(z), 737_280))) < 1e-4
    with pytest.raises(ValueError, match="at least the batch size"):
        L.mss_log_weights(10, 5)


@pytest.mark.parametrize("estimator", ["mws", "mss"])
def test_beta_tc_vae_regularizer(estimator):
    model = build_model(
        "beta_tc_vae", 1, init_generator=_gen(0), beta=6.0, tc_estimator=estimator, dataset_size=1000
    )
    out = model.compute_loss(Batch(_images(8)), 0, _gen(2))
    tc = (
        L.total_correlation_mws(out.z, out.mean, out.logvar)
        if estimator == "mws"
        else L.total_correlation_mss(out.z, out.mean, out.logvar, 1000)
    ).detach()
    torch.testing.assert_close(out.terms["tc_estimate"], tc)
    torch.testing.assert_close(out.terms["regularizer"], out.terms["kl"] + 5.0 * tc)


# --------------------------------------------------------------------------------------------------
# FactorVAE
# --------------------------------------------------------------------------------------------------
def test_permute_dims_keeps_marginals_and_breaks_dependence():
    base = torch.randn(4000, 1, generator=_gen(5))
    z = base.repeat(1, 6)  # perfectly dependent columns
    perm = L.permute_dims(z, _gen(6))
    assert perm.shape == z.shape
    for j in range(6):
        torch.testing.assert_close(perm[:, j].sort().values, z[:, j].sort().values, rtol=0, atol=0)
    corr = torch.corrcoef(perm.t())
    off = corr - torch.diag(torch.diagonal(corr))
    assert float(off.abs().max()) < 0.08
    assert float((perm[:, 0] == perm[:, 1]).float().mean()) < 0.01
    torch.testing.assert_close(perm, L.permute_dims(z, _gen(6)), rtol=0, atol=0)
    assert not torch.equal(perm, L.permute_dims(z, _gen(7)))


def _factor_vae_with_constant_discriminator(b0, b1, gamma=10.0):
    model = build_model("factor_vae", 1, init_generator=_gen(0), gamma=gamma)
    with torch.no_grad():
        model.discriminator.logits.weight.zero_()
        model.discriminator.logits.bias.copy_(torch.tensor([b0, b1]))
    return model


def test_factor_vae_tc_sign_and_discriminator_loss():
    model = _factor_vae_with_constant_discriminator(2.0, -1.0, gamma=10.0)
    out = model.compute_loss(Batch(_images(8)), 0, _gen(1))
    t = out.terms
    # TC = mean(logit_0 - logit_1) with logit 0 = "real": here 3 for every code.
    assert float(t["tc_estimate"]) == pytest.approx(3.0)
    torch.testing.assert_close(t["regularizer"], t["kl"] + 30.0)
    torch.testing.assert_close(out.loss.detach(), t["reconstruction"] + t["kl"] + 30.0)
    p0 = 1 / (1 + math.exp(-3.0))
    expected = -(0.5 * math.log(p0) + 0.5 * math.log(1 - p0))
    assert float(out.discriminator_loss.detach()) == pytest.approx(expected, rel=1e-5)
    assert float(t["discriminator_loss"]) == pytest.approx(expected, rel=1e-5)
    assert float(t["discriminator_accuracy"]) == pytest.approx(0.5)  # real right, permuted wrong
    # dlib clips the probabilities to [1e-6, 1 - 1e-6] before the log
    model = _factor_vae_with_constant_discriminator(40.0, -40.0)
    out = model.compute_loss(Batch(_images(8)), 0, _gen(1))
    assert float(out.discriminator_loss.detach()) == pytest.approx(
        -0.5 * math.log(1 - 1e-6) - 0.5 * math.log(1e-6), rel=1e-4
    )


def test_factor_vae_gradients_go_to_their_own_parameters():
    model = build_model("factor_vae", 1, init_generator=_gen(0))
    out = model.compute_loss(Batch(_images(8)), 0, _gen(1))
    out.loss.backward()
    assert all(p.grad is None for p in model.discriminator_parameters())
    main_grads = [p.grad.clone() for p in model.main_parameters()]
    assert all(g.abs().sum() > 0 for g in main_grads[:4])
    out.discriminator_loss.backward()
    assert all(p.grad is not None for p in model.discriminator_parameters())
    for g, p in zip(main_grads, model.main_parameters(), strict=True):
        assert torch.equal(g, p.grad)
    # the discriminator loss is computed with the same weights the VAE loss read
    z = out.z.detach()
    perm = L.permute_dims(z, _gen_after_noise(out))
    logits = model.discriminator(torch.cat([z, perm]))
    p_real = Discriminator.clipped_probabilities(logits[:8])
    p_perm = Discriminator.clipped_probabilities(logits[8:])
    expected = -(0.5 * torch.log(p_real[:, 0]).mean() + 0.5 * torch.log(p_perm[:, 1]).mean())
    torch.testing.assert_close(out.discriminator_loss.detach(), expected.detach())


def _gen_after_noise(out):
    g = _gen(1)
    torch.randn(out.mean.shape, generator=g)  # the reparameterisation noise comes first
    return g


def test_factor_vae_optimizers_and_training_step():
    model = build_model("factor_vae", 1, init_generator=_gen(0))
    main, disc = model.make_optimizers()
    assert (
        main.defaults["lr"] == 1e-4
        and main.defaults["betas"] == (0.9, 0.999)
        and main.defaults["eps"] == 1e-8
    )
    assert (
        disc.defaults["lr"] == 1e-4 and disc.defaults["betas"] == (0.5, 0.9) and disc.defaults["eps"] == 1e-8
    )
    main_ids = {id(p) for g in main.param_groups for p in g["params"]}
    disc_ids = {id(p) for g in disc.param_groups for p in g["params"]}
    assert not main_ids & disc_ids and main_ids | disc_ids == {id(p) for p in model.parameters()}
    # training_step == the documented update, and the discriminator moves only by its own loss
    twin = build_model("factor_vae", 1, init_generator=_gen(0))
    twin_opts = twin.make_optimizers()
    x = _images(8)
    training_step(model, Batch(x), 0, _gen(1), [main, disc])
    out = twin.compute_loss(Batch(x), 0, _gen(1))
    for o in twin_opts:
        o.zero_grad(set_to_none=True)
    torch.autograd.backward(out.discriminator_loss, inputs=twin.discriminator_parameters())
    twin_opts[1].step()
    for a, b in zip(model.discriminator_parameters(), twin.discriminator_parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert len(build_model("vae", 1, init_generator=0).make_optimizers()) == 1
    assert build_model("vae", 1, init_generator=0).discriminator_parameters() == []
    # the learning rate is the VAE's; the discriminator keeps the study's 1e-4
    main, disc = build_model("factor_vae", 1, init_generator=0).make_optimizers(learning_rate=3e-4)
    assert main.defaults["lr"] == 3e-4 and disc.defaults["lr"] == 1e-4


# --------------------------------------------------------------------------------------------------
# all models: interface, determinism, training, bf16
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(MODEL_DEFAULTS))
def test_every_model_trains_deterministically(name):
    params = {"dataset_size": 10_000, "tc_estimator": "mss"} if name == "beta_tc_vae" else {}
    x = _images(8, 3)
    # the pair models get pairs: the same images in another order, the changed factor of each pair known
    batch = Batch(x)
    if MODELS[name].cls.needs_pairs:
        batch = Batch(x, second_images=x.flip(0), changed_factor=np.arange(8) % 5)

    def run(seed):
        model = build_model(name, 3, init_generator=_gen(0), **params)
        optimizers = model.make_optimizers()
        g = _gen(seed)
        state = torch.get_rng_state()
        outs = [training_step(model, batch, step, g, optimizers) for step in range(3)]
        assert torch.equal(torch.get_rng_state(), state)  # no global randomness
        return outs

    a, b, c = run(1), run(1), run(2)
    for oa, ob in zip(a, b, strict=True):
        assert torch.equal(oa.loss, ob.loss)
        assert all(torch.equal(oa.terms[k], ob.terms[k]) for k in oa.terms)
    assert not torch.equal(a[0].loss, c[0].loss)
    required = {"reconstruction", "kl", "regularizer", "elbo", "kl_per_latent"}
    extra = {
        "annealed_vae": {"c"},
        "beta_tc_vae": {"tc_estimate"},
        "factor_vae": {"tc_estimate", "discriminator_accuracy", "discriminator_loss"},
    }.get(name, set())
    assert required | extra <= set(a[0].terms)
    assert all(torch.isfinite(o.loss) for o in a)
    assert float(a[-1].terms["reconstruction"]) < float(a[0].terms["reconstruction"])


def test_bf16_autocast_keeps_losses_float32_and_close():
    model = build_model("factor_vae", 3, init_generator=_gen(0)).to(memory_format=torch.channels_last)
    x = _images(8, 3).contiguous(memory_format=torch.channels_last)
    ref = model.compute_loss(Batch(x), 0, _gen(1))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model.compute_loss(Batch(x), 0, _gen(1))
    assert out.loss.dtype == torch.float32
    assert all(v.dtype == torch.float32 for v in out.terms.values())
    assert float(out.loss.detach()) == pytest.approx(float(ref.loss.detach()), rel=0.01)
    out.loss.backward()
    out.discriminator_loss.backward()
    # training_step(bf16=True) runs the forward pass under the same autocast, then updates in float32
    optimizers = model.make_optimizers()
    before = model.encoder.conv1.weight.detach().clone()
    stepped = training_step(model, Batch(x), 0, _gen(1), optimizers, bf16=True)
    assert stepped.loss.dtype == torch.float32
    assert float(stepped.loss.detach()) == pytest.approx(float(ref.loss.detach()), rel=0.01)
    assert model.encoder.conv1.weight.dtype == torch.float32
    assert not torch.equal(model.encoder.conv1.weight.detach(), before)


def test_training_step_stops_before_updating_on_a_non_finite_loss():
    from untwine.training import TrainingDivergedError

    model = build_model("beta_vae", 1, init_generator=_gen(0))
    with torch.no_grad():
        model.encoder.mean.bias.fill_(float("nan"))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(TrainingDivergedError, match=r"non-finite loss at step 7 \('reconstruction' = \[nan"):
        training_step(model, Batch(_images(4)), 7, _gen(1), model.make_optimizers())
    after = model.state_dict()
    for key in before:  # nothing moved (the NaN bias stays NaN)
        torch.testing.assert_close(after[key], before[key], rtol=0, atol=0, equal_nan=True)


def test_build_model_validation():
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) gamma for model 'beta_vae'; valid: beta"):
        build_model("beta_vae", 1, gamma=3.0, init_generator=0)
    with pytest.raises(ValueError, match="valid: none"):
        build_model("vae", 1, beta=2.0, init_generator=0)
    with pytest.raises(ValueError, match="unknown model 'wae'; valid models: vae, beta_vae, annealed_vae"):
        build_model("wae", 1, init_generator=0)
    with pytest.raises(ValueError, match="architecture must be one of"):
        build_model("vae", 1, architecture="resnet", init_generator=0)
    with pytest.raises(ValueError, match="reconstruction must be one of"):
        build_model("vae", 1, reconstruction="gaussian", init_generator=0)
    with pytest.raises(ValueError, match="needs dataset_size"):
        build_model("beta_tc_vae", 1, tc_estimator="mss", init_generator=0)
    with pytest.raises(
        ValueError, match="tc_estimator='exact' is not allowed .* tc_estimator takes one of mws, mss"
    ):
        build_model("beta_tc_vae", 1, tc_estimator="exact", init_generator=0)
    with pytest.raises(ValueError, match="num_channels must be a positive int"):
        build_model("vae", 0, init_generator=0)
    assert MODEL_DEFAULTS["annealed_vae"] == {"gamma": 1000.0, "c_max": 25.0, "iteration_threshold": 100000}
    assert (
        MODEL_DEFAULTS["dip_vae_i"]["lambda_d_factor"] == 10.0
        and MODEL_DEFAULTS["dip_vae_ii"]["lambda_d_factor"] == 1.0
    )
    model = build_model(
        "dip_vae_ii", 3, num_latents=4, architecture="fc", reconstruction="l2", init_generator=0, lambda_od=20
    )
    assert model.params == {"lambda_od": 20.0, "lambda_d_factor": 1.0} and model.num_latents == 4
    assert "dip_vae_ii" in repr(model)
    with pytest.raises(TypeError, match="init_generator"):
        build_model("vae", 1)  # weights are never drawn from torch's global generator
    with pytest.raises(TypeError, match="torch.Generator or an int seed"):
        build_model("vae", 1, init_generator=None)
    with pytest.raises(TypeError, match="untwine.data.Batch"):
        model.compute_loss(torch.zeros(2, 3, 64, 64), 0, _gen(0))
