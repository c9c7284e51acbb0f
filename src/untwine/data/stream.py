"""The training streams: infinite i.i.d. sequences of batches, factors drawn uniformly as in the study.

Each batch is a :class:`Batch` -- images as a float32 torch tensor (B, C, H, W) (NCHW for PyTorch) and
their factors, int64 numpy (B, K) -- the one record every model's ``compute_loss`` takes.
:class:`BatchStream` hands out single images; :class:`PairStream` hands out pairs that differ in a few
factors (:mod:`untwine.data.pairs`), the second image of each pair in ``Batch.second_images``, for the
weakly-supervised models.  A stream's whole state is the state of its numpy Generator, so
``state_dict``/``load_state_dict`` resume it exactly (bit-identical batches after a restart).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from untwine.data.base import GroundTruthDataset
from untwine.data.pairs import check_k, sample_pairs

__all__ = ["Batch", "BatchStream", "PairStream", "to_torch_images"]


@dataclass(frozen=True)
class Batch:
    """One training or evaluation batch, what every model's ``compute_loss(batch, step, generator)`` takes.

    ``images``: float32 tensor (B, C, H, W) in [0, 1].  ``factors``: the ground-truth factor indices,
    int64 (B, K), or None where they are unknown (the unsupervised models never read them; ``ss_vae``
    reads its label column only to log the accuracy of q(y|x)).

    Pairs (weakly-supervised models): ``second_images`` (B, C, H, W), the other image of each pair;
    ``second_factors`` its factors; ``changed_factor`` int64 (B,), the index of the last factor
    resampled for each pair (what the ``labels`` aggregation reads).  None for single-image batches.
    """

    images: torch.Tensor
    factors: np.ndarray | None = None
    second_images: torch.Tensor | None = None
    second_factors: np.ndarray | None = None
    changed_factor: np.ndarray | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.images, torch.Tensor) or self.images.dim() != 4:
            shape = tuple(self.images.shape) if hasattr(self.images, "shape") else type(self.images).__name__
            raise ValueError(f"Batch.images must be a torch tensor of shape (B, C, H, W), got {shape}")
        if self.factors is not None and np.shape(self.factors)[:1] != (self.images.shape[0],):
            raise ValueError(
                f"factors has {np.shape(self.factors)[0] if np.ndim(self.factors) else 0} rows but images "
                f"has {self.images.shape[0]}; give one row of factors per image (or factors=None)"
            )
        if self.second_images is not None and (
            not isinstance(self.second_images, torch.Tensor) or self.second_images.shape != self.images.shape
        ):
            shape = tuple(getattr(self.second_images, "shape", ()))
            raise ValueError(
                f"Batch.second_images must be a tensor of the images' shape {tuple(self.images.shape)}, got {shape}"
            )
        if self.changed_factor is not None and np.shape(self.changed_factor) != (self.images.shape[0],):
            raise ValueError(
                f"Batch.changed_factor must hold one factor index per pair, shape ({self.images.shape[0]},), "
                f"got {np.shape(self.changed_factor)}"
            )

    @property
    def is_pairs(self) -> bool:
        return self.second_images is not None

    @classmethod
    def from_numpy(cls, factors: np.ndarray | None, images: np.ndarray) -> Batch:
        """From the data layer's ``(factors, HWC float32 images)``."""
        return cls(to_torch_images(images), factors)

    @staticmethod
    def checked(batch: Any) -> Batch:
        """``batch`` itself, or a TypeError saying how to make one (``compute_loss`` calls this first)."""
        if not isinstance(batch, Batch):
            raise TypeError(
                f"compute_loss takes an untwine.data.Batch, got {type(batch).__name__}; "
                "wrap image tensors as Batch(images) or Batch(images, factors)"
            )
        return batch

    def to(self, device: torch.device | str, memory_format: torch.memory_format | None = None) -> Batch:
        """The same batch with its images on ``device`` (and in ``memory_format`` when given)."""

        def move(images: torch.Tensor | None) -> torch.Tensor | None:
            if images is None:
                return None
            images = images.to(device, non_blocking=True)
            return images if memory_format is None else images.contiguous(memory_format=memory_format)

        return Batch(
            move(self.images),
            self.factors,
            move(self.second_images),
            self.second_factors,
            self.changed_factor,
        )


class BatchStream:
    """Infinite i.i.d. :class:`Batch` es of ``batch_size`` from ``dataset``, drawn with ``numpy.random.default_rng(seed)``."""

    def __init__(self, dataset: GroundTruthDataset, batch_size: int, seed: int):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.rng = np.random.default_rng(self.seed)
        self.batches_drawn = 0

    def __iter__(self) -> Iterator[Batch]:
        return self

    def __next__(self) -> Batch:
        factors, images = self.dataset.sample(self.batch_size, self.rng)
        self.batches_drawn += 1
        return Batch.from_numpy(factors, images)

    def state_dict(self) -> dict[str, Any]:
        return {"seed": self.seed, "batches_drawn": self.batches_drawn, "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if int(state["seed"]) != self.seed:
            raise ValueError(
                f"stream state was saved with seed {state['seed']}, this stream has seed {self.seed}"
            )
        self.rng.bit_generator.state = state["rng"]
        self.batches_drawn = int(state["batches_drawn"])


class PairStream(BatchStream):
    """Infinite i.i.d. batches of ``batch_size`` *pairs* from ``dataset``: the second image of each pair
    keeps the first one's factors except 1 or ``k`` resampled ones (``k=-1``: "rnd"), by
    disentanglement_lib's rule (:mod:`untwine.data.pairs`), every draw from ``default_rng(seed)``."""

    def __init__(self, dataset: GroundTruthDataset, batch_size: int, seed: int, k: int):
        super().__init__(dataset, batch_size, seed)
        self.k = check_k(k, dataset.num_factors)

    def __next__(self) -> Batch:
        pairs, images = sample_pairs(self.dataset, self.batch_size, self.k, self.rng)
        self.batches_drawn += 1
        images = to_torch_images(images)  # one NCHW conversion for both halves; the halves are views
        return Batch(
            images[: self.batch_size],
            pairs.first,
            second_images=images[self.batch_size :],
            second_factors=pairs.second,
            changed_factor=pairs.changed,
        )


def to_torch_images(images: np.ndarray) -> torch.Tensor:
    """HWC float numpy batch -> NCHW float32 torch tensor (contiguous)."""
    return torch.from_numpy(np.ascontiguousarray(np.asarray(images, dtype=np.float32).transpose(0, 3, 1, 2)))
