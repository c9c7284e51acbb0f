"""Loss terms of the six objectives, written to match disentanglement_lib's conventions.

Conventions (docs/models.md has the details):
- per-image sums over pixels and channels (reconstruction) or latents (KL), then the batch mean;
- the KL is against N(0, I) in closed form;
- the total-correlation estimators work on one minibatch; the minibatch-weighted one drops the
  constant ``(d - 1) * log(N * M)`` exactly like disentanglement_lib, so its value is offset.

All functions compute in float32 whatever autocast is active around them.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = [
    "bernoulli_reconstruction_loss",
    "l2_reconstruction_loss",
    "reconstruction_loss",
    "gaussian_kl_per_latent",
    "gaussian_kl",
    "sample_gaussian",
    "anneal",
    "covariance",
    "dip_penalty",
    "gaussian_log_density",
    "total_correlation_mws",
    "total_correlation_mss",
    "mss_log_weights",
    "permute_dims",
    "RECONSTRUCTIONS",
]

RECONSTRUCTIONS = ("bernoulli", "l2")
_LOG_2PI = math.log(2.0 * math.pi)


def _no_autocast(device_type: str):
    return torch.autocast(device_type=device_type, enabled=False)


# ---------------------------------------------------------------------------------------------------
# Reconstruction
# ---------------------------------------------------------------------------------------------------
def bernoulli_reconstruction_loss(
    logits: torch.Tensor, images: torch.Tensor, subtract_true_image_entropy: bool = False
) -> torch.Tensor:
    """Per-image Bernoulli negative log-likelihood on logits, summed over pixels and channels: shape (N,).

    ``sum(softplus(l) - x * l)`` = sigmoid cross-entropy, also for non-binary ``x`` in [0, 1] (then the
    minimum is the entropy of the image, not 0).  ``subtract_true_image_entropy`` removes that entropy
    (of the images clipped to [1e-6, 1 - 1e-6]) as disentanglement_lib's option of that name does; it
    is off there by default and in the study, and off here.
    """
    with _no_autocast(logits.device.type):
        logits, images = logits.float(), images.float()
        loss = F.binary_cross_entropy_with_logits(logits, images, reduction="none").flatten(1).sum(1)
        if subtract_true_image_entropy:
            p = images.clamp(1e-6, 1 - 1e-6)
            entropy = -(p * torch.log(p) + (1 - p) * torch.log1p(-p))
            loss = loss - entropy.flatten(1).sum(1)
        return loss


def l2_reconstruction_loss(logits: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """Per-image ``sum((x - sigmoid(logits))**2)`` over pixels and channels: shape (N,)."""
    with _no_autocast(logits.device.type):
        return (images.float() - torch.sigmoid(logits.float())).square().flatten(1).sum(1)


def reconstruction_loss(kind: str, logits: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    if kind == "bernoulli":
        return bernoulli_reconstruction_loss(logits, images)
    if kind == "l2":
        return l2_reconstruction_loss(logits, images)
    raise ValueError(f"reconstruction must be one of {RECONSTRUCTIONS}, got {kind!r}")


# ---------------------------------------------------------------------------------------------------
# Gaussian posterior
# ---------------------------------------------------------------------------------------------------
def gaussian_kl_per_latent(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Batch mean of KL(N(mean, exp(logvar)) || N(0, 1)) for each latent: shape (d,)."""
    with _no_autocast(mean.device.type):
        mean, logvar = mean.float(), logvar.float()
        return (0.5 * (mean.square() + logvar.exp() - logvar - 1.0)).mean(0)


