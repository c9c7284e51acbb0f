"""The real-dataset loaders on small files written in the published formats (see fixtures_data.py).

Every fixture image encodes its own row, so each test checks that the image looked up for given factors
is the one written for those factors.
"""

import os
import zipfile

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fixtures_data as fx
from untwine.data import DatasetFileNotFoundError, cars3d, dsprites, get_dataset, mpi3d, shapes3d, smallnorb
from untwine.data.arrays import RowFile, npy_rows, npz_member

SIZES = {
    "dsprites_full": fx.DSPRITES_SIZES,
    "dsprites_noshape": fx.DSPRITES_SIZES,
    "color_dsprites": fx.DSPRITES_SIZES,
    "noisy_dsprites": fx.DSPRITES_SIZES,
    "scream_dsprites": fx.DSPRITES_SIZES,
    "shapes3d": fx.SHAPES3D_SIZES,
    "mpi3d_toy": fx.MPI3D_SIZES,
    "mpi3d_realistic": fx.MPI3D_SIZES,
    "mpi3d_real": fx.MPI3D_SIZES,
    "cars3d": fx.CARS3D_SIZES,
    "smallnorb": fx.SMALLNORB_SIZES,
}
REAL = list(SIZES)
SCREAM_RGB = (200, 100, 50)


def write_all(root):
    fx.write_dsprites(root / "dsprites")
    fx.write_scream(root / "dsprites", SCREAM_RGB)
    fx.write_shapes3d(root / "shapes3d")
    for variant in ("toy", "realistic", "real"):
        fx.write_mpi3d(root / "mpi3d", variant)
    fx.write_cars3d(root / "cars3d")
    fx.write_smallnorb(root / "smallnorb")


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("untwine_data")
    write_all(root)
    return root


@pytest.fixture(scope="module")
def loaded(root):
    return {name: get_dataset(name, root, factor_sizes=SIZES[name]) for name in REAL}


def full_factors_of(name, dataset, observations):
    """Decode the full (stored) factor vector of each observation from the pixels."""
    if name in ("dsprites_full", "dsprites_noshape"):
        rows = [fx.decode_sprite(o[..., 0]) for o in observations]
    elif name == "color_dsprites":
        rows = [fx.decode_sprite(o[..., 0] > 0) for o in observations]
    elif name == "noisy_dsprites":
        rows = [fx.decode_sprite(o[..., 0] == 1) for o in observations]
    elif name in ("shapes3d", "mpi3d_toy", "mpi3d_realistic", "mpi3d_real"):
        rows = fx.decode_index(observations)
    elif name == "cars3d":
        return fx.decode_car(observations)
    elif name == "smallnorb":
        rows = fx.decode_norb(observations)
    else:
        raise AssertionError(name)
    space = dataset.base.full_space if hasattr(dataset, "base") else dataset.full_space
    return space.index_to_factors(np.asarray(rows, dtype=np.int64))


def latent_indices(dataset):
    return (dataset.base if hasattr(dataset, "base") else dataset).latent_indices


# -- lookups ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", [n for n in REAL if n != "scream_dsprites"])
def test_every_grid_row_is_found_by_its_factors(name, loaded):
    dataset = loaded[name]
    factors = dataset.index_to_factors(np.arange(dataset.num_states))
    observations = dataset.sample_observations_from_factors(factors, 0)
    assert observations.dtype == np.float32
    assert observations.shape == (dataset.num_states, *dataset.observation_shape)
    assert observations.min() >= 0 and observations.max() <= 1
    full = full_factors_of(name, dataset, observations)
    np.testing.assert_array_equal(full[:, list(latent_indices(dataset))], factors)


@settings(max_examples=40, deadline=None)
@given(name=st.sampled_from([n for n in REAL if n != "scream_dsprites"]), data=st.data())
def test_factor_index_round_trip_and_lookup(name, data, loaded):
    dataset = loaded[name]
    factors = np.array(
        [
            [data.draw(st.integers(0, s - 1)) for s in dataset.factor_sizes]
            for _ in range(data.draw(st.integers(1, 6)))
        ]
    )
    index = dataset.factors_to_index(factors)
    np.testing.assert_array_equal(dataset.index_to_factors(index), factors)
    observations = dataset.sample_observations_from_factors(factors, data.draw(st.integers(0, 2**32)))
    full = full_factors_of(name, dataset, observations)
    np.testing.assert_array_equal(full[:, list(latent_indices(dataset))], factors)


