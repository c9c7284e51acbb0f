"""Weakly-supervised pair models (Locatello et al. 2020, "Weakly-Supervised Disentanglement Without
Compromises"), as in disentanglement_lib's ``methods/weak/weak_vae.py``.

Each training example is a pair of images whose factors agree except 1 or ``k`` resampled ones
(:class:`untwine.data.PairStream`).  Both images go through the usual single-image encoder; for the
latents judged *shared*, both posteriors are replaced by one aggregate of the two; the others keep
their own.  Per latent, with q1 = N(m1, v1) and q2 = N(m2, v2):

===============  =============================================================================
``group_vae``    GVAE (Hosoya 2019): mean = (m1 + m2) / 2,  var = (v1 + v2) / 2
``ml_vae``       ML-VAE (Bouchacourt et al. 2018): product of experts,
                 var = 2 v1 v2 / (v1 + v2),  mean = (m1 / v1 + m2 / v2) * var / 2
===============  =============================================================================

Which latents are shared (``model.aggregation``):

* ``labels``: all but latent ``c``, where ``c`` is the pair's label (the last factor resampled): latent
  i is asked to hold factor i, so ``num_latents >= num_factors`` is required.
* ``argmax`` (the adaptive Ada-GVAE / Ada-ML-VAE): from the per-latent divergence
  ``delta_i = v1/v2 + (m2 - m1)^2 / v2 - 1 + log v2 - log v1`` (twice KL(q1 || q2), disentanglement_lib's
  ``compute_kl``), the latents in the upper of two equal-width bins between min(delta) and max(delta)
  (``delta_i >= (min + max) / 2``) keep their own posteriors, the others are shared.  When every delta is
  equal (a measure-zero case where disentanglement_lib's histogram divides 0 by 0) all latents are shared.

Loss, per pair, averaged over the batch: ``(rec(x1) + rec(x2)) / 2 + beta * (KL(q1~) + KL(q2~)) / 2``
with q~ the posteriors after aggregation, each sample drawn from its own q~.  The encoder is the one of
the unsupervised models, so every metric scores these models on single images.
"""

from __future__ import annotations

from typing import Any

import torch

from untwine.data.pairs import RANDOM_K, check_k
from untwine.data.stream import Batch
from untwine.models import losses as L
from untwine.models.objectives import LossOutput, VAEModel, loss_terms
from untwine.models.parameters import Param, defaults_of

__all__ = [
    "AGGREGATIONS",
    "GroupVAE",
    "MLVAE",
    "WeakVAE",
    "pair_divergence",
    "group_posterior",
    "product_of_experts",
    "adaptive_keep_mask",
    "label_keep_mask",
]

AGGREGATIONS = ("labels", "argmax")


def pair_divergence(
    mean1: torch.Tensor, logvar1: torch.Tensor, mean2: torch.Tensor, logvar2: torch.Tensor
) -> torch.Tensor:
    """Per-latent ``v1/v2 + (m2 - m1)^2/v2 - 1 + log v2 - log v1`` (twice KL(q1 || q2)): (B, d)."""
    var1, var2 = logvar1.exp(), logvar2.exp()
    return var1 / var2 + (mean2 - mean1).square() / var2 - 1 + logvar2 - logvar1


def group_posterior(mean1, logvar1, mean2, logvar2) -> tuple[torch.Tensor, torch.Tensor]:
    """GVAE's aggregate: the arithmetic mean of the means and of the variances -> (mean, logvar)."""
    return 0.5 * mean1 + 0.5 * mean2, torch.log(0.5 * logvar1.exp() + 0.5 * logvar2.exp())


def product_of_experts(mean1, logvar1, mean2, logvar2) -> tuple[torch.Tensor, torch.Tensor]:
    """ML-VAE's aggregate, disentanglement_lib's form: var = 2 v1 v2 / (v1 + v2) (twice the product of
    the two Gaussians' variance), mean = (m1/v1 + m2/v2) * var / 2 (the product's mean)."""
    var1, var2 = logvar1.exp(), logvar2.exp()
    var = 2 * var1 * var2 / (var1 + var2)
    return (mean1 / var1 + mean2 / var2) * var * 0.5, torch.log(var)


def adaptive_keep_mask(divergence: torch.Tensor) -> torch.Tensor:
    """True where a latent keeps its own posterior: ``delta >= (min + max) / 2`` per pair (the upper of
    two equal-width bins); all False for a pair whose deltas are all equal."""
    low = divergence.min(dim=1, keepdim=True).values
    high = divergence.max(dim=1, keepdim=True).values
    return ((divergence - low) * 2 >= high - low) & (high > low)


def label_keep_mask(changed: torch.Tensor, num_latents: int) -> torch.Tensor:
    """True at latent ``changed[b]`` of each pair (the factor known to differ), False elsewhere."""
    return torch.nn.functional.one_hot(changed.long(), num_latents).bool()


