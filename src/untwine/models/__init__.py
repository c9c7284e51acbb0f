"""Networks and objectives of the disentanglement models (see docs/models.md).

>>> from untwine.data import Batch
>>> from untwine.models import build_model, MODELS, MODEL_DEFAULTS
>>> model = build_model("beta_vae", num_channels=1, init_generator=0, beta=4.0)
>>> out = model.compute_loss(Batch(images), step, generator)   # out.loss, out.terms, out.discriminator_loss

Modules: ``networks`` and ``losses`` (building blocks), ``objectives`` (the base model and the six
unsupervised objectives), ``ss_vae`` (Siddharth et al. 2017), ``few_label`` (Locatello et al. 2020's S^2
models), ``parameters`` (typed model parameters), ``registry`` (the model table, ``check_model_params``
and ``build_model``).
"""

from untwine.models import losses, networks
from untwine.models.objectives import (
    ADAM_DEFAULTS,
    ARCHITECTURES,
    DIPVAE,
    DISCRIMINATOR_ADAM_DEFAULTS,
    TC_ESTIMATORS,
    AnnealedVAE,
    BetaTCVAE,
    BetaVAE,
    FactorVAE,
    LossOutput,
    VAEModel,
)
from untwine.models.parameters import Param
from untwine.models.registry import (
    MODEL_DEFAULTS,
    MODELS,
    ModelEntry,
    build_model,
    check_model_params,
    instantiate,
)

__all__ = [
    "ADAM_DEFAULTS",
    "ARCHITECTURES",
    "DISCRIMINATOR_ADAM_DEFAULTS",
    "MODELS",
    "MODEL_DEFAULTS",
    "TC_ESTIMATORS",
    "AnnealedVAE",
    "BetaTCVAE",
    "BetaVAE",
    "DIPVAE",
    "FactorVAE",
    "LossOutput",
    "ModelEntry",
    "Param",
    "VAEModel",
    "build_model",
    "check_model_params",
    "instantiate",
    "losses",
    "networks",
]