def test_factor_spaces_match_the_registry(loaded):
    from untwine.data import get_spec

    for name, dataset in loaded.items():
        spec = get_spec(name)
        assert dataset.factor_names == spec.factor_names, name
        assert dataset.observation_shape == (64, 64, spec.num_channels), name


@pytest.mark.parametrize("name", REAL)
def test_sampling_is_deterministic_per_seed(name, loaded):
    dataset = loaded[name]
    f1, x1 = dataset.sample(16, 11)
    f2, x2 = dataset.sample(16, np.random.default_rng(11))
    np.testing.assert_array_equal(f1, f2)
    np.testing.assert_array_equal(x1, x2)
    f3, x3 = dataset.sample(16, 12)
    assert not (np.array_equal(f1, f3) and np.array_equal(x1, x3))


def test_nuisance_factors_are_drawn_uniformly(loaded):
    # dsprites_noshape: the shape is nuisance; smallnorb: the instance is.
    for name, column, size in (("dsprites_noshape", 1, 3), ("smallnorb", 1, 2)):
        dataset = loaded[name]
        factors = np.zeros((600, dataset.num_factors), dtype=np.int64)
        full = full_factors_of(name, dataset, dataset.sample_observations_from_factors(factors, 3))
        counts = np.bincount(full[:, column], minlength=size) / 600
        np.testing.assert_allclose(counts, 1 / size, atol=0.08)
        assert not dataset.deterministic
    assert loaded["dsprites_full"].deterministic and loaded["mpi3d_toy"].deterministic


def test_images_stay_uint8_and_are_read_on_demand(loaded):
    assert isinstance(loaded["mpi3d_toy"].images, RowFile)
    assert loaded["mpi3d_toy"].images.dtype == np.uint8
    assert loaded["cars3d"].images.dtype == np.uint8 and loaded["smallnorb"].images.dtype == np.uint8
    sprites = loaded["dsprites_full"].images
    assert sprites.packed.dtype == np.uint8 and sprites.packed.shape[1] == 512  # 1 bit per pixel
    assert loaded["dsprites_full"].scale == 1.0 and loaded["shapes3d"].scale == np.float32(1 / 255)


# -- the dSprites views -----------------------------------------------------------------------------
def sprite_masks(dataset, factors):
    full = np.zeros((len(factors), 6), dtype=np.int64)
    full[:, 1:] = factors
    rows = dataset.base.full_space.factors_to_index(full)
    return np.stack([fx.sprite_image(int(r)) for r in rows]).astype(bool)


def test_color_dsprites_one_colour_per_image_in_half_to_one(loaded):
    dataset = loaded["color_dsprites"]
    factors = dataset.sample_factors(300, 0)
    images = dataset.sample_observations_from_factors(factors, 1)
    masks = sprite_masks(dataset, factors)
    colours = []
    for image, mask in zip(images, masks, strict=True):
        assert (image[~mask] == 0).all()
        sprite = image[mask]  # (pixels, 3)
        assert (sprite == sprite[0]).all(), "the colour is constant over the sprite"
        colours.append(sprite[0])
    colours = np.array(colours)
    assert colours.min() >= 0.5 and colours.max() <= 1.0
    assert colours.min() < 0.55 and colours.max() > 0.95
    np.testing.assert_allclose(colours.mean(axis=0), 0.75, atol=0.03)


def test_noisy_dsprites_is_min_of_sprite_plus_uniform_noise(loaded):
    dataset = loaded["noisy_dsprites"]
    factors = dataset.sample_factors(50, 0)
    images = dataset.sample_observations_from_factors(factors, 2)
    masks = sprite_masks(dataset, factors)
    mask3 = np.repeat(masks[..., None], 3, axis=-1)
    assert (images[mask3] == 1).all()
    background = images[~mask3]
    assert background.min() >= 0 and background.max() < 1
    assert abs(background.mean() - 0.5) < 0.01
    assert abs(background.var() - 1 / 12) < 0.005
    assert not np.array_equal(images[0][~mask3[0]], images[1][~mask3[1]])


