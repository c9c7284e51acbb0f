"""Procedural dSprites and 3D Shapes: factor grids, geometry, caches, variants, hues."""

import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from matplotlib.colors import rgb_to_hsv

from untwine.data import FactorSpace, get_dataset, get_spec
from untwine.data import procedural_dsprites as pd
from untwine.data import procedural_shapes3d as ps

SQUARE, ELLIPSE, HEART = 0, 1, 2
LARGEST = 5  # scale index of scale 1.0


@pytest.fixture(scope="module")
def sprites():
    return pd.ProceduralDSprites(cache="memory")


@pytest.fixture(scope="module")
def shapes():
    return ps.ProceduralShapes3D(cache="memory")


def render(dataset, *factors):
    return dataset.sample_observations_from_factors(np.array(factors), 0)


def mask(dataset, shape, scale, orientation, pos_x, pos_y):
    image = render(dataset, [shape, scale, orientation, pos_x, pos_y])[0, ..., 0]
    assert set(np.unique(image)) <= {0.0, 1.0}
    return image


def centre_of_mass(image):
    rows, cols = np.nonzero(image)
    return rows.mean(), cols.mean()


def principal_angle(image):
    """Angle of the long axis in image coordinates (x = column, y = row), in [0, pi)."""
    rows, cols = np.nonzero(image)
    cov = np.cov(np.stack([cols, rows]).astype(float))
    values, vectors = np.linalg.eigh(cov)
    x, y = vectors[:, np.argmax(values)]
    return np.arctan2(y, x) % np.pi


# -- dSprites: the factor grid ---------------------------------------------------------------------


