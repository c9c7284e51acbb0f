"""Text on pictures: row labels beside a grid, a header over its columns, captions under cells.

Everything works on uint8 RGB arrays ``(H, W, 3)`` and draws with Pillow's built-in font, so no font
file is needed.  Labels are drawn on white margins added around the picture, never over the images.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from untwine.visualisation.images import to_uint8

TEXT = (0, 0, 0)
MUTED = (150, 150, 150)
WHITE = 255


@lru_cache(maxsize=8)
def font(size: int = 11):
    """Pillow's default font at ``size`` pixels (a scalable one when FreeType is available)."""
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: one fixed bitmap size
        return ImageFont.load_default()


def text_size(text: str, size: int = 11) -> tuple[int, int]:
    """(width, height) in pixels of ``text`` drawn with :func:`font`."""
    left, top, right, bottom = font(size).getbbox(text)
    return int(np.ceil(right - min(left, 0))), int(np.ceil(bottom - min(top, 0)))


def as_rgb_uint8(image) -> np.ndarray:
    """Any HWC / HW image (float in [0, 1] or uint8) as uint8 ``(H, W, 3)``; grey is repeated to RGB."""
    array = to_uint8(image)
    if array.ndim == 2:
        array = array[..., np.newaxis]
    if array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    return np.ascontiguousarray(array)


def _draw(canvas: np.ndarray):
    from PIL import Image, ImageDraw

    image = Image.fromarray(canvas)
    return image, ImageDraw.Draw(image)


def add_row_labels(
    image,
    row_centres: Sequence[float],
    labels: Sequence[str],
    colours: Sequence[tuple[int, int, int]] | None = None,
    size: int = 11,
    margin: int = 6,
) -> np.ndarray:
    """Add a white column on the left of ``image`` with ``labels[i]`` centred at height ``row_centres[i]``."""
    if len(row_centres) != len(labels):
        raise ValueError(f"{len(labels)} labels for {len(row_centres)} rows")
    rgb = as_rgb_uint8(image)
    width = max((text_size(label, size)[0] for label in labels), default=0) + 2 * margin
    canvas = np.full((rgb.shape[0], width + rgb.shape[1], 3), WHITE, dtype=np.uint8)
    canvas[:, width:] = rgb
    picture, draw = _draw(canvas)
    for i, (centre, label) in enumerate(zip(row_centres, labels, strict=True)):
        colour = colours[i] if colours is not None else TEXT
        draw.text((width - margin, centre), label, fill=colour, font=font(size), anchor="rm")
    return np.asarray(picture)


def add_header(
    image, column_centres: Sequence[float], labels: Sequence[str], size: int = 10, height: int | None = None
) -> np.ndarray:
    """Add a white strip on top of ``image`` with ``labels[i]`` centred over x = ``column_centres[i]``."""
    if len(column_centres) != len(labels):
        raise ValueError(f"{len(labels)} labels for {len(column_centres)} columns")
    rgb = as_rgb_uint8(image)
    height = height if height is not None else max((text_size(t, size)[1] for t in labels), default=0) + 6
    canvas = np.full((height + rgb.shape[0], rgb.shape[1], 3), WHITE, dtype=np.uint8)
    canvas[height:] = rgb
    picture, draw = _draw(canvas)
    for centre, label in zip(column_centres, labels, strict=True):
        draw.text((centre, height / 2), label, fill=TEXT, font=font(size), anchor="mm")
    return np.asarray(picture)


def caption_strip(text: str, width: int, height: int = 14, size: int = 10) -> np.ndarray:
    """A white ``(height, width, 3)`` uint8 strip with ``text`` centred in it."""
    canvas = np.full((height, width, 3), WHITE, dtype=np.uint8)
    picture, draw = _draw(canvas)
    draw.text((width / 2, height / 2), text, fill=TEXT, font=font(size), anchor="mm")
    return np.asarray(picture)