def test_scream_dsprites_draws_the_sprite_inverted_on_the_painting(loaded):
    dataset = loaded["scream_dsprites"]
    factors = dataset.sample_factors(40, 0)
    images = dataset.sample_observations_from_factors(factors, 4)
    masks = sprite_masks(dataset, factors)
    painting = np.array(SCREAM_RGB) / 255
    shifts = []
    for image, mask in zip(images, masks, strict=True):
        background = image[~mask].mean(axis=0)
        np.testing.assert_allclose(image[~mask], np.broadcast_to(background, image[~mask].shape), atol=0.02)
        np.testing.assert_allclose(image[mask], 1 - np.broadcast_to(background, image[mask].shape), atol=0.02)
        shifts.append(2 * background - painting)  # background = (painting + U(0,1)^3) / 2
    shifts = np.array(shifts)
    assert shifts.min() > -0.03 and shifts.max() < 1.03
    assert shifts.std() > 0.15


# -- alternative sources and prepared files ---------------------------------------------------------
def test_dsprites_hdf5_is_used_when_the_npz_is_absent(tmp_path, loaded):
    fx.write_dsprites(tmp_path / "dsprites", fmt="hdf5")
    dataset = get_dataset("dsprites_full", tmp_path, factor_sizes=fx.DSPRITES_SIZES)
    factors = dataset.index_to_factors(np.arange(dataset.num_states))
    np.testing.assert_array_equal(
        dataset.sample_observations_from_factors(factors, 0),
        loaded["dsprites_full"].sample_observations_from_factors(factors, 0),
    )


PREPARE_CASES = [
    ("dsprites_full", dsprites, {}, lambda r: [r / "dsprites" / fx.DSPRITES_NPZ]),
    ("shapes3d", shapes3d, {}, lambda r: [r / "shapes3d" / "3dshapes.h5"]),
    ("mpi3d_real", mpi3d, {"variant": "real", "force": True}, lambda r: [r / "mpi3d" / "mpi3d_real.npz"]),
    ("cars3d", cars3d, {}, lambda r: sorted((r / "cars3d" / "cars").glob("*.mat"))),
    ("smallnorb", smallnorb, {}, lambda r: [r / "smallnorb" / f for f in smallnorb.FILES]),
]


@pytest.mark.parametrize(
    ("name", "module", "kwargs", "sources"), PREPARE_CASES, ids=[c[0] for c in PREPARE_CASES]
)
def test_prepared_file_gives_identical_observations(name, module, kwargs, sources, tmp_path, loaded):
    write_all(tmp_path)
    folder = tmp_path / module.FOLDER
    target = module.prepare(folder, factor_sizes=SIZES[name], **kwargs)
    assert target.exists() and target.suffix == ".npy"
    assert not list(folder.glob(".*.tmp")), "no temporary file is left behind"
    umask = os.umask(0o022)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask, "permissions of a normal new file, not 0600"
    for path in sources(tmp_path):  # the prepared file alone suffices now
        path.unlink()
    assert module.missing(folder, **{k: v for k, v in kwargs.items() if k == "variant"}) == []
    dataset = get_dataset(name, tmp_path, factor_sizes=SIZES[name])
    images = dataset.images.packed if name == "dsprites_full" else dataset.images
    assert isinstance(images, RowFile if name in ("shapes3d", "mpi3d_real") else np.memmap)
    factors = dataset.index_to_factors(np.arange(dataset.num_states))
    np.testing.assert_array_equal(
        dataset.sample_observations_from_factors(factors, 5),
        loaded[name].sample_observations_from_factors(factors, 5),
    )
    assert module.prepare(folder, factor_sizes=SIZES[name], **{**kwargs, "force": False}) == target


def test_compressed_mpi3d_needs_prepare_then_works(tmp_path, loaded):
    fx.write_mpi3d(tmp_path / "mpi3d", "toy", compressed=True)
    with pytest.raises(ValueError, match=r"compressed.*untwine data prepare mpi3d_toy"):
        get_dataset("mpi3d_toy", tmp_path, factor_sizes=fx.MPI3D_SIZES)
    mpi3d.prepare(tmp_path / "mpi3d", variant="toy", factor_sizes=fx.MPI3D_SIZES)
    dataset = get_dataset("mpi3d_toy", tmp_path, factor_sizes=fx.MPI3D_SIZES)
    factors = dataset.sample_factors(30, 0)
    np.testing.assert_array_equal(
        fx.decode_index(dataset.sample_observations_from_factors(factors, 0)),
        dataset.factors_to_index(factors),
    )