def test_factor_grid_is_the_dsprites_grid(sprites):
    spec = get_spec("procedural_dsprites")
    assert sprites.factor_names == spec.factor_names == ("shape", "scale", "orientation", "posX", "posY")
    assert sprites.factor_sizes == spec.factor_sizes == (3, 6, 40, 32, 32)
    values = pd.LATENT_VALUES
    np.testing.assert_allclose(values["scale"], [0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
    # dSprites' orientations include both ends: step 2*pi/39 = 0.16110732 (the published values).
    np.testing.assert_allclose(values["orientation"][:3], [0.0, 0.16110732, 0.32221463], atol=1e-8)
    assert values["orientation"][-1] == pytest.approx(2 * np.pi)
    np.testing.assert_allclose(values["posX"][[0, 1, 31]], [0.0, 0.03225806, 1.0], atol=1e-8)
    assert sprites.observation_shape == (64, 64, 1) and sprites.deterministic


@pytest.mark.parametrize(
    ("name", "channels"),
    [
        ("procedural_dsprites", 1),
        ("procedural_color_dsprites", 3),
        ("procedural_noisy_dsprites", 3),
        ("procedural_scream_dsprites", 3),
    ],
)
def test_registry_builds_each_variant(name, channels):
    dataset = get_dataset(name)
    assert dataset.name == name and dataset.observation_shape == (64, 64, channels)
    images = dataset.sample_observations(3, 0)
    assert images.shape == (3, 64, 64, channels) and images.dtype == np.float32


# -- dSprites: geometry ------------------------------------------------------------------------------


def test_shape_areas_at_full_scale(sprites):
    areas = {shape: mask(sprites, shape, LARGEST, 0, 15, 15).sum() for shape in (SQUARE, ELLIPSE, HEART)}
    # Square of side 15.8 px, ellipse with semi-axes 10 x 5 px, heart sextic with unit 8.6 px (area 3.66 units^2).
    assert areas[SQUARE] == pytest.approx(15.8**2, rel=0.03)
    assert areas[ELLIPSE] == pytest.approx(np.pi * 10 * 5, rel=0.03)
    assert areas[HEART] == pytest.approx(3.66 * 8.6**2, rel=0.03)
    # As area fractions of the 64x64 frame: about 6.1%, 3.8% and 6.6%.
    assert areas[ELLIPSE] / 4096 < areas[SQUARE] / 4096 < areas[HEART] / 4096 < 0.07


def test_symmetries_at_orientation_zero(sprites):
    # posX = posY = 2 puts the centre on a pixel corner (14 px, 14 px): mirror images are exact there.
    square = mask(sprites, SQUARE, LARGEST, 0, 2, 2)[:28, :28]
    heart = mask(sprites, HEART, LARGEST, 0, 2, 2)[:28, :28]
    np.testing.assert_array_equal(square, square[::-1, :])
    np.testing.assert_array_equal(square, square[:, ::-1])
    np.testing.assert_array_equal(heart, heart[:, ::-1])  # left-right symmetric ...
    assert (heart != heart[::-1, :]).sum() > 40  # ... but not top-bottom:
    # the lobes (widest rows) are above the centre of mass and the tip below.
    widths = heart.sum(axis=1)
    row_com, _ = centre_of_mass(heart)
    assert np.argmax(widths) < row_com
    assert np.nonzero(widths)[0].max() - row_com > row_com - np.nonzero(widths)[0].min()


def test_positions_move_the_sprite_right_and_down(sprites):
    coms_x = np.array([centre_of_mass(mask(sprites, SQUARE, 2, 0, k, 10)) for k in range(32)])
    coms_y = np.array([centre_of_mass(mask(sprites, SQUARE, 2, 0, 10, k)) for k in range(32)])
    # posX moves the column centre of mass (and not the row), posY the row (y points down, as in dSprites).
    assert np.all(np.diff(coms_x[:, 1]) > 0) and np.ptp(coms_x[:, 0]) < 0.6
    assert np.all(np.diff(coms_y[:, 0]) > 0) and np.ptp(coms_y[:, 1]) < 0.6
    slope, intercept = np.polyfit(np.arange(32), coms_x[:, 1], 1)
    assert slope == pytest.approx(4 / 3, abs=0.02)  # 32 positions over 41.3 px, centred in the frame
    assert intercept + 15.5 * slope == pytest.approx(31.5, abs=0.3)  # pixel-index coordinates


def test_scale_grows_every_shape(sprites):
    for shape in (SQUARE, ELLIPSE, HEART):
        areas = np.array([mask(sprites, shape, scale, 7, 15, 15).sum() for scale in range(6)])
        assert np.all(np.diff(areas) > 0)
        assert areas[-1] / areas[0] == pytest.approx(4.0, rel=0.1)  # area goes with scale^2


def test_orientation_turns_the_ellipse_clockwise_on_screen(sprites):
    step = 2 * np.pi / 39
    for k in range(0, 40, 3):
        angle = principal_angle(mask(sprites, ELLIPSE, LARGEST, k, 15, 15))
        expected = (k * step) % np.pi  # positive in image coordinates (y down): clockwise as displayed
        assert min(abs(angle - expected), np.pi - abs(angle - expected)) < np.deg2rad(2.5)


def test_one_orientation_step_rotates_the_heart_moments(sprites):
    step = 2 * np.pi / 39
    rotation = np.array([[np.cos(step), -np.sin(step)], [np.sin(step), np.cos(step)]])
    for k in (0, 10, 25):
        before = np.nonzero(mask(sprites, HEART, LARGEST, k, 15, 15))
        after = np.nonzero(mask(sprites, HEART, LARGEST, k + 1, 15, 15))
        cov_before = np.cov(np.stack([before[1], before[0]]).astype(float))
        cov_after = np.cov(np.stack([after[1], after[0]]).astype(float))
        np.testing.assert_allclose(
            cov_after, rotation @ cov_before @ rotation.T, atol=0.06 * np.abs(cov_after).max()
        )
    # The first and last orientations are 0 and 2*pi: the same sprite, as in dSprites.
    np.testing.assert_array_equal(mask(sprites, HEART, 3, 0, 9, 20), mask(sprites, HEART, 3, 39, 9, 20))


def test_every_sprite_stays_inside_the_frame(sprites):
    # Positions with the same sub-pixel phase (k mod 3) show the same patch, so equal pixel counts at
    # the extreme positions and at a central one mean nothing was cut off at the border.
    grid = np.stack(np.meshgrid(range(3), range(6), range(40), indexing="ij"), axis=-1).reshape(-1, 3)
    for extreme, central in ((0, 15), (31, 16), (1, 16), (30, 15)):
        for px, py in ((extreme, extreme), (extreme, 31 - extreme)):
            counts_edge = sprites.render(np.column_stack([grid, np.full((len(grid), 2), [px, py])])).sum(
                axis=(1, 2)
            )
            centred = np.column_stack(
                [grid, np.full((len(grid), 2), [central, central if px == py else 31 - central])]
            )
            counts_centre = sprites.render(centred).sum(axis=(1, 2))
            np.testing.assert_array_equal(counts_edge, counts_centre)
            assert counts_edge.min() > 0


# -- dSprites: caches and determinism --------------------------------------------------------------


def test_cache_paths_render_identical_images(sprites, tmp_path):
    rng = np.random.default_rng(5)
    factors = np.concatenate(
        [sprites.sample_factors(40, rng), [[2, 5, 39, 0, 31], [0, 0, 0, 31, 0], [1, 5, 20, 31, 31]]]
    )
    direct = pd.ProceduralDSprites(cache="none").render(factors)
    np.testing.assert_array_equal(sprites.render(factors), direct)
    on_disk = pd.ProceduralDSprites(cache="disk", cache_root=tmp_path)
    np.testing.assert_array_equal(on_disk.render(factors), direct)
    path = pd.cache_path(tmp_path)
    assert path.parent == tmp_path / "procedural" and path.exists()
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left behind
    # A second load reads the file; a corrupt file is rebuilt.
    np.testing.assert_array_equal(
        pd.ProceduralDSprites(cache="disk", cache_root=tmp_path).render(factors), direct
    )
    path.write_bytes(b"not an array")
    np.testing.assert_array_equal(
        pd.ProceduralDSprites(cache="disk", cache_root=tmp_path).render(factors), direct
    )
    assert np.load(path).shape == (3, 6, 40, 3, 3, 25, 25)
    with pytest.raises(ValueError, match="cache must be"):
        pd.ProceduralDSprites(cache="ram")


def test_data_dir_env_is_the_default_cache_root(tmp_path, monkeypatch):
    monkeypatch.setenv("UNTWINE_DATA", os.fspath(tmp_path))
    pd.load_procedural_dsprites(None, cache="disk")
    assert pd.cache_path().parent == tmp_path / "procedural" and pd.cache_path().exists()


def test_sampling_is_deterministic_per_seed(sprites):
    a_factors, a_images = sprites.sample(32, 11)
    b_factors, b_images = sprites.sample(32, np.random.default_rng(11))
    np.testing.assert_array_equal(a_factors, b_factors)
    np.testing.assert_array_equal(a_images, b_images)
    assert not np.array_equal(a_factors, sprites.sample(32, 12)[0])


# -- dSprites: variants --------------------------------------------------------------------------------


def test_variant_value_ranges_and_determinism():
    factors = np.array([[0, 5, 0, 15, 15], [2, 3, 7, 3, 28], [1, 0, 30, 31, 0]])
    binary = pd.load_procedural_dsprites(None).sample_observations_from_factors(factors, 0)[..., 0] == 1
    for variant in ("color", "noisy", "scream"):
        dataset = pd.load_procedural_dsprites(None, variant=variant)
        assert not dataset.deterministic and dataset.observation_shape == (64, 64, 3)
        images = dataset.sample_observations_from_factors(factors, 3)
        np.testing.assert_array_equal(images, dataset.sample_observations_from_factors(factors, 3))
        assert not np.array_equal(images, dataset.sample_observations_from_factors(factors, 4))
        assert images.dtype == np.float32 and images.min() >= 0.0 and images.max() <= 1.0
        sprite, background = images[binary], images[~binary]
        if variant == "color":
            assert (background == 0).all() and sprite.min() >= 0.5
            for i in range(len(factors)):  # one colour per image
                assert len(np.unique(images[i][binary[i]], axis=0)) == 1
        elif variant == "noisy":
            assert (sprite == 1).all()
            assert background.mean() == pytest.approx(0.5, abs=0.02) and background.std() > 0.25
        else:
            assert 0.05 < background.std() and sprite.std() > 0.05  # a textured crop, sprite inverted


def test_scream_texture_is_seeded_and_textured():
    texture = pd.scream_texture(0)
    assert texture.shape == (274, 350, 3) and texture.dtype == np.float32
    assert texture.min() >= 0 and texture.max() <= 1 and texture.std() > 0.1
    np.testing.assert_array_equal(texture, pd.scream_texture(0))
    assert np.abs(texture - pd.scream_texture(1)).mean() > 0.05
    # Neighbouring crops differ: the crop position is real nuisance, not a flat colour.
    assert np.abs(texture[:64, :64] - texture[100:164, 200:264]).mean() > 0.05


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 737279))
def test_dsprites_index_round_trip_and_render(index):
    dataset = _shared_sprites()
    factors = dataset.index_to_factors(np.array([index]))
    assert dataset.factors_to_index(factors)[0] == index
    shape, scale, orientation, pos_x, pos_y = factors[0]
    # Row-major as in the dSprites file: posY varies fastest.
    assert index == (((shape * 6 + scale) * 40 + orientation) * 32 + pos_x) * 32 + pos_y
    image = dataset.render(factors)[0]
    assert image.sum() > 0 and image.max() == 1


