"""The training stream: an infinite i.i.d. sequence of batches, factors drawn uniformly as in the study.

Batches are ``(factors int64 (B, K), images float32 torch tensor (B, C, H, W))`` -- NCHW for PyTorch.
The stream's whole state is the state of its numpy Generator, so ``state_dict``/``load_state_dict``
resume it exactly (bit-identical batches after a restart).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from untwine.data.base import GroundTruthDataset


class BatchStream:
    def __init__(self, dataset: GroundTruthDataset, batch_size: int, seed: int):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.rng = np.random.default_rng(self.seed)
        self.batches_drawn = 0

    def next_numpy(self) -> tuple[np.ndarray, np.ndarray]:
        factors, images = self.dataset.sample(self.batch_size, self.rng)
        self.batches_drawn += 1
        return factors, images

    def __iter__(self) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
        return self

    def __next__(self) -> tuple[np.ndarray, torch.Tensor]:
        factors, images = self.next_numpy()
        return factors, to_torch_images(images)

    def state_dict(self) -> dict[str, Any]:
        return {"seed": self.seed, "batches_drawn": self.batches_drawn, "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if int(state["seed"]) != self.seed:
            raise ValueError(
                f"stream state was saved with seed {state['seed']}, this stream has seed {self.seed}"
            )
        self.rng.bit_generator.state = state["rng"]
        self.batches_drawn = int(state["batches_drawn"])


def to_torch_images(images: np.ndarray) -> torch.Tensor:
    """HWC float32 numpy batch -> NCHW float32 torch tensor (contiguous)."""
    return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