def test_uncompressed_mpi3d_needs_no_copy(tmp_path):
    fx.write_mpi3d(tmp_path, "toy")
    assert mpi3d.prepare(tmp_path, variant="toy", factor_sizes=fx.MPI3D_SIZES) == tmp_path / "mpi3d_toy.npz"
    assert not (tmp_path / "mpi3d_toy.images.npy").exists()
    member = npz_member(tmp_path / "mpi3d_toy.npz", "images")
    assert not member.compressed and member.data_offset > 0


def test_failed_prepare_leaves_nothing(tmp_path):
    folder = tmp_path / "smallnorb"
    fx.write_smallnorb(folder)
    dat = folder / smallnorb.FILES[3]
    dat.write_bytes(dat.read_bytes()[:-100])
    with pytest.raises(ValueError, match="header promises"):
        smallnorb.prepare(folder, factor_sizes=fx.SMALLNORB_SIZES)
    assert sorted(p.name for p in folder.iterdir()) == sorted(smallnorb.FILES)


def test_check_files_reports_what_it_checked(root):
    assert "row-major" in " ".join(dsprites.check_files(root / "dsprites", "scream", fx.DSPRITES_SIZES))
    assert shapes3d.check_files(root / "shapes3d", factor_sizes=fx.SHAPES3D_SIZES)
    assert "rows read in place" in mpi3d.check_files(root / "mpi3d", "real", fx.MPI3D_SIZES)[0]
    assert "3 .mat files" in cars3d.check_files(root / "cars3d", fx.CARS3D_SIZES)[0]
    assert "exactly once" in smallnorb.check_files(root / "smallnorb", fx.SMALLNORB_SIZES)[0]


# -- bad input --------------------------------------------------------------------------------------
MISSING = [
    ("dsprites_full", fx.DSPRITES_NPZ),
    ("color_dsprites", fx.DSPRITES_NPZ),
    ("shapes3d", "3dshapes.h5"),
    ("mpi3d_real", "mpi3d_real.npz"),
    ("cars3d", "cars"),
    ("smallnorb", smallnorb.FILES[0]),
]


@pytest.mark.parametrize(("name", "filename"), MISSING)
def test_missing_file_names_file_place_and_download_command(name, filename, tmp_path, monkeypatch):
    monkeypatch.setenv("UNTWINE_DATA", str(tmp_path))
    with pytest.raises(DatasetFileNotFoundError) as info:
        get_dataset(name)
    message = str(info.value)
    assert filename in message
    assert str(tmp_path) in message
    assert f"untwine data download {name}" in message


def test_scream_needs_the_painting(tmp_path):
    fx.write_dsprites(tmp_path / "dsprites")
    with pytest.raises(DatasetFileNotFoundError, match=r"scream\.jpg.*untwine data download scream_dsprites"):
        get_dataset("scream_dsprites", tmp_path, factor_sizes=fx.DSPRITES_SIZES)


def test_truncated_dsprites_npz(tmp_path):
    fx.write_dsprites(tmp_path)
    path = tmp_path / fx.DSPRITES_NPZ
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ValueError, match="truncated|not a readable"):
        dsprites.load_dsprites(tmp_path, factor_sizes=fx.DSPRITES_SIZES)


def test_dsprites_grid_mismatch_says_expected_and_found(tmp_path):
    fx.write_dsprites(tmp_path)
    with pytest.raises(
        ValueError, match=r"expected latents_sizes \[1, 3, 6, 40, 32, 32\], found \[1, 3, 2, 2, 2, 2\]"
    ):
        dsprites.load_dsprites(tmp_path)


