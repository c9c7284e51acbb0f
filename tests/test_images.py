"""Image grids, uint8 conversion, PNG output and the dataset overview picture."""

import numpy as np
import pytest
from PIL import Image

from untwine.data.base import FactorSpace, GroundTruthDataset
from untwine.data.procedural_dsprites import load_procedural_dsprites
from untwine.visualisation.images import dataset_overview, image_grid, save_png, to_uint8, traversal_values


def test_grid_places_every_image_between_pads():
    images = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5, 1) / 200
    grid = image_grid(images, pad=2, pad_value=0.5)
    assert grid.shape == (2 * 4 + 3 * 2, 3 * 5 + 4 * 2, 1) and grid.dtype == np.float32
    for r in range(2):
        for c in range(3):
            top, left = 2 + r * 6, 2 + c * 7
            np.testing.assert_array_equal(grid[top : top + 4, left : left + 5], images[r, c])
    # Everything outside the cells is padding.
    cells = np.zeros(grid.shape[:2], dtype=bool)
    for r in range(2):
        for c in range(3):
            cells[2 + r * 6 : 6 + r * 6, 2 + c * 7 : 7 + c * 7] = True
    assert (grid[~cells] == 0.5).all()
    assert image_grid(images, pad=0).shape == (8, 15, 1)


def test_grid_rows_of_different_lengths_and_uint8_input():
    short = [np.full((3, 3), 255, dtype=np.uint8)]
    long = [np.zeros((3, 3, 1), dtype=np.uint8)] * 3
    grid = image_grid([short, long], pad=1, pad_value=0.25)
    assert grid.shape == (2 * 3 + 3, 3 * 3 + 4, 1)
    assert (grid[1:4, 1:4] == 1.0).all()  # uint8 255 -> 1.0
    assert (grid[1:4, 5:] == 0.25).all()  # the missing cells of the short row are padding
    assert (grid[5:8, 1:4] == 0.0).all()


def test_grey_stays_grey_and_colour_stays_colour():
    grey = np.linspace(0, 1, 16, dtype=np.float32).reshape(4, 4, 1)
    colour = np.zeros((4, 4, 3), dtype=np.float32)
    colour[..., 0] = 1.0
    assert image_grid([[grey, grey]]).shape[2] == 1
    mixed = image_grid([[grey, colour]], pad=0)
    assert mixed.shape == (4, 8, 3)
    np.testing.assert_array_equal(mixed[:, :4, 0], mixed[:, :4, 1])
    np.testing.assert_array_equal(mixed[:, :4, 1], mixed[:, :4, 2])
    np.testing.assert_array_equal(mixed[:, :4, 0], grey[..., 0])
    np.testing.assert_array_equal(mixed[:, 4:], colour)


def test_grid_rejects_bad_input():
    with pytest.raises(ValueError, match="same height and width"):
        image_grid([[np.zeros((3, 3)), np.zeros((4, 3))]])
    with pytest.raises(ValueError, match="at least one image"):
        image_grid([[]])
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        image_grid([[np.zeros((3, 3, 2))]])
    with pytest.raises(ValueError, match="pad"):
        image_grid([[np.zeros((3, 3))]], pad=-1)


def test_to_uint8_rounds_and_clips():
    values = np.array([-0.2, 0.0, 0.5, 1 / 255, 0.999, 1.0, 1.3])
    np.testing.assert_array_equal(to_uint8(values), [0, 0, 128, 1, 255, 255, 255])
    np.testing.assert_array_equal(to_uint8(np.array([True, False])), [255, 0])
    raw = np.array([[3, 200]], dtype=np.uint8)
    assert to_uint8(raw) is raw
    with pytest.raises(ValueError, match="NaN"):
        to_uint8(np.array([0.1, np.nan]))


