"""Animated latent cycles (GIF), the five kinds of disentanglement_lib's ``visualize_model``.

Each animation starts from one image's mean code.  Every frame is a grid with one cell per latent; in
the cell of latent ``j`` only that latent moves, along a *cycle*: from the code's value up to the top
of a range, down to the bottom, and back to the start, in ``num_frames`` frames (the animation loops
forever without a jump).  The five kinds differ in the range and in the path through it:

``std_gaussian``     quantiles of N(0, 1): the cycle is linear in probability (0.001 .. 0.999), so
                     frames crowd where the prior has mass;
``fitted_gaussian``  the same through quantiles of N(loc_j, scale_j) fitted to the batch's codes
                     (loc = mean of the means, scale^2 = mean posterior variance + variance of the means);
``fixed_interval``   linear in [-2, 2];
``conf_interval``    linear in loc_j +- 2 scale_j of the fitted Gaussian;
``minmax_interval``  linear between the smallest and largest mean of latent j in the batch.

Unlike disentanglement_lib, a start value outside the range is clipped into it (the original
reflects it wrongly), and an empty range (all means equal) keeps the latent still.

GIFs are written from RGB frames mapped onto one adaptive 256-colour palette fitted to all frames, with
no dithering, so colour data stays colour and grey data (1 channel, shown as grey RGB) stays grey.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy.special import ndtr, ndtri

from untwine.utils.io import atomic_write_bytes
from untwine.visualisation.annotate import as_rgb_uint8, caption_strip
from untwine.visualisation.images import image_grid
from untwine.visualisation.traversals import decode

CYCLES = ("std_gaussian", "fitted_gaussian", "fixed_interval", "conf_interval", "minmax_interval")
FIXED_INTERVAL = (-2.0, 2.0)
_PROBABILITY_RANGE = (0.001, 0.999)


def triangle_wave(start: float, num_frames: int) -> np.ndarray:
    """Positions in [0, 1] for one cycle starting at ``start``: up to 1, down to 0, back towards ``start``.

    ``num_frames`` equally spaced phases over a period of 2 (the last frame stops one step short of the
    start, so a looping animation is smooth).
    """
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    start = float(np.clip(start, 0.0, 1.0))
    phase = np.mod(np.linspace(start, start + 2.0, num=int(num_frames), endpoint=False), 2.0)
    return np.where(phase > 1.0, 2.0 - phase, phase)


def cycle_interval(start: float, num_frames: int, low: float, high: float) -> np.ndarray:
    """A linear cycle through ``[low, high]`` starting at ``start`` (clipped into the interval)."""
    low, high = float(low), float(high)
    if not high > low:  # an empty range: nothing to move through
        return np.full(int(num_frames), float(np.clip(start, min(low, high), max(low, high))))
    return low + triangle_wave((float(start) - low) / (high - low), num_frames) * (high - low)


def cycle_gaussian(start: float, num_frames: int, loc: float = 0.0, scale: float = 1.0) -> np.ndarray:
    """A cycle through quantiles of N(loc, scale^2), linear in probability, starting at ``start``."""
    if not scale > 0:
        return np.full(int(num_frames), float(loc))
    low, high = _PROBABILITY_RANGE
    probability = float(ndtr((float(start) - loc) / scale))
    grid = np.clip(triangle_wave(probability, num_frames), low, high)
    return loc + scale * ndtri(grid)


def fitted_gaussian(means, logvars) -> tuple[np.ndarray, np.ndarray]:
    """Per latent (loc, scale) of the aggregate posterior: mean of the means, and
    sqrt(mean posterior variance + variance of the means)."""
    means, logvars = np.asarray(means, dtype=np.float64), np.asarray(logvars, dtype=np.float64)
    loc = means.mean(axis=0)
    scale = np.sqrt(np.exp(logvars).mean(axis=0) + means.var(axis=0))
    return loc, scale


def cycle_values(kind: str, base_code, means, logvars, num_frames: int = 20) -> np.ndarray:
    """Values of every latent over the frames of a ``kind`` cycle around ``base_code``: ``(num_frames, d)``.

    ``means``/``logvars`` (``(n, d)``, the batch the fitted ranges come from) are only read by the
    kinds that need them.
    """
    if kind not in CYCLES:
        raise ValueError(f"unknown cycle {kind!r}; valid cycles: {', '.join(CYCLES)}")
    base_code = np.asarray(base_code, dtype=np.float64)
    if base_code.ndim != 1:
        raise ValueError(f"base_code must be one-dimensional, got shape {base_code.shape}")
    if kind in ("fitted_gaussian", "conf_interval"):
        loc, scale = fitted_gaussian(means, logvars)
    if kind == "minmax_interval":
        means = np.asarray(means, dtype=np.float64)
        low, high = means.min(axis=0), means.max(axis=0)
    columns = []
    for j, start in enumerate(base_code):
        if kind == "std_gaussian":
            column = cycle_gaussian(start, num_frames)
        elif kind == "fitted_gaussian":
            column = cycle_gaussian(start, num_frames, loc[j], scale[j])
        elif kind == "fixed_interval":
            column = cycle_interval(start, num_frames, *FIXED_INTERVAL)
        elif kind == "conf_interval":
            column = cycle_interval(start, num_frames, loc[j] - 2 * scale[j], loc[j] + 2 * scale[j])
        else:
            column = cycle_interval(start, num_frames, low[j], high[j])
        columns.append(column)
    return np.stack(columns, axis=1).astype(np.float32)


def latent_cycle_frames(model, base_code, values) -> np.ndarray:
    """Decoded frames: float32 ``(num_frames, d, H, W, C)``; cell ``[f, j]`` is ``base_code`` with latent
    ``j`` set to ``values[f, j]``."""
    base_code = np.asarray(base_code, dtype=np.float32)
    values = np.asarray(values, dtype=np.float32)
    num_frames, d = values.shape
    if d != base_code.shape[0]:
        raise ValueError(f"values have {d} latents, base_code has {base_code.shape[0]}")
    codes = np.repeat(base_code[np.newaxis, np.newaxis, :], d, axis=0).repeat(num_frames, axis=1)  # (d, F, d)
    for j in range(d):
        codes[j, :, j] = values[:, j]
    images = decode(model, codes.reshape(d * num_frames, d))
    return images.reshape(d, num_frames, *images.shape[1:]).swapaxes(0, 1)


def grid_shape(num_cells: int, max_ratio: int = 4) -> tuple[int, int]:
    """(rows, columns) for ``num_cells`` cells: fewest empty cells, then most square, columns <= ratio*rows."""
    if num_cells < 1:
        raise ValueError(f"num_cells must be >= 1, got {num_cells}")
    best = None
    for rows in range(1, num_cells + 1):
        columns = -(-num_cells // rows)
        if columns > max_ratio * rows or rows > columns:
            continue
        key = (rows * columns - num_cells, columns - rows)
        if best is None or key < best[0]:
            best = (key, (rows, columns))
    return best[1] if best is not None else (1, num_cells)


def frame_grids(frames, labels: Sequence[str] | None = None, pad: int = 2) -> np.ndarray:
    """Tile each frame's cells into one uint8 RGB picture (a caption under each cell): ``(F, H, W, 3)``."""
    frames = np.asarray(frames)
    if frames.ndim != 5:
        raise ValueError(f"frames must have shape (F, cells, H, W, C), got {frames.shape}")
    num_frames, cells, height, width = frames.shape[:4]
    labels = [f"z{j}" for j in range(cells)] if labels is None else list(labels)
    if len(labels) != cells:
        raise ValueError(f"{len(labels)} labels for {cells} cells")
    strips = [caption_strip(label, width) for label in labels]
    rows, columns = grid_shape(cells)
    out = []
    for f in range(num_frames):
        captioned = [np.concatenate([as_rgb_uint8(frames[f, j]), strips[j]], axis=0) for j in range(cells)]
        grid = image_grid([captioned[r * columns : (r + 1) * columns] for r in range(rows)], pad=pad)
        out.append(as_rgb_uint8(grid))
    return np.stack(out)