def test_dsprites_rows_must_be_in_grid_order_and_binary(tmp_path):
    images, classes, values = fx.dsprites_arrays()
    metadata = np.array({"latents_sizes": np.array(fx.DSPRITES_SIZES)}, dtype=object)
    np.savez(
        tmp_path / fx.DSPRITES_NPZ,
        imgs=images,
        latents_classes=classes[::-1],
        latents_values=values,
        metadata=metadata,
    )
    with pytest.raises(ValueError, match="row-major grid order"):
        dsprites.load_dsprites(tmp_path, factor_sizes=fx.DSPRITES_SIZES)
    np.savez(
        tmp_path / fx.DSPRITES_NPZ,
        imgs=images * 255,
        latents_classes=classes,
        latents_values=values,
        metadata=metadata,
    )
    with pytest.raises(ValueError, match="binary images with values 0/1, found a value 255"):
        dsprites.load_dsprites(tmp_path, factor_sizes=fx.DSPRITES_SIZES)


def test_shapes3d_bad_files(tmp_path):
    import h5py

    fx.write_shapes3d(tmp_path, shuffle_labels=True)
    with pytest.raises(ValueError, match="row-major grid order"):
        shapes3d.load_shapes3d(tmp_path, factor_sizes=fx.SHAPES3D_SIZES)
    with h5py.File(tmp_path / "3dshapes.h5", "w") as handle:
        handle.create_dataset("images", data=np.zeros((96, 32, 32, 3), np.uint8))
        handle.create_dataset("labels", data=np.zeros((96, 6)))
    with pytest.raises(
        ValueError, match=r"expected an array of shape \(96, 64, 64, 3\).*found shape \(96, 32, 32, 3\)"
    ):
        shapes3d.load_shapes3d(tmp_path, factor_sizes=fx.SHAPES3D_SIZES)
    (tmp_path / "3dshapes.h5").write_bytes(b"not an hdf5 file at all")
    with pytest.raises(ValueError, match="not a readable HDF5"):
        shapes3d.load_shapes3d(tmp_path, factor_sizes=fx.SHAPES3D_SIZES)


def test_mpi3d_bad_files(tmp_path):
    fx.write_mpi3d(tmp_path, "toy")
    with pytest.raises(
        ValueError, match=r"expected an array of shape \(1036800, 64, 64, 3\).*found shape \(48, 64, 64, 3\)"
    ):
        mpi3d.load_mpi3d(tmp_path, "toy")
    path = tmp_path / "mpi3d_toy.npz"
    path.write_bytes(path.read_bytes()[:-5000])
    with pytest.raises(ValueError, match="not a readable .npz"):
        mpi3d.load_mpi3d(tmp_path, "toy", factor_sizes=fx.MPI3D_SIZES)
    np.savez(path, pictures=np.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"no array 'images' \(it holds \['pictures'\]\)"):
        mpi3d.load_mpi3d(tmp_path, "toy", factor_sizes=fx.MPI3D_SIZES)
    with pytest.raises(ValueError, match="unknown MPI3D variant"):
        mpi3d.load_mpi3d(tmp_path, "cartoon")
    assert zipfile.is_zipfile(path)


def test_cars3d_bad_files(tmp_path):
    fx.write_cars3d(tmp_path, fx.CARS3D_SIZES)
    with pytest.raises(ValueError, match=r"expected 183 \.mat files \(one per car\), found 3"):
        cars3d.load_cars3d(tmp_path)
    with pytest.raises(
        ValueError, match=r"expected shape \(H, W, 3, 4, 2\) uint8, found \(128, 128, 3, 3, 2\)"
    ):
        cars3d.load_cars3d(tmp_path, factor_sizes=(2, 4, 3))
    (tmp_path / "cars" / "car_001_mesh.mat").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="not a readable MATLAB file"):
        cars3d.load_cars3d(tmp_path, factor_sizes=fx.CARS3D_SIZES)


def test_cars3d_object_id_is_the_sorted_position(tmp_path):
    names = ["car_zeta_mesh.mat", "car_alpha_mesh.mat", "car_mid_mesh.mat"]
    fx.write_cars3d(tmp_path, fx.CARS3D_SIZES, names=names)  # writes object i into sorted(names)[i]
    dataset = cars3d.load_cars3d(tmp_path, factor_sizes=fx.CARS3D_SIZES)
    factors = dataset.index_to_factors(np.arange(dataset.num_states))
    np.testing.assert_array_equal(
        fx.decode_car(dataset.sample_observations_from_factors(factors, 0)), factors
    )