_SHARED = {}


def _shared_sprites():
    if "sprites" not in _SHARED:  # hypothesis cannot take function-scoped fixtures; build once
        _SHARED["sprites"] = pd.ProceduralDSprites(cache="memory")
    return _SHARED["sprites"]


# -- 3D Shapes -----------------------------------------------------------------------------------------


def hue_of(pixels):
    return rgb_to_hsv(np.clip(pixels, 0, 1))[..., 0]


def test_shapes3d_factor_grid(shapes):
    spec = get_spec("procedural_shapes3d")
    assert shapes.factor_names == spec.factor_names and shapes.factor_sizes == spec.factor_sizes
    np.testing.assert_allclose(ps.LATENT_VALUES["floor_hue"], np.arange(10) / 10)
    np.testing.assert_allclose(ps.LATENT_VALUES["scale"][[0, -1]], [0.75, 1.25])
    np.testing.assert_allclose(ps.LATENT_VALUES["orientation"][[0, 7, -1]], [-30, 0, 30])
    assert ps.SHAPE_NAMES == ("cube", "cylinder", "sphere", "capsule")


def test_shapes3d_hues_land_in_their_regions(shapes):
    rng = np.random.default_rng(0)
    factors = shapes.sample_factors(200, rng)
    images = shapes.sample_observations_from_factors(factors, rng)
    assert images.dtype == np.float32 and images.min() >= 0 and images.max() <= 1
    hues = ps.LATENT_VALUES["floor_hue"]
    # Fixed places: the bottom-left corner is floor, the top centre is wall, for every geometry.
    np.testing.assert_allclose(hue_of(images[:, 63, 1]), hues[factors[:, 0]], atol=1e-5)
    np.testing.assert_allclose(hue_of(images[:, 0, 32]), hues[factors[:, 1]], atol=1e-5)
    # Every pixel seen only on one region (per the geometry) has exactly that region's hue.
    coverage = shapes.coverage(factors)
    for region in range(3):
        pure = (coverage[..., region] > 0) & (np.delete(coverage, region, axis=-1).sum(-1) == 0)
        pure = pure.reshape(-1, 64, 64)
        expected = np.broadcast_to(hues[factors[:, region]][:, None, None], pure.shape)[pure]
        found = hue_of(images[pure])
        assert np.all(np.minimum(abs(found - expected), 1 - abs(found - expected)) < 1e-5)
        assert pure.sum() > 200 * (50 if region == 2 else 500)
    # The object sits in the middle of the frame, on the floor.
    object_pixels = coverage[..., 2].reshape(-1, 64, 64) > 0.5
    for i in range(10):
        rows, cols = np.nonzero(object_pixels[i])
        assert abs(cols.mean() - 31.5) < 3 and 25 < rows.mean() < 50


