"""The model table: every trainable model's name, class, typed parameters (defaults and valid ranges) and
one-line description, :func:`check_model_params`, and :func:`build_model`, the one way to build one with
its weights drawn from an explicit generator.

This module is the only place that knows every model module; the model modules import
:mod:`untwine.models.objectives` (the shared base) and never each other's table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from untwine.models.few_label import (
    S2DIPVAEI,
    S2DIPVAEII,
    S2BetaTCVAE,
    S2BetaVAE,
    S2FactorVAE,
    S2MineVAE,
    SupervisedBaseline,
)
from untwine.models.objectives import (
    DIPVAEI,
    DIPVAEII,
    AnnealedVAE,
    BetaTCVAE,
    BetaVAE,
    FactorVAE,
    PlainVAE,
    VAEModel,
)
from untwine.models.parameters import Param, check_values
from untwine.models.ss_vae import SemiSupervisedVAE
from untwine.models.weak import MLVAE, GroupVAE

__all__ = ["MODELS", "MODEL_DEFAULTS", "ModelEntry", "build_model", "check_model_params", "instantiate"]


@dataclass(frozen=True)
class ModelEntry:
    """One row of the model table: ``model=<name>`` builds ``cls``; ``model.<param>`` overrides one of
    ``param_specs`` (type, default, valid range; ``defaults`` is their defaults)."""

    cls: type[VAEModel]
    description: str

    @property
    def name(self) -> str:
        return self.cls.name

    @property
    def param_specs(self) -> tuple[Param, ...]:
        return self.cls.param_specs

    @property
    def defaults(self) -> dict[str, Any]:
        return dict(self.cls.defaults)


MODELS: dict[str, ModelEntry] = {
    entry.name: entry
    for entry in (
        ModelEntry(PlainVAE, "VAE (Kingma & Welling 2014): reconstruction + KL"),
        ModelEntry(BetaVAE, "beta-VAE (Higgins et al. 2017): reconstruction + beta * KL"),
        ModelEntry(
            AnnealedVAE, "AnnealedVAE (Burgess et al. 2018): gamma * |KL - C(step)|, C grows to c_max"
        ),
        ModelEntry(FactorVAE, "FactorVAE (Kim & Mnih 2018): KL + gamma * TC from a discriminator"),
        ModelEntry(DIPVAEI, "DIP-VAE-I (Kumar et al. 2018): KL + penalty on Cov[mean]"),
        ModelEntry(DIPVAEII, "DIP-VAE-II (Kumar et al. 2018): KL + penalty on E[diag var] + Cov[mean]"),
        ModelEntry(BetaTCVAE, "beta-TC-VAE (Chen et al. 2018): KL + (beta - 1) * minibatch TC"),
        ModelEntry(
            SemiSupervisedVAE,
            "semi-supervised VAE (Siddharth et al. 2017): labelled class y + style z",
        ),
        ModelEntry(S2BetaVAE, "S^2-beta-VAE (Locatello et al. 2020): beta-VAE + gamma_sup * supervised loss"),
        ModelEntry(S2FactorVAE, "S^2-FactorVAE (Locatello et al. 2020): FactorVAE + supervised loss"),
        ModelEntry(S2DIPVAEI, "S^2-DIP-VAE-I (Locatello et al. 2020): DIP-VAE-I + supervised loss"),
        ModelEntry(S2DIPVAEII, "S^2-DIP-VAE-II (Locatello et al. 2020): DIP-VAE-II + supervised loss"),
        ModelEntry(S2BetaTCVAE, "S^2-beta-TC-VAE (Locatello et al. 2020): beta-TC-VAE + supervised loss"),
        ModelEntry(
            S2MineVAE,
            "S^2-MINE-VAE (Locatello et al. 2020): beta-VAE + gamma_sup * sum_{l != r} MINE(z_r; y_l)^2",
        ),
        ModelEntry(
            SupervisedBaseline,
            "supervised baseline (Locatello et al. 2020): the encoder learns from the labels alone, "
            "the decoder from its stopped codes",
        ),
        ModelEntry(
            GroupVAE,
            "GVAE / Ada-GVAE (Hosoya 2019; Locatello et al. 2020): pairs, shared latents averaged "
            "(aggregation=labels or argmax)",
        ),
        ModelEntry(
            MLVAE,
            "ML-VAE / Ada-ML-VAE (Bouchacourt et al. 2018; Locatello et al. 2020): pairs, shared latents "
            "as a product of experts (aggregation=labels or argmax)",
        ),
    )
}
#: name -> default parameters (what ``model.<param>`` may override); a view of :data:`MODELS`.
MODEL_DEFAULTS: dict[str, dict[str, Any]] = {name: entry.defaults for name, entry in MODELS.items()}


def check_model_params(name: str, params: dict[str, Any], prefix: str = "model.") -> None:
    """Refuse an unknown model, an unknown parameter or a value outside its parameter's type and range,
    with a one-line ValueError naming the key (``model.beta``, or ``beta`` with ``prefix=""``)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; valid models: {', '.join(MODELS)}")
    check_values(name, MODELS[name].param_specs, params, prefix)


