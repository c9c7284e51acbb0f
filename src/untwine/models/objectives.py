"""The six objectives of the unsupervised study as ``nn.Module`` models with one training interface.

``loss = reconstruction + regularizer`` with, per model (KL = KL(q(z|x) || N(0, I))):

===============  ==========================================================================
``vae``          KL
``beta_vae``     beta * KL
``annealed_vae`` gamma * |KL - C(step)|,  C(t) = min(c_max, c_max * t / iteration_threshold)
``factor_vae``   KL + gamma * mean(D_0(z) - D_1(z))       (logit 0 = "real" codes)
``dip_vae_i``    KL + lambda_od * sum offdiag(Cov[mu])^2 + lambda_d * sum (diag(Cov[mu]) - 1)^2
``dip_vae_ii``   same penalty on E[diag(sigma^2)] + Cov[mu]
``beta_tc_vae``  KL + (beta - 1) * TC      (TC estimated on the minibatch)
===============  ==========================================================================

Every model takes the same :class:`untwine.data.Batch` (images, and the factors that the
semi-supervised models read) in ``compute_loss(batch, step, generator)``; one update is
:func:`untwine.training.step.training_step`.  The model table (name -> class, defaults, description) and
``build_model`` are in :mod:`untwine.models.registry`.  See docs/models.md.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from untwine.data.stream import Batch
from untwine.models import losses as L
from untwine.models.networks import Discriminator, make_decoder, make_encoder, reset_parameters_tf
from untwine.models.parameters import Param, defaults_of

__all__ = [
    "LossOutput",
    "VAEModel",
    "BetaVAE",
    "AnnealedVAE",
    "FactorVAE",
    "DIPVAE",
    "BetaTCVAE",
    "ARCHITECTURES",
    "TC_ESTIMATORS",
    "ADAM_DEFAULTS",
    "DISCRIMINATOR_ADAM_DEFAULTS",
    "checked_int",
    "loss_terms",
]

ARCHITECTURES = ("conv", "fc")
TC_ESTIMATORS = ("mws", "mss")
# disentanglement_lib's unsupervised_study_v1 shared.gin: vae/AdamOptimizer and discriminator/AdamOptimizer.
ADAM_DEFAULTS = {"lr": 1e-4, "betas": (0.9, 0.999), "eps": 1e-8}
DISCRIMINATOR_ADAM_DEFAULTS = {"lr": 1e-4, "betas": (0.5, 0.9), "eps": 1e-8}


@dataclass
class LossOutput:
    """What :meth:`VAEModel.compute_loss` returns.

    ``loss``: scalar to minimise w.r.t. :meth:`VAEModel.main_parameters` (it never puts gradients on
    the discriminator).  ``terms``: detached float32 tensors for logging -- scalars plus
    ``kl_per_latent`` of shape (d,).  ``discriminator_loss``: FactorVAE only, depends on the
    discriminator's parameters only (the codes are detached).  ``mean``, ``logvar``, ``z``, ``logits``:
    the forward pass (not detached), e.g. for reconstructions ``torch.sigmoid(out.logits)``.
    """

    loss: torch.Tensor
    terms: dict[str, torch.Tensor]
    discriminator_loss: torch.Tensor | None = None
    mean: torch.Tensor | None = field(default=None, repr=False)
    logvar: torch.Tensor | None = field(default=None, repr=False)
    z: torch.Tensor | None = field(default=None, repr=False)
    logits: torch.Tensor | None = field(default=None, repr=False)


def loss_terms(
    reconstruction: torch.Tensor,
    kl: torch.Tensor,
    regularizer: torch.Tensor,
    loss: torch.Tensor,
    kl_per_latent: torch.Tensor,
    extra: dict[str, torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """The logged terms every model reports (detached): reconstruction, kl, regularizer, elbo (-(rec + kl)),
    loss, then the model's ``extra`` terms, then kl_per_latent."""
    return {
        "reconstruction": reconstruction.detach(),
        "kl": kl.detach(),
        "regularizer": regularizer.detach(),
        "elbo": -(reconstruction + kl).detach(),
        "loss": loss.detach(),
        **{k: v.detach() for k, v in (extra or {}).items()},
        "kl_per_latent": kl_per_latent.detach(),
    }


def checked_int(name: str, value: Any, minimum: int = 0) -> int:
    """``value`` as an int >= ``minimum``, or a ValueError naming ``name`` (floats and bools are refused)."""
    wanted = "a positive int" if minimum == 1 else f"an int >= {minimum}"
    try:
        number = operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be {wanted}, got {value!r}") from None
    if number < minimum:
        raise ValueError(f"{name} must be {wanted}, got {value!r}")
    return number