class WeakVAE(VAEModel):
    """The shared loss of the pair models; subclasses give :meth:`aggregate` (GVAE or ML-VAE)."""

    name = "weak_vae"
    #: trained on pairs: the training loop hands out :class:`~untwine.data.PairStream` batches.
    needs_pairs = True
    param_specs = (
        Param("beta", 1.0, float, low=0),
        Param("aggregation", "argmax", str, choices=AGGREGATIONS),
        Param("k", 1, int, low=1, choices=("rnd",)),
    )
    defaults = defaults_of(param_specs)

    def __init__(
        self, *args: Any, beta: float = 1.0, aggregation: str = "argmax", k: int | str = 1, **kwargs: Any
    ):
        super().__init__(*args, **kwargs)
        if aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {aggregation!r}")
        self.beta = float(beta)
        self.aggregation = aggregation
        self.k = k
        self.params = {"beta": self.beta, "aggregation": aggregation, "k": k}

    @property
    def pair_k(self) -> int:
        """``k`` for :class:`~untwine.data.PairStream` (``rnd`` is -1, as in disentanglement_lib)."""
        return RANDOM_K if self.k == "rnd" else int(self.k)

    def attach_dataset(self, dataset, seed: int) -> WeakVAE:
        """Check, before training starts, that ``k`` and the latent count suit ``dataset``."""
        check_k(self.pair_k, dataset.num_factors)
        if self.aggregation == "labels" and self.num_latents < dataset.num_factors:
            raise ValueError(
                f"aggregation=labels asks latent i to hold factor i, so it needs num_latents >= "
                f"{dataset.num_factors} (the factors of {dataset.name}); got num_latents={self.num_latents}"
            )
        return self

    @staticmethod
    def aggregate(mean1, logvar1, mean2, logvar2) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def keep_mask(self, mean1, logvar1, mean2, logvar2, changed) -> torch.Tensor:
        """(B, d) True where each image keeps its own posterior (see the module docstring)."""
        if self.aggregation == "labels":
            if changed is None:
                raise ValueError("aggregation=labels needs the pairs' changed_factor (a PairStream batch)")
            return label_keep_mask(torch.as_tensor(changed, device=mean1.device), self.num_latents)
        return adaptive_keep_mask(pair_divergence(mean1, logvar1, mean2, logvar2))

    def compute_loss(self, batch: Batch, step: int, generator: torch.Generator) -> LossOutput:
        """The pair loss on ``batch.images`` and ``batch.second_images`` (both encoded in one pass)."""
        batch = Batch.checked(batch)
        if not batch.is_pairs:
            raise ValueError(
                f"{self.name} trains on pairs of images: give a Batch with second_images "
                "(untwine.data.PairStream makes them)"
            )
        x = torch.cat([batch.images, batch.second_images])
        n = batch.images.shape[0]
        mean, logvar = self.encode(x)
        mean, logvar = mean.float(), logvar.float()
        mean1, mean2, logvar1, logvar2 = mean[:n], mean[n:], logvar[:n], logvar[n:]
        with torch.autocast(device_type=x.device.type, enabled=False):
            shared_mean, shared_logvar = self.aggregate(mean1, logvar1, mean2, logvar2)
            keep = self.keep_mask(mean1, logvar1, mean2, logvar2, batch.changed_factor)
            post_mean = torch.cat(
                [torch.where(keep, mean1, shared_mean), torch.where(keep, mean2, shared_mean)]
            )
            post_logvar = torch.cat(
                [torch.where(keep, logvar1, shared_logvar), torch.where(keep, logvar2, shared_logvar)]
            )
        z = L.sample_gaussian(post_mean, post_logvar, generator)
        logits = self.decode(z)
        with torch.autocast(device_type=x.device.type, enabled=False):
            per_image = L.reconstruction_loss(self.reconstruction, logits.float(), x)
            reconstruction = 0.5 * per_image[:n].mean() + 0.5 * per_image[n:].mean()
            kl_per_latent = L.gaussian_kl_per_latent(post_mean, post_logvar)  # mean over both halves
            kl = kl_per_latent.sum()
        regularizer = self.beta * kl
        loss = reconstruction + regularizer
        shared = {"shared_latents": (~keep).sum(dim=1).float().mean()}
        terms = loss_terms(reconstruction, kl, regularizer, loss, kl_per_latent, shared)
        return LossOutput(loss=loss, terms=terms, mean=mean, logvar=logvar, z=z, logits=logits)


class GroupVAE(WeakVAE):
    """GVAE (Hosoya 2019): shared latents take the arithmetic mean of the two posteriors."""

    name = "group_vae"
    aggregate = staticmethod(group_posterior)


class MLVAE(WeakVAE):
    """ML-VAE (Bouchacourt et al. 2018): shared latents take the product of the two posteriors."""

    name = "ml_vae"
    aggregate = staticmethod(product_of_experts)