def test_shapes3d_shading_and_shadow(shapes):
    image = render(shapes, [0, 3, 6, 7, 0, 7])[0]  # red floor, a cube of the largest scale
    value = image.max(axis=-1)
    assert np.ptp(value[image[..., 0] > 0.01 + image[..., 1]]) > 0.3  # shaded, not flat colours
    coverage = shapes.coverage(np.array([[0, 3, 6, 7, 0, 7]]))[0, :, 0].reshape(64, 64)
    assert np.isclose(coverage, ps.AMBIENT).sum() > 20  # floor pixels in full shadow


def test_shapes3d_scale_grows_the_object(shapes):
    for shape in range(4):
        factors = np.array([[1, 4, 8, scale, shape, 3] for scale in range(8)])
        areas = shapes.coverage(factors)[..., 2].sum(axis=1)
        assert np.all(np.diff(areas) > 0)
        assert areas[-1] / areas[0] == pytest.approx((1.25 / 0.75) ** 2, rel=0.15)


def test_shapes3d_shapes_and_orientations_differ(shapes):
    objects = shapes.coverage(np.array([[0, 0, 0, 4, shape, 7] for shape in range(4)]))[..., 2] > 0.5
    for a in range(4):
        for b in range(a + 1, 4):
            assert (objects[a] != objects[b]).sum() > 20, (ps.SHAPE_NAMES[a], ps.SHAPE_NAMES[b])
    # The sphere is round: its silhouette barely changes with orientation, while the room does.
    spheres = shapes.coverage(np.array([[0, 0, 0, 4, 2, 0], [0, 0, 0, 4, 2, 14]]))
    assert np.abs(spheres[0, :, 1] - spheres[1, :, 1]).sum() > 100
    cubes = shapes.coverage(np.array([[0, 0, 0, 4, 0, 3], [0, 0, 0, 4, 0, 11]]))[..., 2] > 0.5
    assert (cubes[0] != cubes[1]).sum() > 10


