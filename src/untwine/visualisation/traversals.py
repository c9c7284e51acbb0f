"""Pictures of a trained model: reconstructions, samples from the prior and latent traversals.

The functions take any *model-like* object with

* ``encode(x)``: images ``(N, C, H, W)`` float32 in [0, 1] -> ``(mean, logvar)``, each ``(N, d)``;
* ``decode(z)``: codes ``(N, d)`` -> logits ``(N, C, H, W)``; images are ``sigmoid(logits)``

(every :mod:`untwine.models` model, or a small hand-built ``nn.Module`` in a test).  Images go in and
come out as numpy HWC float32 in [0, 1], the data layer's convention.

A *latent traversal* follows disentanglement_lib: starting from one image's code, one latent at a time
is **replaced** by each value of a fixed grid (``[-2, 2]`` by default) while the others stay at the
code; one row per latent.  Rows are labelled with the latent's KL to the prior averaged over a batch
of images, so collapsed latents (KL ~ 0, rows that do not change) are easy to spot.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from untwine.visualisation.annotate import MUTED, TEXT, add_header, add_row_labels
from untwine.visualisation.images import image_grid

# Below this average KL (nats) a latent is reported as inactive: it carries (almost) no information.
INACTIVE_KL = 0.01
DEFAULT_INTERVAL = (-2.0, 2.0)
DEFAULT_STEPS = 9


def model_device(model) -> torch.device:
    """The device of the model's first parameter or buffer; CPU for a model without either."""
    for tensor in (*model.parameters(), *model.buffers()) if isinstance(model, torch.nn.Module) else ():
        return tensor.device
    return torch.device("cpu")


def _model_dtype(model) -> torch.dtype:
    if isinstance(model, torch.nn.Module):
        for parameter in model.parameters():
            if parameter.is_floating_point():
                return parameter.dtype
    return torch.float32


def _check_images(images) -> np.ndarray:
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 4:
        raise ValueError(f"images must have shape (n, H, W, C), got {images.shape}")
    return images


@torch.inference_mode()
def encode(model, images, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Encoder means and log-variances of HWC ``images``: two float32 ``(n, d)`` arrays."""
    images = _check_images(images)
    device, dtype = model_device(model), _model_dtype(model)
    means, logvars = [], []
    for start in range(0, images.shape[0], batch_size):
        chunk = torch.from_numpy(
            np.ascontiguousarray(images[start : start + batch_size].transpose(0, 3, 1, 2))
        )
        mean, logvar = model.encode(chunk.to(device=device, dtype=dtype))
        means.append(mean.float().cpu().numpy())
        logvars.append(logvar.float().cpu().numpy())
    if not means:
        raise ValueError("encode needs at least one image")
    return np.concatenate(means), np.concatenate(logvars)


@torch.inference_mode()
def decode(model, codes, batch_size: int = 256) -> np.ndarray:
    """Images ``sigmoid(decode(codes))`` as float32 HWC ``(n, H, W, C)`` in [0, 1]."""
    codes = np.asarray(codes, dtype=np.float32)
    if codes.ndim != 2:
        raise ValueError(f"codes must have shape (n, d), got {codes.shape}")
    if codes.shape[0] == 0:
        raise ValueError("decode needs at least one code")
    device, dtype = model_device(model), _model_dtype(model)
    outputs = []
    for start in range(0, codes.shape[0], batch_size):
        chunk = torch.from_numpy(np.ascontiguousarray(codes[start : start + batch_size]))
        logits = model.decode(chunk.to(device=device, dtype=dtype))
        outputs.append(torch.sigmoid(logits.float()).cpu().numpy().transpose(0, 2, 3, 1))
    return np.ascontiguousarray(np.concatenate(outputs), dtype=np.float32)


def reconstruct(model, images, batch_size: int = 256) -> np.ndarray:
    """Decoded encoder means of ``images`` (deterministic reconstructions), float32 HWC in [0, 1]."""
    return decode(model, encode(model, images, batch_size)[0], batch_size)


def num_latents_of(model, num_latents: int | None = None) -> int:
    if num_latents is not None:
        return int(num_latents)
    value = getattr(model, "num_latents", None)
    if value is None:
        raise ValueError("the model has no num_latents attribute; pass num_latents explicitly")
    return int(value)


def sample_prior(
    model, num: int, seed: int = 0, num_latents: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``num`` codes drawn from N(0, I) with a generator seeded by ``seed`` and their decoded images."""
    if num < 1:
        raise ValueError(f"num must be >= 1, got {num}")
    generator = torch.Generator().manual_seed(int(seed))
    codes = torch.randn((int(num), num_latents_of(model, num_latents)), generator=generator).numpy()
    return codes, decode(model, codes)


def kl_per_latent(mean, logvar) -> np.ndarray:
    """KL(N(mean, exp(logvar)) || N(0, 1)) averaged over the batch, per latent: float64 ``(d,)``."""
    mean, logvar = np.asarray(mean, dtype=np.float64), np.asarray(logvar, dtype=np.float64)
    return (0.5 * (mean**2 + np.exp(logvar) - logvar - 1.0)).mean(axis=0)


def traversal_grid_values(
    interval: tuple[float, float] = DEFAULT_INTERVAL, steps: int = DEFAULT_STEPS
) -> np.ndarray:
    if steps < 2:
        raise ValueError(f"a traversal needs at least 2 steps, got {steps}")
    low, high = float(interval[0]), float(interval[1])
    if not low < high:
        raise ValueError(f"the traversal interval must have low < high, got {interval}")
    return np.linspace(low, high, int(steps))


def latent_traversal(
    model, code, values=None, dimensions: Sequence[int] | None = None, relative: bool = False
) -> np.ndarray:
    """Decoded traversals of ``code``: float32 ``(len(dimensions), len(values), H, W, C)``.

    Row ``i`` sets latent ``dimensions[i]`` to each of ``values`` (default: 9 values over [-2, 2]) and
    keeps the other latents at ``code``; with ``relative=True`` the values are added to the code's own
    value instead (a window around the image's code).
    """
    code = np.asarray(code, dtype=np.float32)
    if code.ndim != 1:
        raise ValueError(f"code must be one-dimensional, got shape {code.shape}")
    values = traversal_grid_values() if values is None else np.asarray(values, dtype=np.float32)
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"values must be a non-empty 1-D array, got shape {values.shape}")
    dimensions = list(range(code.shape[0])) if dimensions is None else [int(d) for d in dimensions]
    if any(not 0 <= d < code.shape[0] for d in dimensions):
        raise ValueError(f"dimensions must lie in 0..{code.shape[0] - 1}, got {dimensions}")
    codes = np.repeat(code[np.newaxis, np.newaxis, :], len(dimensions), axis=0).repeat(values.size, axis=1)
    for row, dimension in enumerate(dimensions):
        codes[row, :, dimension] = values + (code[dimension] if relative else 0.0)
    images = decode(model, codes.reshape(-1, code.shape[0]))
    return images.reshape(len(dimensions), values.size, *images.shape[1:])


