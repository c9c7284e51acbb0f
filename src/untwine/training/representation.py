"""Representations of a trained run: callables from image batches to codes, and a TorchScript export.

A representation function takes a float32 numpy batch ``(n, H, W, C)`` in [0, 1] -- the data layer's
HWC convention -- and returns float32 codes ``(n, d)``.  This is all the metrics need, so any model
(ours, a TorchScript file, a user's own) can be scored the same way.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path

import numpy as np
import torch

from untwine.data import get_spec
from untwine.training.checkpoint import CHECKPOINT_NAME, load_checkpoint
from untwine.training.config import TrainConfig
from untwine.training.loop import build_run_model, load_run_config, pick_device
from untwine.utils.io import atomic_write_bytes
from untwine.utils.rng import RandomLike, as_generator

REPRESENTATIONS = ("mean", "sampled")


def load_trained_model(run_dir: str | Path, device: str = "auto") -> tuple[TrainConfig, torch.nn.Module]:
    """The run's config and its model with the last checkpoint's weights, in eval mode."""
    run_dir = Path(run_dir)
    config = load_run_config(run_dir)
    torch_device = pick_device(device)
    model = build_run_model(config, get_spec(config.dataset).num_channels, torch_device)
    state = load_checkpoint(run_dir / CHECKPOINT_NAME, map_location=torch_device)
    model.load_state_dict(state["model"])
    model.eval()
    return config, model


class Encoder:
    """Batched inference with a model's encoder: ``mean_logvar(images) -> (mean, logvar)`` as numpy."""

    def __init__(self, model: torch.nn.Module, batch_size: int = 256):
        self.model = model
        self.batch_size = int(batch_size)
        self.device = next(model.parameters()).device
        self.precision = "fp32"  # "bf16": bfloat16 autocast (see reduced_precision)
        # bfloat16 convolutions ran 1.9x faster per image at batch 64 than at 256 on this project's CPUs
        # (cache effects; fp32 is flat from 64 to 1024), so reduced precision encodes in batches of 64.
        self.bf16_batch_size = min(64, self.batch_size)
        self.channels_last = next(model.parameters()).dim() == 4 and any(
            p.is_contiguous(memory_format=torch.channels_last) and p.dim() == 4 for p in model.parameters()
        )

    @torch.inference_mode()
    def mean_logvar(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        images = np.asarray(images, dtype=np.float32)
        if images.ndim != 4:
            raise ValueError(f"images must have shape (n, H, W, C), got {images.shape}")
        means, logvars = [], []
        batch_size = self.bf16_batch_size if self.precision == "bf16" else self.batch_size
        for start in range(0, images.shape[0], batch_size):
            chunk = torch.from_numpy(
                np.ascontiguousarray(images[start : start + batch_size].transpose(0, 3, 1, 2))
            )
            chunk = chunk.to(self.device)
            if self.channels_last:
                chunk = chunk.contiguous(memory_format=torch.channels_last)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
                mean, logvar = self.model.encode(chunk)
            means.append(mean.float().cpu().numpy())
            logvars.append(logvar.float().cpu().numpy())
        if not means:
            d = self.model.num_latents
            return np.zeros((0, d), np.float32), np.zeros((0, d), np.float32)
        return np.concatenate(means), np.concatenate(logvars)

    def bf16_is_fast(self) -> bool:
        """Whether this device runs bfloat16 convolutions natively (CUDA with bf16, CPUs with AVX512-BF16/AMX)."""
        if self.device.type == "cuda":
            return torch.cuda.is_bf16_supported()
        return (
            self.device.type == "cpu"
            and bool(torch.backends.mkldnn.is_available())
            and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        )

    @contextlib.contextmanager
    def reduced_precision(self):
        """Encode in bfloat16 autocast inside the block where the device runs it natively (2-3x faster
        on this project's CPUs); the metrics' fast mode uses this.  Codes change in the third digit."""
        before = self.precision
        self.precision = "bf16" if self.bf16_is_fast() else before
        try:
            yield self.precision
        finally:
            self.precision = before


class MeanRepresentation:
    """Codes = the encoder mean (deterministic)."""

    kind = "mean"
    deterministic = True  # the encoder runs in eval mode: same images, same codes (cacheable)

    def __init__(self, encoder: Encoder):
        self.encoder = encoder

    def __call__(self, images: np.ndarray) -> np.ndarray:
        return self.encoder.mean_logvar(images)[0]


class SampledRepresentation:
    """Codes = a sample mean + exp(logvar / 2) * eps, eps from the numpy generator ``rng``.

    ``from_mean_logvar`` lets callers that cache (mean, logvar) per distinct image draw fresh noise
    without encoding again.
    """

    kind = "sampled"
    # The metrics use encoder.mean_logvar (deterministic, cacheable) and add the noise themselves.
    deterministic = True

    def __init__(self, encoder: Encoder, rng: RandomLike):
        self.encoder = encoder
        self.rng = as_generator(rng)

    def from_mean_logvar(self, mean: np.ndarray, logvar: np.ndarray) -> np.ndarray:
        noise = self.rng.standard_normal(mean.shape).astype(np.float32)
        return (mean + np.exp(logvar / 2) * noise).astype(np.float32)

    def __call__(self, images: np.ndarray) -> np.ndarray:
        return self.from_mean_logvar(*self.encoder.mean_logvar(images))


def representation_function(
    run_dir: str | Path, kind: str = "mean", seed: int = 0, device: str = "auto", batch_size: int = 256
):
    """``kind="mean"`` or ``"sampled"`` representation of a trained run (``seed`` drives the sampling noise)."""
    if kind not in REPRESENTATIONS:
        raise ValueError(f"representation must be one of {REPRESENTATIONS}, got {kind!r}")
    _, model = load_trained_model(run_dir, device)
    encoder = Encoder(model, batch_size)
    return MeanRepresentation(encoder) if kind == "mean" else SampledRepresentation(encoder, seed)


@contextlib.contextmanager
def _torchscript_deprecation_ignored():
    """Ignore torch's "`torch.jit.<name>` is deprecated" DeprecationWarnings (torch >= 2.9) and nothing else.

    TorchScript is what the field's tooling loads, and torch.export's files need torch to load too, so
    the export stays TorchScript and this notice is not for our users.  Any other warning -- a
    TracerWarning saying the trace may not generalise, say -- bears on the exported file and is shown.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=r"`torch\.jit\.\w+` is deprecated", category=DeprecationWarning
        )
        yield


class _MeanEncoderModule(torch.nn.Module):
    """NHWC float images in [0, 1] -> mean codes: the exported module's whole contract."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.encode(images.permute(0, 3, 1, 2).contiguous())[0]


def export_torchscript(run_dir: str | Path, path: str | Path) -> Path:
    """Write the run's mean encoder as TorchScript (input NHWC float32 in [0, 1], output codes).

    The file loads with plain ``torch.jit.load`` -- no untwine classes needed to score the model.
    """
    config, model = load_trained_model(run_dir, "cpu")
    model = model.to(memory_format=torch.contiguous_format)
    shape = (2, 64, 64, get_spec(config.dataset).num_channels)
    module = _MeanEncoderModule(model).eval()
    with _torchscript_deprecation_ignored(), torch.no_grad():
        traced = torch.jit.trace(module, torch.rand(shape, generator=torch.Generator().manual_seed(0)))
    path = Path(path)
    buffer = io.BytesIO()
    with _torchscript_deprecation_ignored():
        torch.jit.save(traced, buffer)
    atomic_write_bytes(path, buffer.getvalue())
    return path


class TorchScriptRepresentation:
    """A representation function around a TorchScript file taking NHWC images in [0, 1]."""

    kind = "mean"

    def __init__(self, path: str | Path, batch_size: int = 256):
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"no TorchScript file at {path}")
        with _torchscript_deprecation_ignored():
            self.module = torch.jit.load(str(path), map_location="cpu").eval()
        self.batch_size = batch_size

    @torch.inference_mode()
    def __call__(self, images: np.ndarray) -> np.ndarray:
        images = np.asarray(images, dtype=np.float32)
        outputs = [
            self.module(torch.from_numpy(np.ascontiguousarray(images[i : i + self.batch_size]))).numpy()
            for i in range(0, images.shape[0], self.batch_size)
        ]
        return np.concatenate(outputs).astype(np.float32)
