"""``untwine data ...`` through ``untwine.cli.main`` on published-format fixture files."""

import errno
import hashlib
import os
import sys
import types
from dataclasses import replace

import numpy as np
import pytest

import fixtures_data as fx
from untwine.cli import main
from untwine.data import download as dl
from untwine.data.registry import SPECS

server = fx.http_server_fixture()
only_localhost = fx.only_localhost_fixture()


def sizes_arg(sizes):
    return ["--factor-sizes", ",".join(map(str, sizes))]


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def table_row(out, name):
    return next(line for line in out.splitlines() if line.split()[:1] == [name])


def test_list_shows_kind_status_and_factors(tmp_path, capsys):
    fx.write_shapes3d(tmp_path / "shapes3d")
    fx.write_mpi3d(tmp_path / "mpi3d", "real")
    fx.write_dsprites(tmp_path / "dsprites", fmt="hdf5")
    code, out, _ = run(capsys, "data", "list", "--root", str(tmp_path))
    assert code == 0
    assert "present" in table_row(out, "shapes3d")
    assert "floor_hue=10" in table_row(out, "shapes3d")
    assert "present" in table_row(out, "mpi3d_real")
    assert "missing: mpi3d_toy.npz" in table_row(out, "mpi3d_toy")
    assert "present" in table_row(out, "dsprites_full")  # the .hdf5 version counts
    assert "missing: scream.jpg" in table_row(out, "scream_dsprites")
    assert "and 5 more" in table_row(out, "smallnorb")
    assert table_row(out, "procedural_dsprites").split()[1:3] == ["procedural", "procedural"]
    assert str(tmp_path) in out.splitlines()[-1]