class VAEModel(nn.Module):
    """Gaussian encoder + decoder; subclasses define :meth:`regularizer`.

    Attributes: ``name``, ``num_channels``, ``num_latents``, ``architecture``, ``encoder_kernels``,
    ``reconstruction``, ``params`` (the objective's hyper-parameters), ``encoder``, ``decoder``.
    """

    name = "vae"
    #: trained on pairs of images (the weakly-supervised models of :mod:`untwine.models.weak`)
    needs_pairs = False
    #: the objective's hyper-parameters (``model.<name>``), typed and ranged; ``defaults`` derives from them.
    param_specs: tuple[Param, ...] = ()
    defaults: dict[str, Any] = {}

    def __init__(
        self,
        num_channels: int,
        num_latents: int = 10,
        architecture: str = "conv",
        encoder_kernels: str = "dlib",
        reconstruction: str = "bernoulli",
    ):
        super().__init__()
        num_channels, num_latents = (
            checked_int("num_channels", num_channels, 1),
            checked_int("num_latents", num_latents, 1),
        )
        if architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {architecture!r}")
        if reconstruction not in L.RECONSTRUCTIONS:
            raise ValueError(f"reconstruction must be one of {L.RECONSTRUCTIONS}, got {reconstruction!r}")
        self.num_channels = num_channels
        self.num_latents = num_latents
        self.architecture = architecture
        self.encoder_kernels = encoder_kernels
        self.reconstruction = reconstruction
        self.params: dict[str, Any] = {}
        self.encoder = make_encoder(architecture, num_channels, num_latents, encoder_kernels)
        self.decoder = make_decoder(architecture, num_channels, num_latents)

    # -- networks -----------------------------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Images (N, C, 64, 64) in [0, 1] -> (mean, logvar), each (N, num_latents).

        Under a bf16 autocast the outputs are bfloat16; :meth:`compute_loss` casts them to float32.
        """
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Codes (N, num_latents) -> logits (N, C, 64, 64); images are ``torch.sigmoid(logits)``."""
        return self.decoder(z)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encode(x)

    def main_parameters(self) -> list[nn.Parameter]:
        """Encoder and decoder parameters (what the VAE optimizer updates)."""
        return [*self.encoder.parameters(), *self.decoder.parameters()]

    def discriminator_parameters(self) -> list[nn.Parameter]:
        return []

    def reset_parameters(self, generator: torch.Generator) -> VAEModel:
        """TF 1.x initialisation (glorot-uniform kernels, zero biases) from ``generator``."""
        reset_parameters_tf(self, generator)
        return self

    def attach_dataset(self, dataset, seed: int) -> VAEModel:
        """Give the model the training dataset before its optimisers are made; ``seed`` chooses anything
        the model draws from it once (the semi-supervised models' labelled subset).  The unsupervised
        models need nothing from it."""
        return self

    def make_optimizers(
        self, learning_rate: float = ADAM_DEFAULTS["lr"], fused: bool | None = None
    ) -> list[torch.optim.Optimizer]:
        """[Adam(main_parameters(), lr=learning_rate, betas=(0.9, 0.999), eps=1e-8)] (+ the
        discriminator's for FactorVAE, whose learning rate stays 1e-4 as in the study)."""
        adam = {**ADAM_DEFAULTS, "lr": learning_rate}
        return [torch.optim.Adam(self.main_parameters(), **adam, fused=fused)]

    # -- objective ----------------------------------------------------------------------------------
    def regularizer(
        self,
        kl: torch.Tensor,
        mean: torch.Tensor,
        logvar: torch.Tensor,
        z: torch.Tensor,
        step: int,
        generator: torch.Generator,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor | None]:
        """(regularizer, extra terms, discriminator loss or None); all inputs are float32."""
        return kl, {}, None

    def compute_loss(self, batch: Batch, step: int, generator: torch.Generator) -> LossOutput:
        """One forward pass and the loss on ``batch.images`` (the unsupervised models ignore its factors).

        ``step``: number of updates done before this one (0 for the first; drives AnnealedVAE's C).
        ``generator``: torch.Generator for the reparameterisation noise and FactorVAE's permutations.
        """
        x = Batch.checked(batch).images
        mean, logvar = self.encode(x)
        mean, logvar = mean.float(), logvar.float()
        z = L.sample_gaussian(mean, logvar, generator)
        logits = self.decode(z)
        with torch.autocast(device_type=x.device.type, enabled=False):
            logits32 = logits.float()
            reconstruction = L.reconstruction_loss(self.reconstruction, logits32, x).mean()
            kl_per_latent = L.gaussian_kl_per_latent(mean, logvar)
            kl = kl_per_latent.sum()
        regularizer, extra, discriminator_loss = self.regularizer(kl, mean, logvar, z, int(step), generator)
        loss = reconstruction + regularizer
        terms = loss_terms(reconstruction, kl, regularizer, loss, kl_per_latent, extra)
        return LossOutput(
            loss=loss,
            terms=terms,
            discriminator_loss=discriminator_loss,
            mean=mean,
            logvar=logvar,
            z=z,
            logits=logits,
        )

    def extra_repr(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return (
            f"name={self.name!r}, num_channels={self.num_channels}, num_latents={self.num_latents}, "
            f"architecture={self.architecture!r}, encoder_kernels={self.encoder_kernels!r}, "
            f"reconstruction={self.reconstruction!r}" + (f", {params}" if params else "")
        )


class BetaVAE(VAEModel):
    """beta-VAE (Higgins et al. 2017): reconstruction + beta * KL.  ``vae`` is beta = 1."""

    name = "beta_vae"
    param_specs = (Param("beta", 1.0, float, low=0),)
    defaults = defaults_of(param_specs)

    def __init__(self, *args: Any, beta: float = 1.0, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.beta = float(beta)
        self.params = {"beta": self.beta}

    def regularizer(self, kl, mean, logvar, z, step, generator):
        return self.beta * kl, {}, None


class PlainVAE(BetaVAE):
    name = "vae"
    param_specs = ()
    defaults: dict[str, Any] = {}

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, beta=1.0, **kwargs)
        self.params = {}


class AnnealedVAE(VAEModel):
    """AnnealedVAE (Burgess et al. 2018): reconstruction + gamma * |KL - C(step)|."""

    name = "annealed_vae"
    param_specs = (
        Param("gamma", 1000.0, float, low=0),
        Param("c_max", 25.0, float, low=0),
        Param("iteration_threshold", 100000, int, low=1),
    )
    defaults = defaults_of(param_specs)

    def __init__(
        self,
        *args: Any,
        gamma: float = 1000.0,
        c_max: float = 25.0,
        iteration_threshold: int = 100000,
        **kwargs: Any,
    ):
        super().__init__(*args, **kwargs)
        if int(iteration_threshold) <= 0:
            raise ValueError(f"iteration_threshold must be positive, got {iteration_threshold!r}")
        self.gamma, self.c_max, self.iteration_threshold = (
            float(gamma),
            float(c_max),
            int(iteration_threshold),
        )
        self.params = {
            "gamma": self.gamma,
            "c_max": self.c_max,
            "iteration_threshold": self.iteration_threshold,
        }

    def capacity(self, step: int) -> float:
        return L.anneal(self.c_max, step, self.iteration_threshold)

    def regularizer(self, kl, mean, logvar, z, step, generator):
        c = self.capacity(step)
        return (
            self.gamma * (kl - c).abs(),
            {"c": torch.tensor(c, dtype=torch.float32, device=kl.device)},
            None,
        )


class FactorVAE(VAEModel):
    """FactorVAE (Kim & Mnih 2018): reconstruction + KL + gamma * TC, TC from a discriminator.

    The VAE loss reads the discriminator with its weights detached, so ``loss.backward()`` leaves the
    discriminator's gradients untouched; ``discriminator_loss`` is computed from the same codes
    (detached) and their dimension-wise permutation, and reaches only the discriminator.
    """

    name = "factor_vae"
    param_specs = (Param("gamma", 10.0, float, low=0),)
    defaults = defaults_of(param_specs)

    def __init__(self, *args: Any, gamma: float = 10.0, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.gamma = float(gamma)
        self.params = {"gamma": self.gamma}
        self.discriminator = Discriminator(self.num_latents)

    def discriminator_parameters(self) -> list[nn.Parameter]:
        return list(self.discriminator.parameters())

    def make_optimizers(
        self, learning_rate: float = ADAM_DEFAULTS["lr"], fused: bool | None = None
    ) -> list[torch.optim.Optimizer]:
        """VAE Adam as in the base class, plus Adam(lr=1e-4, betas=(0.5, 0.9), eps=1e-8) for the discriminator."""
        return [
            *super().make_optimizers(learning_rate, fused),
            torch.optim.Adam(self.discriminator_parameters(), **DISCRIMINATOR_ADAM_DEFAULTS, fused=fused),
        ]

    def regularizer(self, kl, mean, logvar, z, step, generator):
        # VAE side: gradients reach z (and the encoder), never the discriminator's weights.
        logits_z = self.discriminator(z, detach_parameters=True).float()
        tc = (logits_z[:, 0] - logits_z[:, 1]).mean()
        # Discriminator side: the same codes, detached, and their dimension-wise permutation.
        z_detached = z.detach()
        z_permuted = L.permute_dims(z_detached, generator)
        logits = self.discriminator(torch.cat([z_detached, z_permuted], 0)).float()
        logits_real, logits_permuted = logits[: z.shape[0]], logits[z.shape[0] :]
        with torch.autocast(device_type=z.device.type, enabled=False):
            p_real = Discriminator.clipped_probabilities(logits_real)
            p_permuted = Discriminator.clipped_probabilities(logits_permuted)
            discriminator_loss = -(
                0.5 * torch.log(p_real[:, 0]).mean() + 0.5 * torch.log(p_permuted[:, 1]).mean()
            )
            accuracy = 0.5 * (
                (logits_real.argmax(1) == 0).float().mean() + (logits_permuted.argmax(1) == 1).float().mean()
            )
        extra = {
            "tc_estimate": tc.detach(),
            "discriminator_loss": discriminator_loss.detach(),
            "discriminator_accuracy": accuracy.detach(),
        }
        return kl + self.gamma * tc, extra, discriminator_loss


class DIPVAE(VAEModel):
    """DIP-VAE (Kumar et al. 2018), type "i" (Cov[mu]) or "ii" (E[diag sigma^2] + Cov[mu]).

    lambda_d = lambda_d_factor * lambda_od (disentanglement_lib's parameterisation).
    """

    dip_type = "i"

    def __init__(
        self, *args: Any, lambda_od: float = 1.0, lambda_d_factor: float | None = None, **kwargs: Any
    ):
        super().__init__(*args, **kwargs)
        if lambda_d_factor is None:
            lambda_d_factor = self.defaults["lambda_d_factor"]
        self.lambda_od, self.lambda_d_factor = float(lambda_od), float(lambda_d_factor)
        self.params = {"lambda_od": self.lambda_od, "lambda_d_factor": self.lambda_d_factor}

    @property
    def lambda_d(self) -> float:
        return self.lambda_d_factor * self.lambda_od

    def dip_covariance(self, mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        cov = L.covariance(mean)
        if self.dip_type == "ii":
            cov = cov + torch.diag_embed(logvar.float().exp().mean(0))
        return cov

    def regularizer(self, kl, mean, logvar, z, step, generator):
        with torch.autocast(device_type=mean.device.type, enabled=False):
            penalty, off_sq, diag_sq = L.dip_penalty(
                self.dip_covariance(mean, logvar), self.lambda_od, self.lambda_d
            )
        extra = {"dip_penalty": penalty, "dip_off_diagonal": off_sq, "dip_diagonal": diag_sq}
        return kl + penalty, extra, None


class DIPVAEI(DIPVAE):
    name = "dip_vae_i"
    dip_type = "i"
    param_specs = (Param("lambda_od", 1.0, float, low=0), Param("lambda_d_factor", 10.0, float, low=0))
    defaults = defaults_of(param_specs)


class DIPVAEII(DIPVAE):
    name = "dip_vae_ii"
    dip_type = "ii"
    param_specs = (Param("lambda_od", 1.0, float, low=0), Param("lambda_d_factor", 1.0, float, low=0))
    defaults = defaults_of(param_specs)


class BetaTCVAE(VAEModel):
    """beta-TC-VAE (Chen et al. 2018), alpha = gamma = 1: reconstruction + KL + (beta - 1) * TC.

    ``tc_estimator="mws"`` (default, disentanglement_lib): minibatch-weighted sampling without its
    constant -- the reported ``tc_estimate`` is offset by ``-(d - 1) log(N M)`` and usually negative.
    ``"mss"``: minibatch-stratified sampling; needs ``dataset_size``.
    """

    name = "beta_tc_vae"
    param_specs = (
        Param("beta", 1.0, float, low=0),
        Param("tc_estimator", "mws", str, choices=TC_ESTIMATORS),
        Param("dataset_size", None, int, low=2, nullable=True),
    )
    defaults = defaults_of(param_specs)

    def __init__(
        self,
        *args: Any,
        beta: float = 1.0,
        tc_estimator: str = "mws",
        dataset_size: int | None = None,
        **kwargs: Any,
    ):
        super().__init__(*args, **kwargs)
        if tc_estimator not in TC_ESTIMATORS:
            raise ValueError(f"tc_estimator must be one of {TC_ESTIMATORS}, got {tc_estimator!r}")
        if tc_estimator == "mss" and (dataset_size is None or int(dataset_size) < 2):
            raise ValueError("tc_estimator='mss' needs dataset_size (the number of training images)")
        self.beta, self.tc_estimator = float(beta), tc_estimator
        self.dataset_size = None if dataset_size is None else int(dataset_size)
        self.params = {"beta": self.beta, "tc_estimator": tc_estimator, "dataset_size": self.dataset_size}

    def total_correlation(self, z: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        if self.tc_estimator == "mss":
            return L.total_correlation_mss(z, mean, logvar, self.dataset_size)
        return L.total_correlation_mws(z, mean, logvar)

    def regularizer(self, kl, mean, logvar, z, step, generator):
        tc = self.total_correlation(z, mean, logvar)
        return kl + (self.beta - 1.0) * tc, {"tc_estimate": tc}, None