def _palette_frames(frames: list[np.ndarray]):
    """Mode-"P" Pillow images of uint8 RGB ``frames`` sharing one palette (exact when <= 256 colours)."""
    from PIL import Image

    stack = np.stack(frames)
    packed = (stack[..., 0].astype(np.uint32) << 16) | (stack[..., 1].astype(np.uint32) << 8) | stack[..., 2]
    colours = np.unique(packed)
    if colours.size <= 256:  # the palette is the colours themselves: lossless
        indices = np.searchsorted(colours, packed).astype(np.uint8)
        palette = np.stack([(colours >> 16) & 255, (colours >> 8) & 255, colours & 255], axis=1).astype(
            np.uint8
        )
        images = []
        for frame_indices in indices:
            image = Image.fromarray(frame_indices, mode="P")
            image.putpalette(palette.tobytes(), rawmode="RGB")
            images.append(image)
        return images
    montage = Image.fromarray(np.ascontiguousarray(stack.reshape(-1, *stack.shape[2:])), mode="RGB")
    palette_image = montage.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    return [
        Image.fromarray(frame, mode="RGB").quantize(palette=palette_image, dither=Image.Dither.NONE)
        for frame in frames
    ]


def gif_bytes(frames, fps: float = 10.0) -> bytes:
    """An animated GIF (looping forever) of HWC frames, float in [0, 1] or uint8, 1 or 3 channels.

    Frames are converted to RGB (grey repeated to three channels) and mapped, without dithering, onto
    one palette shared by all frames: their own colours when there are at most 256 (lossless), else an
    adaptive 256-colour palette fitted to all frames together (median cut).  Colour stays colour, grey
    stays grey, and pixels that do not change between frames keep exactly the same colour (per-frame
    palettes would make still regions flicker).  Pillow merges consecutive identical frames into one
    longer frame, so a still animation has fewer frames but the same duration.
    """

    frames = [as_rgb_uint8(frame) for frame in frames]
    if not frames:
        raise ValueError("a GIF needs at least one frame")
    if not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    if any(frame.shape != frames[0].shape for frame in frames):
        raise ValueError(f"all frames must have the same size, got {sorted({f.shape for f in frames})}")
    palette_frames = _palette_frames(frames)
    buffer = io.BytesIO()
    # GIF durations are in hundredths of a second.
    duration = max(int(round(100.0 / fps)), 2) * 10
    palette_frames[0].save(
        buffer,
        format="GIF",
        save_all=True,
        append_images=palette_frames[1:],
        duration=duration,
        loop=0,
        disposal=1,
        optimize=False,
    )
    return buffer.getvalue()