def test_save_png_round_trip_grey_and_rgb(tmp_path):
    grey = np.linspace(0, 1, 64 * 32, dtype=np.float32).reshape(64, 32, 1)
    rgb = np.random.default_rng(0).random((8, 16, 3))
    save_png(tmp_path / "grey.png", grey)
    save_png(tmp_path / "sub" / "rgb.png", rgb)
    with Image.open(tmp_path / "grey.png") as image:
        assert image.mode == "L" and image.size == (32, 64)
        np.testing.assert_array_equal(np.asarray(image), to_uint8(grey)[..., 0])
    with Image.open(tmp_path / "sub" / "rgb.png") as image:
        assert image.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(image), to_uint8(rgb))
    # A failed write leaves the old file intact and no temporary file behind.
    before = (tmp_path / "grey.png").read_bytes()
    with pytest.raises(ValueError):
        save_png(tmp_path / "grey.png", np.zeros((4, 4, 2)))
    assert (tmp_path / "grey.png").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grey.png", "sub"]


def test_traversal_values_are_evenly_spread():
    np.testing.assert_array_equal(traversal_values(40, 10), [0, 4, 9, 13, 17, 22, 26, 30, 35, 39])
    np.testing.assert_array_equal(traversal_values(3, 10), [0, 1, 2])
    np.testing.assert_array_equal(traversal_values(10, 10), np.arange(10))
    np.testing.assert_array_equal(traversal_values(32, 2), [0, 31])


class _Bars(GroundTruthDataset):
    """A 2-factor toy: a vertical bar at column ``2 * a`` whose brightness is ``(b + 1) / 3``."""

    name = "bars"
    observation_shape = (8, 8, 1)

    def __init__(self):
        self.factor_space = FactorSpace([4, 2], ["a", "b"])

    def _observations(self, factors, rng):
        images = np.zeros((len(factors), 8, 8, 1), dtype=np.float32)
        for i, (a, b) in enumerate(factors):
            images[i, :, 2 * a] = (b + 1) / 3
        return images


def test_overview_layout_and_traversals():
    overview = dataset_overview(_Bars(), rng=0, num_samples=5, traversal_steps=4)
    # 2 sample rows (4 + 1) and 2 traversal rows of 8x8 images, 2-pixel white padding.
    assert overview.shape == (4 * 8 + 5 * 2, 4 * 8 + 5 * 2, 3) and overview.dtype == np.uint8
    assert (overview[..., 0] == overview[..., 1]).all() and (overview[..., 1] == overview[..., 2]).all()

    def cell(r, c):
        top, left = 2 + 10 * r, 2 + 10 * c
        return overview[top : top + 8, left : left + 8, 0]

    # Factor a sweeps the bar across the columns, with b held fixed.
    columns = [int(np.argmax(cell(2, c).max(axis=0))) for c in range(4)]
    assert columns == [0, 2, 4, 6]
    assert len({int(cell(2, c).max()) for c in range(4)}) == 1
    # Factor b has 2 values: two cells, brighter second, then white padding.
    assert cell(3, 0).max() < cell(3, 1).max()
    assert (cell(3, 2) == 255).all() and (cell(3, 3) == 255).all()
    assert (cell(1, 1) == 255).all()  # the 5th sample is alone on its row
    np.testing.assert_array_equal(
        overview, dataset_overview(_Bars(), rng=0, num_samples=5, traversal_steps=4)
    )


def test_overview_of_grey_and_colour_dsprites():
    grey = dataset_overview(load_procedural_dsprites(None), rng=1)
    # 16 samples in rows of 10 -> 2 rows, plus one row per factor (5): 7 rows, 10 columns.
    assert grey.shape == (7 * 64 + 8 * 2, 10 * 64 + 11 * 2, 3)
    assert (grey[..., 0] == grey[..., 2]).all()
    colour = dataset_overview(load_procedural_dsprites(None, variant="color"), rng=1)
    assert colour.shape == grey.shape
    assert (colour[..., 0] != colour[..., 2]).mean() > 0.01
    # The posX traversal (row 5) moves the sprite to the right.
    row = grey[2 + 66 * 5 : 66 * 6, :, 0]
    centres = [np.nonzero(row[:, 2 + 66 * c : 66 * (c + 1)].max(axis=0))[0].mean() for c in range(10)]
    assert np.all(np.diff(centres) > 0)