def test_shapes3d_cache_paths_agree(shapes, tmp_path):
    factors = shapes.sample_factors(12, 9)
    expected = shapes.sample_observations_from_factors(factors, 0)
    np.testing.assert_array_equal(
        ps.ProceduralShapes3D(cache="none").sample_observations_from_factors(factors, 1), expected
    )
    on_disk = ps.load_procedural_shapes3d(None, cache="disk", cache_root=tmp_path)
    np.testing.assert_array_equal(on_disk.sample_observations_from_factors(factors, 2), expected)
    assert ps.cache_path(tmp_path).exists()
    reread = ps.load_procedural_shapes3d(None, cache="disk", cache_root=tmp_path)
    np.testing.assert_array_equal(reread.sample_observations_from_factors(factors, 2), expected)


def test_shapes3d_registry_and_determinism():
    dataset = get_dataset("procedural_shapes3d")
    assert dataset.deterministic and dataset.observation_shape == (64, 64, 3)
    a = dataset.sample(16, 4)
    b = dataset.sample(16, 4)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 10 * 10 * 10 * 8 * 4 * 15 - 1))
def test_shapes3d_index_round_trip(index):
    space = FactorSpace(ps.FACTOR_SIZES, ps.FACTOR_NAMES)  # the space ProceduralShapes3D uses
    factors = space.index_to_factors(np.array([index]))
    assert space.factors_to_index(factors)[0] == index
    floor, wall, obj, scale, shape, orientation = factors[0]
    # Row-major as in the 3dshapes file: orientation varies fastest.
    assert index == ((((floor * 10 + wall) * 10 + obj) * 8 + scale) * 4 + shape) * 15 + orientation
