"""Few-label semi-supervised VAEs (Locatello et al. 2020, "Disentangling Factors of Variation Using Few
Labels"; disentanglement_lib's ``methods/semi_supervised``): an unsupervised objective plus
``gamma_sup(step)`` times a supervised loss tying the first latents' means to the (labeller-processed)
factors of a few labelled images.

``s2_beta_vae``, ``s2_factor_vae``, ``s2_dip_vae_i``, ``s2_dip_vae_ii`` and ``s2_beta_tc_vae`` are their
unsupervised parents (:mod:`untwine.models.objectives`) with :class:`_FewLabelMixin`; the labelled images
are a :class:`untwine.data.labels.LabelledSet` attached before training.  See docs/semi_supervised.md.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from untwine.data.labels import LABELLERS, LabelledSet
from untwine.data.stream import Batch
from untwine.models import losses as L
from untwine.models.networks import glorot_uniform_
from untwine.models.objectives import (
    ADAM_DEFAULTS,
    DIPVAEI,
    DIPVAEII,
    BetaTCVAE,
    BetaVAE,
    FactorVAE,
    LossOutput,
    VAEModel,
    checked_int,
    loss_terms,
)
from untwine.models.parameters import Param, defaults_of

__all__ = [
    "ANNEALERS",
    "SUPERVISED_LOSSES",
    "EmbedHead",
    "S2BetaTCVAE",
    "S2BetaVAE",
    "S2DIPVAEI",
    "S2DIPVAEII",
    "S2FactorVAE",
    "S2MineVAE",
    "MineHead",
    "SupervisedBaseline",
    "annealed_gamma",
    "supervised_loss_cov",
    "supervised_loss_embed",
    "supervised_loss_l2",
    "supervised_loss_xent",
]

SUPERVISED_LOSSES = ("xent", "l2", "cov", "embed")
ANNEALERS = ("fixed", "anneal", "fine_tune")


def _first_latents(representation: torch.Tensor, num_factors: int, loss: str) -> torch.Tensor:
    if representation.shape[1] < num_factors:
        raise ValueError(
            f"the {loss} supervised loss needs at least as many latents as labelled factors: "
            f"{representation.shape[1]} latents for {num_factors} factors"
        )
    return representation[:, :num_factors]


def supervised_loss_xent(
    representation: torch.Tensor, labels: torch.Tensor, sizes: Sequence[int]
) -> torch.Tensor:
    """``sum_{n, j} BCE(sigmoid(r_nj), y_nj / size_j)`` over the first F latents (dlib's ``xent``; a sum)."""
    first = _first_latents(representation, labels.shape[1], "xent").float()
    targets = labels.float() / torch.tensor(sizes, dtype=torch.float32, device=first.device)
    return F.binary_cross_entropy_with_logits(first, targets, reduction="sum")


def supervised_loss_l2(
    representation: torch.Tensor,
    labels: torch.Tensor,
    sizes: Sequence[int],
    scale: torch.Tensor | None = None,
) -> torch.Tensor:
    """``sum (b r_nj - y_nj)^2`` with a learned scalar ``b`` (``scale``), or without it
    ``sum (sigmoid(r_nj) - y_nj / size_j)^2`` (dlib's ``l2``; a sum over points and factors)."""
    first = _first_latents(representation, labels.shape[1], "l2").float()
    if scale is not None:
        return (first * scale - labels.float()).square().sum()
    targets = labels.float() / torch.tensor(sizes, dtype=torch.float32, device=first.device)
    return (torch.sigmoid(first) - targets).square().sum()


def supervised_loss_cov(representation: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Sum of squares of the cross-covariance ``Cov[r, y]`` (d x F, over the batch) off its diagonal
    ``(i, i), i < min(d, F)``: latent i should covary with factor i only (dlib's ``cov``)."""
    r = representation.float()
    y = labels.float()
    covariance = ((r - r.mean(0))[:, :, None] * (y - y.mean(0))[:, None, :]).mean(0)
    k = min(covariance.shape)
    mask = torch.ones_like(covariance)
    mask[torch.arange(k), torch.arange(k)] = 0.0
    return (covariance * mask).square().sum()


def supervised_loss_embed(
    representation: torch.Tensor,
    labels: torch.Tensor,
    embeddings: Sequence[torch.Tensor],
    sigmas: Sequence[torch.Tensor | float],
) -> torch.Tensor:
    """``sum_j mean_n CE(softmax_k(-((r_nj - e_jk) sigma_j)^2), y_nj)``: latent j against a 1-d embedding
    of factor j's values (dlib's ``embed``)."""
    first = _first_latents(representation, labels.shape[1], "embed").float()
    total = first.new_zeros(())
    for j, (embedding, sigma) in enumerate(zip(embeddings, sigmas, strict=True)):
        logits = -((first[:, j : j + 1] - embedding[None, :]) * sigma).square()
        total = total + F.cross_entropy(logits, labels[:, j].long())
    return total


def annealed_gamma(annealer: str, gamma: float, step: int, iteration_threshold: int) -> float:
    """``fixed``: gamma.  ``anneal``: ``min(gamma, gamma * step / threshold)``.  ``fine_tune``: 0 until
    ``step > threshold``, then gamma (``gamma * clip(step - threshold, 0, 1)``)."""
    if annealer == "fixed":
        return float(gamma)
    if annealer == "anneal":
        return min(float(gamma), float(gamma) * float(step) / float(iteration_threshold))
    if annealer == "fine_tune":
        return float(gamma) * min(1.0, max(0.0, float(step - iteration_threshold)))
    raise ValueError(f"annealer must be one of {ANNEALERS}, got {annealer!r}")


class EmbedHead(nn.Module):
    """The learned 1-d embeddings (and temperatures) of the ``embed`` supervised loss, one per labelled factor.

    ``use_order=False``: a free embedding of each factor's values.  ``use_order=True``: ``k * slope + bias``
    (the values' order is kept).  ``sigma="learn"``: one learned temperature per factor, else a fixed float.
    The factor sizes are a buffer, so a head can be rebuilt from a state dict.
    """

    def __init__(self, sizes: Sequence[int], sigma: float | str = "learn", use_order: bool = False):
        super().__init__()
        self.register_buffer("sizes", torch.tensor([int(k) for k in sizes], dtype=torch.int64))
        self.use_order, self.learn_sigma = bool(use_order), sigma == "learn"
        self.fixed_sigma = None if self.learn_sigma else float(sigma)
        if self.use_order:
            self.slope = nn.Parameter(torch.zeros(len(sizes)))
            self.bias = nn.Parameter(torch.zeros(len(sizes)))
        else:
            self.embeddings = nn.ParameterList(nn.Parameter(torch.zeros(int(k))) for k in sizes)
        if self.learn_sigma:
            self.sigma = nn.Parameter(torch.zeros(len(sizes)))

    def reset_parameters(self, generator: torch.Generator) -> None:
        """TF's glorot-uniform for the variables dlib creates: limit sqrt(3 / k) for a length-k vector,
        sqrt(3) for scalars (slope, bias, sigma)."""
        with torch.no_grad():
            if self.use_order:
                glorot_uniform_(self.slope, 1, 1, generator)
                glorot_uniform_(self.bias, 1, 1, generator)
            else:
                for embedding in self.embeddings:
                    glorot_uniform_(embedding, embedding.numel(), embedding.numel(), generator)
            if self.learn_sigma:
                glorot_uniform_(self.sigma, 1, 1, generator)

    def tables(self) -> tuple[list[torch.Tensor], list[torch.Tensor | float]]:
        sizes = [int(k) for k in self.sizes.tolist()]
        if self.use_order:
            embeddings = [
                torch.arange(k, dtype=torch.float32, device=self.slope.device) * self.slope[j] + self.bias[j]
                for j, k in enumerate(sizes)
            ]
        else:
            embeddings = list(self.embeddings)
        sigmas = (
            [self.sigma[j] for j in range(len(sizes))]
            if self.learn_sigma
            else [self.fixed_sigma] * len(sizes)
        )
        return embeddings, sigmas


class _FewLabelMixin:
    """What the S^2 models add to their unsupervised parent (see :data:`S2_PARAM_SPECS`)."""

    S2_PARAM_SPECS: tuple[Param, ...] = (
        Param("gamma_sup", 1.0, float, low=0),
        Param("supervised_loss", "xent", str, choices=SUPERVISED_LOSSES),
        Param("annealer", "fixed", str, choices=ANNEALERS),
        Param("iteration_threshold", 1, int, low=1),
        Param("labeller", "perfect", str, choices=LABELLERS),
        Param("num_labels", 1000, int, low=1, nullable=True),
        # used when num_labels is None
        Param("labelled_fraction", None, float, low=0, low_open=True, high=1, nullable=True),
        # None: as many labelled as unlabelled images per step (dlib)
        Param("labelled_batch_size", None, int, low=0, nullable=True),
        Param("num_bins", 5, int, low=1),
        Param("prob_random", 0.1, float, low=0, high=1),
        Param("num_observed_factors", 2, int, low=1),
        Param("l2_learn_scale", True, bool),
        Param("embed_sigma", "learn", float, low=0, low_open=True, choices=("learn",)),
        Param("embed_use_order", False, bool),
        # the share of the labelled examples used for training; the rest is the validation split
        Param("train_percentage", 1.0, float, low=0, low_open=True, high=1),
    )

    def __init__(
        self,
        *args: Any,
        gamma_sup: float = 1.0,
        supervised_loss: str = "xent",
        annealer: str = "fixed",
        iteration_threshold: int = 1,
        labeller: str = "perfect",
        num_labels: int | None = 1000,
        labelled_fraction: float | None = None,
        labelled_batch_size: int | None = None,
        num_bins: int = 5,
        prob_random: float = 0.1,
        num_observed_factors: int = 2,
        l2_learn_scale: bool = True,
        embed_sigma: float | str = "learn",
        embed_use_order: bool = False,
        train_percentage: float = 1.0,
        **kwargs: Any,
    ):
        super().__init__(*args, **kwargs)
        if supervised_loss not in SUPERVISED_LOSSES:
            raise ValueError(f"supervised_loss must be one of {SUPERVISED_LOSSES}, got {supervised_loss!r}")
        if annealer not in ANNEALERS:
            raise ValueError(f"annealer must be one of {ANNEALERS}, got {annealer!r}")
        if labeller not in LABELLERS:
            raise ValueError(f"labeller must be one of {LABELLERS}, got {labeller!r}")
        if num_labels is None and labelled_fraction is None:
            raise ValueError("give num_labels or labelled_fraction")
        if embed_sigma != "learn" and not isinstance(embed_sigma, int | float):
            raise ValueError(f"embed_sigma must be 'learn' or a number, got {embed_sigma!r}")
        self.gamma_sup = float(gamma_sup)
        self.supervised_loss_kind, self.annealer = supervised_loss, annealer
        self.iteration_threshold = checked_int("iteration_threshold", iteration_threshold, 1)
        self.labeller = labeller
        self.num_labels = None if num_labels is None else checked_int("num_labels", num_labels, 1)
        self.labelled_fraction = None if labelled_fraction is None else float(labelled_fraction)
        self.labelled_batch_size = (
            None if labelled_batch_size is None else checked_int("labelled_batch_size", labelled_batch_size)
        )
        self.labeller_kwargs = {
            "num_bins": num_bins,
            "prob_random": prob_random,
            "num_observed_factors": num_observed_factors,
        }
        self.l2_learn_scale, self.embed_sigma, self.embed_use_order = (
            bool(l2_learn_scale),
            embed_sigma,
            bool(embed_use_order),
        )
        self.params.update(
            {
                "gamma_sup": self.gamma_sup,
                "supervised_loss": supervised_loss,
                "annealer": annealer,
                "iteration_threshold": self.iteration_threshold,
                "labeller": labeller,
                "num_labels": self.num_labels,
                "labelled_fraction": self.labelled_fraction,
                "labelled_batch_size": self.labelled_batch_size,
                **self.labeller_kwargs,
                "l2_learn_scale": self.l2_learn_scale,
                "embed_sigma": embed_sigma,
                "embed_use_order": self.embed_use_order,
                "train_percentage": float(train_percentage),
            }
        )
        self.train_percentage = float(train_percentage)
        self.l2_scale = (
            nn.Parameter(torch.ones(())) if supervised_loss == "l2" and self.l2_learn_scale else None
        )
        self.embed_head: EmbedHead | None = None
        self.labelled_set: LabelledSet | None = None
        #: the labelled examples held out of training (``train_percentage`` < 1), for validation scores
        self.validation_set: LabelledSet | None = None

    # -- labels -------------------------------------------------------------------------------------
    def _set_labelled(self, labelled: LabelledSet) -> None:
        sizes = labelled.num_classes
        if isinstance(sizes, int):
            raise ValueError(
                "the S^2 models need label vectors: build the LabelledSet with a sequence of sizes"
            )
        if self.supervised_loss_kind != "cov" and self.num_latents < len(sizes):
            raise ValueError(
                f"supervised_loss={self.supervised_loss_kind!r} ties latent j to labelled factor j: "
                f"num_latents={self.num_latents} is fewer than the {len(sizes)} labelled factors"
            )
        self.labelled_set = labelled
        if self.supervised_loss_kind == "embed":
            device = next(self.encoder.parameters()).device
            if self.embed_head is None or [int(k) for k in self.embed_head.sizes.tolist()] != list(sizes):
                if self._init_generator is None:
                    raise ValueError(
                        "the embed head is initialised from the model's init generator: call "
                        "reset_parameters(generator) before attaching labels (build_model does)"
                    )
                # Drawn on the CPU (where the init generator lives), then moved: the same weights on any device.
                head = EmbedHead(sizes, self.embed_sigma, self.embed_use_order)
                head.reset_parameters(self._init_generator)
                self.embed_head = head.to(device)

    def attach_dataset(self, dataset, seed: int):
        """Label a fixed subset of ``dataset``'s grid (chosen from ``seed``) with all factors, through the
        labeller; the first ``train_percentage`` of it trains, the rest is the validation split."""
        self._attach(
            LabelledSet.from_dataset_factors(
                dataset, seed, self.num_labels, self.labelled_fraction, self.labeller, **self.labeller_kwargs
            )
        )
        return self

    def attach_labels(self, images, labels, sizes: Sequence[int]):
        """Use the given labelled images (n, H, W, C) and label vectors (n, F) with value counts ``sizes``
        (split by ``train_percentage`` like :meth:`attach_dataset`)."""
        self._attach(LabelledSet.from_arrays(images, labels, tuple(sizes)))
        return self

    def _attach(self, labelled: LabelledSet) -> None:
        train, validation = labelled.split(self.train_percentage)
        self._set_labelled(train)
        self.validation_set = validation

    # -- parameters ---------------------------------------------------------------------------------
    _init_generator: torch.Generator | None = None

    def supervised_parameters(self) -> list[nn.Parameter]:
        params = [] if self.l2_scale is None else [self.l2_scale]
        return params + ([] if self.embed_head is None else list(self.embed_head.parameters()))

    def main_parameters(self) -> list[nn.Parameter]:
        return [*super().main_parameters(), *self.supervised_parameters()]

    def reset_parameters(self, generator: torch.Generator):
        super().reset_parameters(generator)
        if self.l2_scale is not None:
            with torch.no_grad():
                self.l2_scale.fill_(1.0)
        # The embed head is built at attach time; it draws from a fork of this generator.
        self._init_generator = torch.Generator().manual_seed(
            int(torch.randint(2**62, (1,), generator=generator).item())
        )
        if self.embed_head is not None:
            self.embed_head.reset_parameters(self._init_generator)
        return self

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """Rebuild the embed head from the saved sizes when it is not there yet (a model loaded for inference)."""
        key = "embed_head.sizes"
        if key in state_dict and self.embed_head is None:
            sizes = [int(k) for k in state_dict[key].tolist()]
            self.embed_head = EmbedHead(sizes, self.embed_sigma, self.embed_use_order).to(
                state_dict[key].device
            )
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    # -- objective ----------------------------------------------------------------------------------
    def supervised_term(self, representation: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        sizes = self.labelled_set.num_classes if self.labelled_set is not None else None
        kind = self.supervised_loss_kind
        if kind == "xent":
            return supervised_loss_xent(representation, labels, sizes)
        if kind == "l2":
            return supervised_loss_l2(representation, labels, sizes, self.l2_scale)
        if kind == "cov":
            return supervised_loss_cov(representation, labels)
        if self.embed_head is None:
            raise ValueError(
                "the embed supervised loss needs labels attached first (attach_dataset / attach_labels)"
            )
        return supervised_loss_embed(representation, labels, *self.embed_head.tables())

    def supervised_terms(
        self, representation: torch.Tensor, labels: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(supervised loss, auxiliary loss or None): the auxiliary loss trains networks of the supervised
        term with their own optimiser and reaches nothing else (``s2_mine_vae``'s statistics networks)."""
        return self.supervised_term(representation, labels), None

    def gamma_at(self, step: int) -> float:
        return annealed_gamma(self.annealer, self.gamma_sup, step, self.iteration_threshold)

    def compute_loss(self, batch: Batch, step: int, generator: torch.Generator) -> LossOutput:
        """The parent's unsupervised loss plus ``gamma_sup(step) * supervised loss`` on a labelled batch
        (the encoder means of ``labelled_batch_size`` labelled images).  ``batch.factors`` is not used:
        the labels come from the attached :class:`LabelledSet` only."""
        out = super().compute_loss(batch, step, generator)
        if self.labelled_set is None or self.labelled_batch_size == 0:
            return out
        x = batch.images
        count = x.shape[0] if self.labelled_batch_size is None else self.labelled_batch_size
        images, labels = self.labelled_set.draw(count, generator)
        images = images.to(x.device)
        if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
            images = images.contiguous(memory_format=torch.channels_last)
        mean, _ = self.encode(images)
        with torch.autocast(device_type=x.device.type, enabled=False):
            supervised, auxiliary = self.supervised_terms(mean.float(), labels.to(x.device), generator)
            gamma = self.gamma_at(int(step))
            loss = out.loss + gamma * supervised
        terms = dict(out.terms)
        per_latent = terms.pop("kl_per_latent")
        terms.update(
            {
                "loss": loss.detach(),
                "supervised_loss": supervised.detach(),
                "gamma_sup": torch.tensor(gamma, dtype=torch.float32, device=x.device),
                **({} if auxiliary is None else {"auxiliary_loss": auxiliary.detach()}),
                "kl_per_latent": per_latent,
            }
        )
        # The auxiliary loss reaches only its own networks, so it is backpropagated like FactorVAE's
        # discriminator loss (the two never meet: FactorVAE's supervised term has no auxiliary loss).
        second = out.discriminator_loss if auxiliary is None else auxiliary
        return dataclasses.replace(out, loss=loss, terms=terms, discriminator_loss=second)


def _few_label_param_specs(parent: type[VAEModel]) -> tuple[Param, ...]:
    """The parent's parameters, then the S^2 ones (an S^2 name replaces a parent's of the same name)."""
    own = {p.name for p in _FewLabelMixin.S2_PARAM_SPECS}
    return tuple(p for p in parent.param_specs if p.name not in own) + _FewLabelMixin.S2_PARAM_SPECS


class S2BetaVAE(_FewLabelMixin, BetaVAE):
    """S^2-beta-VAE: beta-VAE + gamma_sup * supervised loss (dlib's ``s2_vae``)."""

    name = "s2_beta_vae"
    param_specs = _few_label_param_specs(BetaVAE)
    defaults = defaults_of(param_specs)


class S2FactorVAE(_FewLabelMixin, FactorVAE):
    """S^2-FactorVAE: FactorVAE + gamma_sup * supervised loss (the discriminator is trained as usual)."""

    name = "s2_factor_vae"
    param_specs = _few_label_param_specs(FactorVAE)
    defaults = defaults_of(param_specs)


class S2DIPVAEI(_FewLabelMixin, DIPVAEI):
    """S^2-DIP-VAE-I."""

    name = "s2_dip_vae_i"
    param_specs = _few_label_param_specs(DIPVAEI)
    defaults = defaults_of(param_specs)


class S2DIPVAEII(_FewLabelMixin, DIPVAEII):
    """S^2-DIP-VAE-II."""

    name = "s2_dip_vae_ii"
    param_specs = _few_label_param_specs(DIPVAEII)
    defaults = defaults_of(param_specs)


class S2BetaTCVAE(_FewLabelMixin, BetaTCVAE):
    """S^2-beta-TC-VAE."""

    name = "s2_beta_tc_vae"
    param_specs = _few_label_param_specs(BetaTCVAE)
    defaults = defaults_of(param_specs)


class _DecoderOnlyReconstruction(VAEModel):
    """Reconstruction trains the decoder only: it decodes the encoder's samples with the gradient stopped,
    and there is no KL term (what disentanglement_lib's ``supervised`` model pairs with its supervised loss).
    The KL is still logged, for the pictures and the collapsed-latent checks."""

    def compute_loss(self, batch: Batch, step: int, generator: torch.Generator) -> LossOutput:
        x = Batch.checked(batch).images
        mean, logvar = self.encode(x)
        mean, logvar = mean.float(), logvar.float()
        z = L.sample_gaussian(mean, logvar, generator)
        logits = self.decode(z.detach())
        with torch.autocast(device_type=x.device.type, enabled=False):
            reconstruction = L.reconstruction_loss(self.reconstruction, logits.float(), x).mean()
            kl_per_latent = L.gaussian_kl_per_latent(mean.detach(), logvar.detach())
            kl = kl_per_latent.sum()
        terms = loss_terms(
            reconstruction, kl, torch.zeros((), device=x.device), reconstruction, kl_per_latent
        )
        return LossOutput(loss=reconstruction, terms=terms, mean=mean, logvar=logvar, z=z, logits=logits)


# The supervised baseline has no weight or schedule on its supervised loss (dlib adds it as it is).
_UNWEIGHTED = {"gamma_sup", "annealer", "iteration_threshold"}


class SupervisedBaseline(_FewLabelMixin, _DecoderOnlyReconstruction):
    """The ``supervised`` baseline of Locatello et al. (2020), dlib's ``supervised``: the encoder learns
    from the labelled examples alone (``reconstruction(decoder; stop_gradient(z)) + supervised loss``), the
    decoder learns to draw its codes.  It shows what the labels alone give; the S^2 models add an
    unsupervised objective on all images."""

    name = "supervised"
    param_specs = tuple(p for p in _FewLabelMixin.S2_PARAM_SPECS if p.name not in _UNWEIGHTED)
    defaults = defaults_of(param_specs)

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)  # gamma_sup 1, annealer fixed: the loss is added as it is
        for name in _UNWEIGHTED:
            del self.params[name]


class MineHead(nn.Module):
    """One MINE statistics network per (labelled factor l, latent r), dlib's ``mine``, batched over the
    pairs: T(x, y) = w2 · elu(wx x + bx + wy y + by) + b2 with x the latent's value and y the label, 20
    hidden units.  The number of factors is a buffer, so a head can be rebuilt from a state dict."""

    HIDDEN = 20

    def __init__(self, num_factors: int, num_latents: int):
        super().__init__()
        self.register_buffer("shape", torch.tensor([int(num_factors), int(num_latents)], dtype=torch.int64))
        pairs, hidden = int(num_factors) * int(num_latents), self.HIDDEN
        self.wx, self.bx = nn.Parameter(torch.zeros(pairs, hidden)), nn.Parameter(torch.zeros(pairs, hidden))
        self.wy, self.by = nn.Parameter(torch.zeros(pairs, hidden)), nn.Parameter(torch.zeros(pairs, hidden))
        self.w2, self.b2 = nn.Parameter(torch.zeros(pairs, hidden)), nn.Parameter(torch.zeros(pairs))

    def reset_parameters(self, generator: torch.Generator) -> None:
        """TF dense layers: glorot-uniform kernels (1 -> 20 and 20 -> 1), zero biases."""
        with torch.no_grad():
            glorot_uniform_(self.wx, 1, self.HIDDEN, generator)
            glorot_uniform_(self.wy, 1, self.HIDDEN, generator)
            glorot_uniform_(self.w2, self.HIDDEN, 1, generator)
            for bias in (self.bx, self.by, self.b2):
                bias.zero_()

    def mutual_information(
        self, representation: torch.Tensor, labels: torch.Tensor, order: torch.Tensor, detach_weights: bool
    ) -> torch.Tensor:
        """The MINE (Donsker-Varadhan) estimate of I(z_r; y_l) for every pair, (num_factors, num_latents):
        mean T(x, y) + log B - logsumexp T(x, y shuffled); ``order`` (pairs, B) shuffles each pair's labels."""
        num_factors, num_latents = (int(v) for v in self.shape.tolist())
        batch = representation.shape[0]
        weights = [
            p.detach() if detach_weights else p
            for p in (self.wx, self.bx, self.wy, self.by, self.w2, self.b2)
        ]
        wx, bx, wy, by, w2, b2 = weights
        x = representation[:, :num_latents].repeat(1, num_factors)  # (B, pairs): pair p = (l, r) -> latent r
        y = labels.float().repeat_interleave(num_latents, dim=1)  # (B, pairs): label l
        shuffled = torch.gather(y, 0, order.T)  # each pair's labels in its own random order

        def statistic(values: torch.Tensor) -> torch.Tensor:
            hidden = F.elu(x[..., None] * wx + bx + values[..., None] * wy + by)
            return (hidden * w2).sum(-1) + b2  # (B, pairs)

        joint, marginal = statistic(y), statistic(shuffled)
        estimate = joint.mean(0) + math.log(batch) - torch.logsumexp(marginal, dim=0)
        return estimate.reshape(num_factors, num_latents)


# MINE replaces the supervised loss: these S^2 parameters do not apply to it.
_NOT_FOR_MINE = {"supervised_loss", "l2_learn_scale", "embed_sigma", "embed_use_order"}
MINE_ADAM = {"lr": 0.01, "betas": (0.9, 0.999), "eps": 1e-8}  # dlib: tf.train.AdamOptimizer(0.01)


class S2MineVAE(_FewLabelMixin, BetaVAE):
    """dlib's ``s2_mine_vae``: beta-VAE + gamma_sup * sum over labelled factors l and latents r != l of
    MINE's estimate of I(z_r; y_l), squared -- the labels are pushed out of every latent but their own.

    The statistics networks (:class:`MineHead`) are trained at the same step by their own Adam
    (learning rate 0.01) to maximise their estimates; the VAE's loss reads them with detached weights and
    their loss reads the codes detached (``discriminator_loss``, as FactorVAE's discriminator), so each
    optimiser moves only its own variables, as in dlib.  Each pair's labels are shuffled with a
    permutation drawn from the run's generator (dlib: TensorFlow's global one)."""

    name = "s2_mine_vae"
    param_specs = tuple(p for p in _few_label_param_specs(BetaVAE) if p.name not in _NOT_FOR_MINE)
    defaults = defaults_of(param_specs)

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        for name in _NOT_FOR_MINE:
            del self.params[name]
        self.mine_head: MineHead | None = None

    def _set_labelled(self, labelled: LabelledSet) -> None:
        num_factors = len(labelled.num_classes)
        if num_factors > self.num_latents:
            raise ValueError(
                f"s2_mine_vae pairs labelled factor l with latent l: num_latents={self.num_latents} is fewer "
                f"than the {num_factors} labelled factors"
            )
        super()._set_labelled(labelled)
        if self.mine_head is None or [int(v) for v in self.mine_head.shape.tolist()] != [
            num_factors,
            self.num_latents,
        ]:
            if self._init_generator is None:
                raise ValueError(
                    "call reset_parameters(generator) before attaching labels (build_model does)"
                )
            head = MineHead(num_factors, self.num_latents)
            head.reset_parameters(self._init_generator)  # drawn on the CPU, then moved
            self.mine_head = head.to(next(self.encoder.parameters()).device)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """Rebuild the MINE head from the saved shape when it is not there yet (a model loaded for inference)."""
        key = "mine_head.shape"
        if key in state_dict and self.mine_head is None:
            num_factors, num_latents = (int(v) for v in state_dict[key].tolist())
            self.mine_head = MineHead(num_factors, num_latents).to(state_dict[key].device)
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def make_optimizers(self, learning_rate: float = ADAM_DEFAULTS["lr"], fused: bool | None = None):
        optimizers = super().make_optimizers(learning_rate, fused)
        if self.mine_head is not None:
            optimizers.append(torch.optim.Adam(self.mine_head.parameters(), **MINE_ADAM, fused=fused))
        return optimizers

    def supervised_terms(
        self, representation: torch.Tensor, labels: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(sum_{l != r} MI(z_r; y_l)^2 with detached MINE weights, the networks' own loss: -sum of every
        pair's estimate with the codes detached); each pair's labels shuffled by ``generator``."""
        if self.mine_head is None:
            raise ValueError("s2_mine_vae needs labels attached first (attach_dataset / attach_labels)")
        num_factors, num_latents = (int(v) for v in self.mine_head.shape.tolist())
        batch = representation.shape[0]
        order = torch.argsort(
            torch.rand(num_factors * num_latents, batch, generator=generator, device=generator.device), dim=1
        ).to(representation.device)
        labels = labels.to(representation.device)
        estimate = self.mine_head.mutual_information(representation, labels, order, detach_weights=True)
        off_diagonal = ~torch.eye(num_factors, num_latents, dtype=torch.bool, device=estimate.device)
        own = self.mine_head.mutual_information(representation.detach(), labels, order, detach_weights=False)
        return estimate[off_diagonal].square().sum(), -own.sum()
