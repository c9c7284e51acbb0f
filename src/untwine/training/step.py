"""One training update, the same for every model: what ``train()`` runs and what the throughput
benchmark times.

    out = model.compute_loss(batch, step, generator)       # under bf16 autocast when asked
    stop if out.loss is not finite (before any parameter moves)
    zero every optimizer's gradients; out.loss.backward()
    FactorVAE: out.discriminator_loss.backward()             # reaches the discriminator only
    step every optimizer of model.make_optimizers(learning_rate)
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import torch

from untwine.data.stream import Batch
from untwine.models import LossOutput, VAEModel

__all__ = ["TrainingDivergedError", "training_step"]


class TrainingDivergedError(RuntimeError):
    """The loss became NaN or infinite; the parameters were not updated."""


def _first_nonfinite_term(terms: dict[str, torch.Tensor]) -> str:
    for key, value in terms.items():
        if isinstance(value, torch.Tensor) and not bool(torch.isfinite(value).all()):
            return f"'{key}' = {value.detach().flatten()[:4].tolist()}"
    return "the total loss"


def training_step(
    model: VAEModel,
    batch: Batch,
    step: int,
    generator: torch.Generator,
    optimizers: Sequence[torch.optim.Optimizer],
    bf16: bool = False,
) -> LossOutput:
    """compute_loss, backward of each loss into its own parameters, then every optimizer steps.

    ``step``: updates done before this one.  ``generator``: the run's noise generator.  ``bf16``: the
    forward pass under bfloat16 autocast (the losses themselves are computed in float32).  Raises
    :class:`TrainingDivergedError` naming the first non-finite term before any parameter changes.
    """
    autocast = (
        torch.autocast(device_type=batch.images.device.type, dtype=torch.bfloat16)
        if bf16
        else contextlib.nullcontext()
    )
    with autocast:
        out = model.compute_loss(batch, step, generator)
    if not torch.isfinite(out.loss):
        raise TrainingDivergedError(f"non-finite loss at step {step} ({_first_nonfinite_term(out.terms)})")
    for optimizer in optimizers:
        optimizer.zero_grad(set_to_none=True)
    out.loss.backward()
    if out.discriminator_loss is not None:
        # FactorVAE: the VAE loss reads the discriminator with detached weights, so the discriminator's
        # gradients come from its own loss only (as in disentanglement_lib).
        out.discriminator_loss.backward()
    for optimizer in optimizers:
        optimizer.step()
    return out