def gaussian_kl(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL summed over latents, averaged over the batch (disentanglement_lib's ``compute_gaussian_kl``)."""
    return gaussian_kl_per_latent(mean, logvar).sum()


def sample_gaussian(mean: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Reparameterised sample ``mean + exp(logvar / 2) * eps``, eps ~ N(0, I) drawn from ``generator``.

    The noise is drawn on the generator's device (a CPU generator gives the same noise whatever device
    the model is on) and moved to ``mean``'s device.
    """
    if not isinstance(generator, torch.Generator):
        raise TypeError(
            f"a torch.Generator is required for the reparameterisation noise, got {type(generator).__name__}"
        )
    eps = torch.randn(mean.shape, generator=generator, device=generator.device, dtype=torch.float32)
    eps = eps.to(mean.device)
    with _no_autocast(mean.device.type):
        return mean.float() + torch.exp(logvar.float() / 2) * eps


# ---------------------------------------------------------------------------------------------------
# AnnealedVAE
# ---------------------------------------------------------------------------------------------------
def anneal(c_max: float, step: int, iteration_threshold: int) -> float:
    """Capacity C(t) = min(c_max, c_max * t / iteration_threshold) (Burgess et al. 2018, linear ramp)."""
    return min(float(c_max), float(c_max) * float(step) / float(iteration_threshold))


# ---------------------------------------------------------------------------------------------------
# DIP-VAE
# ---------------------------------------------------------------------------------------------------
def covariance(x: torch.Tensor) -> torch.Tensor:
    """Population covariance E[x x^T] - E[x] E[x]^T over the batch (divides by N), shape (d, d).

    Written as disentanglement_lib's ``compute_covariance_z_mean`` (not the centred two-pass form).
    """
    with _no_autocast(x.device.type):
        x = x.float()
        exx = (x.unsqueeze(2) * x.unsqueeze(1)).mean(0)
        ex = x.mean(0)
        return exx - ex.unsqueeze(1) * ex.unsqueeze(0)


def dip_penalty(
    cov: torch.Tensor, lambda_od: float, lambda_d: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``lambda_od * sum(offdiag(cov)**2) + lambda_d * sum((diag(cov) - 1)**2)``.

    Returns (penalty, off-diagonal sum of squares, diagonal sum of squared deviations).
    """
    diag = torch.diagonal(cov)
    off = cov - torch.diag_embed(diag)
    off_sq = off.square().sum()
    diag_sq = (diag - 1.0).square().sum()
    return lambda_od * off_sq + lambda_d * diag_sq, off_sq, diag_sq


# ---------------------------------------------------------------------------------------------------
# beta-TC-VAE: total correlation estimators
# ---------------------------------------------------------------------------------------------------
def gaussian_log_density(samples: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Elementwise log N(samples; mean, exp(logvar)), with the log(2 pi) constant."""
    diff = samples - mean
    return -0.5 * (diff * diff * torch.exp(-logvar) + logvar + _LOG_2PI)


def _tc_per_sample(
    z: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor, log_w: torch.Tensor | None, max_elements: int
) -> torch.Tensor:
    """Per-sample ``log q(z_j) - sum_l log q(z_jl)`` with the mixture weights ``exp(log_w)`` (None: all 1).

    Works in a (latent, j, i) layout so the logsumexp over i runs along contiguous memory, in chunks
    of rows j holding at most ``max_elements`` entries.
    """
    z, mean, logvar = z.float(), mean.float(), logvar.float()
    batch, dims = z.shape
    zt, mt, lvt = z.t().contiguous(), mean.t().contiguous(), logvar.t().contiguous()
    scale = torch.exp(-lvt) * -0.5  # (d, M): -1 / (2 sigma^2)
    offset = (lvt + _LOG_2PI) * -0.5  # (d, M): log normaliser
    rows = max(1, min(batch, max_elements // max(batch * dims, 1)))
    values = []
    for start in range(0, batch, rows):
        diff = zt[:, start : start + rows, None] - mt[:, None, :]  # (d, r, M): z_jl - mu_il
        log_q = offset[:, None, :] + scale[:, None, :] * diff.square()  # log q(z_jl | x_i)
        joint = log_q.sum(0)  # (r, M): log q(z_j | x_i)
        if log_w is not None:
            w = log_w[start : start + rows]
            log_q = log_q + w
            joint = joint + w
        values.append(torch.logsumexp(joint, dim=1) - torch.logsumexp(log_q, dim=2).sum(0))
    return torch.cat(values)


def total_correlation_mws(
    z: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor, max_elements: int = 1 << 20
) -> torch.Tensor:
    """Minibatch-weighted-sampling TC estimate without its constant (disentanglement_lib's ``total_correlation``).

    mean_j [ logsumexp_i sum_l log q(z_jl | x_i) - sum_l logsumexp_i log q(z_jl | x_i) ],
    log q including its log(2 pi) term.  The dropped constant is ``(d - 1) * log(N * M)`` (N data
    points, M batch size), so e.g. for codes whose posteriors all coincide the value is exactly
    ``-(d - 1) * log(M)``.  Memory is bounded by processing ``max_elements`` (j, i, l) entries at a time.
    """
    with _no_autocast(z.device.type):
        return _tc_per_sample(z, mean, logvar, None, max_elements).mean()


def mss_log_weights(batch: int, dataset_size: int, device: torch.device | str | None = None) -> torch.Tensor:
    """log of the (M, M) minibatch-stratified-sampling weights of Chen et al. (2018), Appendix C.2.

    Row j weights sample j's own posterior by 1/N, one other sample (the next one, cyclically) by
    (N - M + 1) / (N (M - 1)) and the remaining M - 2 by 1 / (M - 1); each row sums to 1.
    """
    if batch < 2:
        raise ValueError("the minibatch-stratified estimator needs a batch of at least 2")
    n, m = float(dataset_size), float(batch)
    if n < m:
        raise ValueError(f"dataset_size ({dataset_size}) must be at least the batch size ({batch})")
    w = torch.full((batch, batch), 1.0 / (m - 1.0), dtype=torch.float64, device=device)
    idx = torch.arange(batch, device=device)
    w[idx, (idx + 1) % batch] = (n - m + 1.0) / (n * (m - 1.0))
    w[idx, idx] = 1.0 / n
    return w.log().float()


def total_correlation_mss(
    z: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor, dataset_size: int, max_elements: int = 1 << 20
) -> torch.Tensor:
    """Minibatch-stratified-sampling TC estimate (Chen et al. 2018), constants included.

    mean_j [ log sum_i W_ji q(z_j | x_i) - sum_l log sum_i W_ji q(z_jl | x_i) ] with W from
    :func:`mss_log_weights`.  Needs the data set size N.
    """
    with _no_autocast(z.device.type):
        log_w = mss_log_weights(z.shape[0], dataset_size, z.device)
        return _tc_per_sample(z, mean, logvar, log_w, max_elements).mean()


# ---------------------------------------------------------------------------------------------------
# FactorVAE
# ---------------------------------------------------------------------------------------------------
def permute_dims(z: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Permute every latent column independently across the batch (disentanglement_lib's ``shuffle_codes``).

    Each column keeps its values (the marginals) while the dependence between columns is broken:
    rows of the result are draws from the product of the batch marginals.  Permutations are uniform
    (``torch.randperm``) and come from ``generator``.
    """
    batch, dims = z.shape
    perms = torch.stack(
        [torch.randperm(batch, generator=generator, device=generator.device) for _ in range(dims)], 1
    )
    return torch.gather(z, 0, perms.to(z.device))