def save_gif(frames, path: str | os.PathLike, fps: float = 10.0) -> Path:
    """Write :func:`gif_bytes` of ``frames`` to ``path`` atomically; return the path."""
    path = Path(path)
    atomic_write_bytes(path, gif_bytes(frames, fps))
    return path


def latent_cycle_gif(model, kind: str, base_code, means, logvars, num_frames: int = 20) -> np.ndarray:
    """The uint8 RGB frames ``(num_frames, H, W, 3)`` of one ``kind`` animation around ``base_code``."""
    values = cycle_values(kind, base_code, means, logvars, num_frames)
    return frame_grids(latent_cycle_frames(model, base_code, values))


def write_latent_cycles(
    model,
    means,
    logvars,
    out_dir: str | os.PathLike,
    num_animations: int = 3,
    num_frames: int = 20,
    fps: float = 10.0,
    kinds: Sequence[str] = CYCLES,
) -> dict[str, list[Path]]:
    """Write ``<kind>_cycle<i>.gif`` for the first ``num_animations`` codes in ``means`` and every kind.

    ``means``/``logvars`` are the encoded batch: its first rows are the animations' starting codes and
    all of it fits the ranges.  Returns ``{kind: [paths]}``.
    """
    means, logvars = np.asarray(means), np.asarray(logvars)
    if means.ndim != 2 or means.shape != logvars.shape:
        raise ValueError(f"means {means.shape} and logvars {logvars.shape} must both be (n, d)")
    out_dir = Path(out_dir)
    written: dict[str, list[Path]] = {}
    for kind in kinds:
        written[kind] = [
            save_gif(
                latent_cycle_gif(model, kind, means[i], means, logvars, num_frames),
                out_dir / f"{kind}_cycle{i}.gif",
                fps,
            )
            for i in range(min(num_animations, means.shape[0]))
        ]
    return written