def instantiate(
    cls: type[VAEModel], init_generator: torch.Generator | int, *args: Any, **kwargs: Any
) -> VAEModel:
    """``cls(*args, **kwargs)`` with every weight drawn from ``init_generator`` (a torch.Generator, or an
    int seed for a new CPU one) and none from torch's global random state, which is neither read nor moved.

    PyTorch's layer constructors run their own default initialisation, which draws from the global
    generator.  So the model is constructed on the ``meta`` device (shapes only: nothing is allocated
    or drawn), then given CPU storage and initialised by ``reset_parameters(generator)``.  The storage
    is filled with NaN first, so a parameter that ``reset_parameters`` misses is an error here rather
    than uninitialised memory.  (Saving and restoring the global state instead would hide the draws.)
    """
    if isinstance(init_generator, bool) or not isinstance(init_generator, int | torch.Generator):
        raise TypeError(
            "init_generator must be a torch.Generator or an int seed (weights are never drawn from torch's "
            f"global generator), got {init_generator!r}"
        )
    generator = (
        torch.Generator().manual_seed(init_generator) if isinstance(init_generator, int) else init_generator
    )
    with torch.device("meta"):
        model = cls(*args, **kwargs)
    if any(True for _ in model.buffers()):  # their values would be lost by to_empty
        raise RuntimeError(f"{cls.__name__} registers buffers at construction; instantiate cannot keep them")
    model = model.to_empty(device="cpu")
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.fill_(math.nan)
    model.reset_parameters(generator)
    missed = [name for name, p in model.named_parameters() if not bool(torch.isfinite(p).all())]
    if missed:
        raise RuntimeError(f"{cls.__name__}.reset_parameters left {', '.join(missed)} uninitialised")
    return model


def build_model(
    name: str,
    num_channels: int,
    num_latents: int = 10,
    architecture: str = "conv",
    encoder_kernels: str = "dlib",
    reconstruction: str = "bernoulli",
    *,
    init_generator: torch.Generator | int,
    **model_params: Any,
) -> VAEModel:
    """Build the model ``name`` of :data:`MODELS` with TF-style initialisation drawn from ``init_generator``
    (a torch.Generator or an int seed; see :func:`instantiate`), on the CPU.

    ``model_params`` override the model's defaults; unknown names and values outside a parameter's type
    and range raise ValueError (see :func:`check_model_params`).
    """
    check_model_params(name, model_params, prefix="")
    return instantiate(
        MODELS[name].cls,
        init_generator,
        num_channels,
        num_latents,
        architecture=architecture,
        encoder_kernels=encoder_kernels,
        reconstruction=reconstruction,
        **{**MODEL_DEFAULTS[name], **model_params},
    )