def latent_labels(
    kl: Sequence[float] | None, dimensions: Sequence[int]
) -> tuple[list[str], list[tuple[int, int, int]]]:
    """``"z3  KL 0.412"`` per latent (``"z3  KL 0.000 (inactive)"`` below :data:`INACTIVE_KL`), and colours."""
    labels, colours = [], []
    for dimension in dimensions:
        if kl is None:
            labels.append(f"z{dimension}")
            colours.append(TEXT)
            continue
        value = float(kl[dimension])
        inactive = value < INACTIVE_KL
        labels.append(f"z{dimension}  KL {value:.3f}" + ("  (inactive)" if inactive else ""))
        colours.append(MUTED if inactive else TEXT)
    return labels, colours


def traversal_figure(
    traversal,
    values=None,
    kl: Sequence[float] | None = None,
    dimensions: Sequence[int] | None = None,
    pad: int = 2,
) -> np.ndarray:
    """A labelled uint8 RGB picture of a :func:`latent_traversal` result.

    One row per latent, labelled on the left with ``z<i>`` and its KL (``kl`` indexed by latent); the
    traversal values head the columns when ``values`` is given.
    """
    traversal = np.asarray(traversal)
    if traversal.ndim != 5:
        raise ValueError(f"a traversal must have shape (rows, steps, H, W, C), got {traversal.shape}")
    rows, steps, height, width = traversal.shape[:4]
    dimensions = list(range(rows)) if dimensions is None else list(dimensions)
    if len(dimensions) != rows:
        raise ValueError(f"{len(dimensions)} dimensions for {rows} traversal rows")
    grid = image_grid(traversal, pad=pad, pad_value=1.0)
    if values is not None:
        values = np.asarray(values, dtype=np.float64)
        if values.shape != (steps,):
            raise ValueError(f"{values.size} values for {steps} traversal steps")
        centres = [pad + c * (width + pad) + width / 2 for c in range(steps)]
        grid = add_header(grid, centres, [f"{v:+.2g}" for v in values])
        top = grid.shape[0] - (rows * (height + pad) + pad)
    else:
        top = 0
    labels, colours = latent_labels(kl, dimensions)
    centres = [top + pad + r * (height + pad) + height / 2 for r in range(rows)]
    return add_row_labels(grid, centres, labels, colours)


def traversal_image(
    model,
    images,
    base_index: int = 0,
    interval: tuple[float, float] = DEFAULT_INTERVAL,
    steps: int = DEFAULT_STEPS,
    relative: bool = False,
) -> np.ndarray:
    """Encode ``images``, traverse every latent around ``images[base_index]``'s mean code, label rows by KL.

    The KL per latent is averaged over all of ``images``.  Returns uint8 RGB ``(H, W, 3)``.
    """
    mean, logvar = encode(model, images)
    if not 0 <= base_index < mean.shape[0]:
        raise ValueError(f"base_index must lie in 0..{mean.shape[0] - 1}, got {base_index}")
    values = traversal_grid_values(interval, steps)
    traversal = latent_traversal(model, mean[base_index], values, relative=relative)
    # With relative=True the header shows offsets from the code, which is what the values are then.
    return traversal_figure(traversal, values, kl_per_latent(mean, logvar))


def reconstruction_pairs(images, reconstructions, columns: int = 8, pad: int = 2) -> np.ndarray:
    """Grid of (input | reconstruction) pairs, ``columns`` pairs per row: float HWC in [0, 1]."""
    images, reconstructions = (
        np.asarray(images, dtype=np.float32),
        np.asarray(reconstructions, dtype=np.float32),
    )
    if images.shape != reconstructions.shape or images.ndim != 4:
        raise ValueError(
            f"images {images.shape} and reconstructions {reconstructions.shape} must match (n, H, W, C)"
        )
    pairs = np.concatenate([images, reconstructions], axis=2)  # side by side, no gap inside a pair
    rows = [pairs[i : i + columns] for i in range(0, len(pairs), columns)]
    return image_grid(rows, pad=pad, pad_value=1.0)


def sample_grid(images, columns: int = 8, pad: int = 2) -> np.ndarray:
    """``images`` tiled ``columns`` per row: float HWC in [0, 1]."""
    images = np.asarray(images, dtype=np.float32)
    rows = [images[i : i + columns] for i in range(0, len(images), columns)]
    return image_grid(rows, pad=pad, pad_value=1.0)