def test_smallnorb_bad_files(tmp_path):
    fx.write_smallnorb(tmp_path)
    dat = tmp_path / smallnorb.FILES[0]
    blob = dat.read_bytes()
    dat.write_bytes(np.array([0x1E3D4C54], "<i4").tobytes() + blob[4:])
    with pytest.raises(ValueError, match="expected magic number 0x1e3d4c55 .*found 0x1e3d4c54"):
        smallnorb.load_smallnorb(tmp_path, factor_sizes=fx.SMALLNORB_SIZES)
    dat.write_bytes(blob[:-1])
    with pytest.raises(ValueError, match="header promises"):
        smallnorb.load_smallnorb(tmp_path, factor_sizes=fx.SMALLNORB_SIZES)
    dat.write_bytes(blob)
    with pytest.raises(ValueError, match="exactly once"):
        smallnorb.load_smallnorb(tmp_path, factor_sizes=(2, 2, 2, 3, 3))
    info = tmp_path / smallnorb.FILES[2]
    good = info.read_bytes()
    values = np.frombuffer(good[20:], "<i4").reshape(-1, 4).copy()
    values[0, 2] += 1  # an odd azimuth
    info.write_bytes(good[:20] + values.astype("<i4").tobytes())
    with pytest.raises(ValueError, match="even azimuth"):
        smallnorb.load_smallnorb(tmp_path, factor_sizes=fx.SMALLNORB_SIZES)


def test_smallnorb_uses_camera_zero_and_lanczos(tmp_path):
    from PIL import Image

    fx.write_smallnorb(tmp_path)
    rng = np.random.default_rng(0)
    # Replace the images by noise and check the stored row is the Lanczos 96 -> 64 resize of camera 0.
    dat_path = tmp_path / smallnorb.FILES[0]
    header = dat_path.read_bytes()[:24]
    count = np.frombuffer(header, "<i4")[2]
    noise = rng.integers(0, 256, size=(count, 2, 96, 96), dtype=np.uint8)
    dat_path.write_bytes(header + noise.tobytes())
    info = np.frombuffer((tmp_path / smallnorb.FILES[2]).read_bytes()[20:], "<i4").reshape(-1, 4)
    cat = np.frombuffer((tmp_path / smallnorb.FILES[1]).read_bytes()[20:], "<i4")
    dataset = smallnorb.load_smallnorb(tmp_path, factor_sizes=fx.SMALLNORB_SIZES)
    features = np.column_stack([cat, info[:, 0], info[:, 1], info[:, 2] // 2, info[:, 3]])
    row = dataset.full_space.factors_to_index(features[:1])[0]
    expected = np.asarray(Image.fromarray(noise[0, 0]).resize((64, 64), Image.LANCZOS))
    np.testing.assert_array_equal(dataset.images[row], expected)
    assert os.path.getsize(dat_path) == 24 + noise.nbytes


def test_row_file_reads_rows_like_the_array(tmp_path):
    import pickle

    array = np.arange(7 * 3 * 2, dtype=np.int32).reshape(7, 3, 2)
    np.save(tmp_path / "a.npy", array)
    rows = npy_rows(tmp_path / "a.npy")
    assert len(rows) == 7 and rows.shape == array.shape and rows.dtype == array.dtype
    np.testing.assert_array_equal(rows[np.array([6, 0, 6, -1])], array[[6, 0, 6, -1]])
    np.testing.assert_array_equal(rows[np.array([[1, 2], [3, 4]])], array[[[1, 2], [3, 4]]])
    np.testing.assert_array_equal(rows[3], array[3])
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(rows))[np.arange(7)], array)
    with pytest.raises(IndexError):
        rows[np.array([7])]
    data = (tmp_path / "a.npy").read_bytes()
    (tmp_path / "a.npy").write_bytes(data[:-4])
    with pytest.raises(ValueError, match="truncated"):
        npy_rows(tmp_path / "a.npy")


def test_chunked_npy_writer_is_atomic(tmp_path):
    from untwine.data.arrays import write_npy_chunks_atomic

    data = np.arange(24, dtype=np.uint8).reshape(6, 4)
    path = write_npy_chunks_atomic(tmp_path / "x.npy", data.shape, np.uint8, [data[:4], data[4:]])
    np.testing.assert_array_equal(np.load(path), data)
    with pytest.raises(ValueError, match="the chunks hold 16 bytes"):
        write_npy_chunks_atomic(tmp_path / "y.npy", data.shape, np.uint8, [data[:4]])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.npy"]