def test_list_uses_untwine_data_by_default(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("UNTWINE_DATA", str(tmp_path))
    fx.write_cars3d(tmp_path / "cars3d")
    code, out, _ = run(capsys, "data", "list")
    assert code == 0 and "present" in table_row(out, "cars3d")


def test_info_lists_factors_files_and_sources(tmp_path, capsys):
    code, out, _ = run(capsys, "data", "info", "scream_dsprites", "--root", str(tmp_path))
    assert code == 0
    assert "shape=3 scale=6 orientation=40 posX=32 posY=32 (737280 combinations)" in out
    assert "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz: missing" in out
    assert "MD5 7da33b31b13a06f4b04a70402ce90c2e" in out
    assert "The_Scream.jpg" in out and "no published checksum" in out
    code, out, _ = run(capsys, "data", "info", "procedural_shapes3d")
    assert code == 0 and "nothing to download" in out
    code, out, _ = run(capsys, "data", "info", "cars3d", "--root", str(tmp_path))
    assert "nips2015-analogy-data.tar.gz, then its cars/ folder extracted" in out
    assert "MD5 4e866a7919c1beedf53964e6f7a23686" in out


def test_unknown_name_is_an_error(capsys):
    code, _, err = run(capsys, "data", "info", "no_such_set")
    assert code == 1 and "unknown dataset 'no_such_set'" in err


def test_download_with_wrong_checksum_fails_cleanly(server, tmp_path, capsys):
    server.files["3dshapes.h5"] = b"not the published file"
    code, _, err = run(
        capsys, "data", "download", "shapes3d", "--root", str(tmp_path), "--base-url", server.base
    )
    assert code == 1
    assert "checksum mismatch" in err and dl.SHAPES3D.md5 in err
    assert list((tmp_path / "shapes3d").iterdir()) == []


def test_download_then_verify(server, tmp_path, monkeypatch, capsys):
    fx.write_shapes3d(tmp_path / "served")
    data = (tmp_path / "served" / "3dshapes.h5").read_bytes()
    server.files["3dshapes.h5"] = data
    monkeypatch.setitem(dl.DOWNLOADS, "shapes3d", (replace(dl.SHAPES3D, md5=hashlib.md5(data).hexdigest()),))
    root = tmp_path / "root"
    code, out, _ = run(capsys, "data", "download", "shapes3d", "--root", str(root), "--base-url", server.base)
    assert code == 0 and "checksum verified" in out and "shapes3d: ready" in out
    assert (root / "shapes3d" / "3dshapes.h5").read_bytes() == data
    code, out, _ = run(
        capsys, "data", "verify", "shapes3d", "--root", str(root), *sizes_arg(fx.SHAPES3D_SIZES)
    )
    assert code == 0, out
    assert (
        "MD5 matches the published" in out and "row-major grid order" in out and out.rstrip().endswith("OK")
    )
    code, out, _ = run(capsys, "data", "download", "shapes3d", "--root", str(root), "--base-url", server.base)
    assert code == 0 and "already present" in out and len(server.requests) == 1


def test_verify_reports_checksum_and_layout_problems(tmp_path, capsys):
    fx.write_dsprites(tmp_path / "dsprites")  # a fixture: not the published bytes
    code, out, _ = run(
        capsys, "data", "verify", "dsprites_full", "--root", str(tmp_path), *sizes_arg(fx.DSPRITES_SIZES)
    )
    assert code == 1
    assert "FAILED" in out and "differs from the published 7da33b31b13a06f4b04a70402ce90c2e" in out
    fx.write_smallnorb(tmp_path / "smallnorb")
    code, out, _ = run(
        capsys, "data", "verify", "smallnorb", "--root", str(tmp_path), *sizes_arg(fx.SMALLNORB_SIZES)
    )
    assert code == 0, out
    assert "unverified" in out and "exactly once" in out
    dat = tmp_path / "smallnorb" / "smallnorb-5x01235x9x18x6x2x96x96-testing-dat.mat"
    dat.write_bytes(dat.read_bytes()[:-7])
    code, out, _ = run(
        capsys, "data", "verify", "smallnorb", "--root", str(tmp_path), *sizes_arg(fx.SMALLNORB_SIZES)
    )
    assert code == 1 and "header promises" in out
    code, out, _ = run(capsys, "data", "verify", "mpi3d_toy", "--root", str(tmp_path))
    assert code == 1 and "missing" in out and "untwine data download mpi3d_toy" in out
    code, out, _ = run(capsys, "data", "verify", "procedural_dsprites")
    assert code == 0 and "nothing on disk" in out


@pytest.mark.parametrize("kind", ["folder", "missing"])
def test_verify_of_a_path_says_a_dataset_is_named(tmp_path, capsys, kind):
    path = tmp_path / "data"
    if kind == "folder":
        path.mkdir()
    code, out, err = run(capsys, "data", "verify", str(path))
    assert code == 1 and out == ""
    assert err.splitlines() == [
        f"untwine data: error: unknown dataset {str(path)!r} (a dataset is named, not given as a path: pass "
        "its data root with --root or $UNTWINE_DATA); known datasets: " + ", ".join(SPECS)
    ]


def test_verify_names_a_folder_where_a_file_belongs(tmp_path, capsys):
    (tmp_path / "dsprites" / fx.DSPRITES_NPZ).mkdir(parents=True)
    code, out, err = run(capsys, "data", "verify", "dsprites_full", "--root", str(tmp_path))
    assert code == 1 and err == ""
    assert out.splitlines() == [
        f"  FAILED     {tmp_path / 'dsprites' / fx.DSPRITES_NPZ}: a folder where a file belongs; remove it "
        "and run `untwine data download dsprites_full`",
        "dsprites_full: FAILED",
    ]


def test_verify_names_a_data_root_that_is_a_file(tmp_path, capsys):
    (tmp_path / "root").write_text("not a folder")
    code, out, err = run(capsys, "data", "verify", "dsprites_full", "--root", str(tmp_path / "root"))
    assert code == 1 and err == ""
    assert f"FAILED     {tmp_path / 'root'} is a file, not a folder: pass --root" in out


def test_verify_names_an_unreadable_file(tmp_path, monkeypatch, capsys):
    fx.write_dsprites(tmp_path / "dsprites")
    path = tmp_path / "dsprites" / fx.DSPRITES_NPZ
    if os.geteuid() != 0:
        path.chmod(0)
    else:  # root reads any file whatever its mode: the read fails as it would for anyone else

        def unreadable(file, *args, **kwargs):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(file))

        monkeypatch.setattr(dl, "file_md5", unreadable)
    code, out, err = run(
        capsys, "data", "verify", "dsprites_full", "--root", str(tmp_path), *sizes_arg(fx.DSPRITES_SIZES)
    )
    assert code == 1 and err == ""
    assert (
        f"FAILED     {path}: cannot be read (Permission denied); fix its permissions or run "
        "`untwine data download dsprites_full --force`"
    ) in out


