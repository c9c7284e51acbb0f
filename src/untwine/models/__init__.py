"""Networks and objectives of the unsupervised disentanglement study (see docs/models.md).

>>> from untwine.models import build_model, MODEL_DEFAULTS
>>> model = build_model("beta_vae", num_channels=1, beta=4.0)
>>> out = model.compute_loss(images, step, generator)   # out.loss, out.terms, out.discriminator_loss
"""

from untwine.models import losses, networks
from untwine.models.objectives import (
    ADAM_DEFAULTS,
    ARCHITECTURES,
    DIPVAE,
    DISCRIMINATOR_ADAM_DEFAULTS,
    MODEL_CLASSES,
    MODEL_DEFAULTS,
    TC_ESTIMATORS,
    AnnealedVAE,
    BetaTCVAE,
    BetaVAE,
    FactorVAE,
    LossOutput,
    VAEModel,
    build_model,
)

__all__ = [
    "ADAM_DEFAULTS",
    "ARCHITECTURES",
    "DISCRIMINATOR_ADAM_DEFAULTS",
    "MODEL_CLASSES",
    "MODEL_DEFAULTS",
    "TC_ESTIMATORS",
    "AnnealedVAE",
    "BetaTCVAE",
    "BetaVAE",
    "DIPVAE",
    "FactorVAE",
    "LossOutput",
    "VAEModel",
    "build_model",
    "losses",
    "networks",
]