def test_verify_detects_changed_extracted_files(server, tmp_path, monkeypatch, capsys):
    tarball = fx.cars_tarball(tmp=tmp_path)
    server.files["nips2015-analogy-data.tar.gz"] = tarball
    monkeypatch.setitem(dl.DOWNLOADS, "cars3d", (replace(dl.CARS3D, md5=hashlib.md5(tarball).hexdigest()),))
    assert (
        run(capsys, "data", "download", "cars3d", "--root", str(tmp_path), "--base-url", server.base)[0] == 0
    )
    code, out, _ = run(
        capsys, "data", "verify", "cars3d", "--root", str(tmp_path), *sizes_arg(fx.CARS3D_SIZES)
    )
    assert code == 0 and "3 file(s) match the MD5s recorded" in out
    (tmp_path / "cars3d" / "cars" / "car_001_mesh.mat").write_bytes(b"changed")
    code, out, _ = run(
        capsys, "data", "verify", "cars3d", "--root", str(tmp_path), *sizes_arg(fx.CARS3D_SIZES)
    )
    assert code == 1 and "car_001_mesh.mat changed" in out and "not a readable MATLAB file" in out


def test_prepare_writes_the_memory_mappable_file(tmp_path, capsys):
    fx.write_mpi3d(tmp_path / "mpi3d", "toy", compressed=True)
    code, out, _ = run(
        capsys, "data", "prepare", "mpi3d_toy", "--root", str(tmp_path), *sizes_arg(fx.MPI3D_SIZES)
    )
    assert code == 0 and "mpi3d_toy.images.npy" in out
    assert np.load(tmp_path / "mpi3d" / "mpi3d_toy.images.npy", mmap_mode="r").shape == (48, 64, 64, 3)
    code, out, _ = run(capsys, "data", "list", "--root", str(tmp_path))
    assert "present, prepared" in table_row(out, "mpi3d_toy")
    code, _, err = run(capsys, "data", "prepare", "procedural_dsprites")
    assert code == 1 and "procedural" in err
    code, _, err = run(capsys, "data", "prepare", "smallnorb", "--root", str(tmp_path))
    assert code == 1 and "untwine data download smallnorb" in err


@pytest.fixture
def fake_visualisation(monkeypatch):
    """Stand-ins for untwine.visualisation.images.{dataset_overview, save_png} that record their calls."""
    calls = {}

    def dataset_overview(dataset, rng):
        calls["dataset"], calls["rng"] = dataset, rng
        return np.zeros((10, 20, 3), dtype=np.uint8)

    def save_png(path, array):
        calls["path"], calls["array"] = path, array

    module = types.ModuleType("untwine.visualisation.images")
    module.dataset_overview, module.save_png = dataset_overview, save_png
    monkeypatch.setitem(sys.modules, "untwine.visualisation.images", module)
    return calls


def test_show_passes_the_dataset_and_seed(tmp_path, capsys, fake_visualisation):
    fx.write_smallnorb(tmp_path / "smallnorb")
    out_png = tmp_path / "norb.png"
    code, out, _ = run(
        capsys,
        "data",
        "show",
        "smallnorb",
        "--root",
        str(tmp_path),
        "--out",
        str(out_png),
        "--seed",
        "7",
        *sizes_arg(fx.SMALLNORB_SIZES),
    )
    assert code == 0 and str(out_png) in out
    assert fake_visualisation["dataset"].name == "smallnorb" and fake_visualisation["rng"] == 7
    assert fake_visualisation["path"] == out_png


def test_show_missing_data_names_the_download_command(tmp_path, capsys, fake_visualisation):
    code, _, err = run(capsys, "data", "show", "cars3d", "--root", str(tmp_path))
    assert code == 1 and "untwine data download cars3d" in err


def test_show_writes_a_png(tmp_path, capsys):
    images = pytest.importorskip("untwine.visualisation.images")
    if not (hasattr(images, "dataset_overview") and hasattr(images, "save_png")):
        pytest.skip("untwine.visualisation.images.dataset_overview/save_png not written yet")
    from PIL import Image

    fx.write_mpi3d(tmp_path / "mpi3d", "real")
    pictures = []
    for name in ("a.png", "b.png"):
        code, _, _ = run(
            capsys,
            "data",
            "show",
            "mpi3d_real",
            "--root",
            str(tmp_path),
            "--out",
            str(tmp_path / name),
            "--seed",
            "3",
            *sizes_arg(fx.MPI3D_SIZES),
        )
        assert code == 0
        with Image.open(tmp_path / name) as picture:
            assert picture.mode == "RGB"
            pictures.append(np.asarray(picture))
    np.testing.assert_array_equal(pictures[0], pictures[1])
