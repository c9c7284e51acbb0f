"""Downloads against a local HTTP server on 127.0.0.1 (nothing else may be contacted)."""

import gzip
import hashlib
import re
from dataclasses import replace

import numpy as np
import pytest

import fixtures_data as fx
from untwine.data import download as dl
from untwine.data import get_dataset, get_spec, list_datasets

server = fx.http_server_fixture()
only_localhost = fx.only_localhost_fixture()


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


PAYLOAD = np.random.default_rng(0).integers(0, 256, size=300_000, dtype=np.uint8).tobytes()


def remote(server, data=PAYLOAD, name="blob.bin", checksum="auto"):
    server.files[name] = data
    return dl.RemoteFile(f"{server.base}/{name}", name, md5(data) if checksum == "auto" else checksum, "test")


def leftovers(directory):
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


def test_good_file_lands(server, tmp_path):
    logs = []
    path, digest = dl.download_file(remote(server), tmp_path, log=logs.append)
    assert path == tmp_path / "blob.bin" and path.read_bytes() == PAYLOAD
    assert digest == md5(PAYLOAD)
    assert leftovers(tmp_path) == ["blob.bin"]
    assert server.requests == [("blob.bin", None)]


def test_wrong_checksum_leaves_nothing_and_says_why(server, tmp_path):
    with pytest.raises(dl.ChecksumMismatchError) as info:
        dl.download_file(remote(server, checksum="0" * 32), tmp_path, log=lambda m: None)
    message = str(info.value)
    assert "0" * 32 in message and md5(PAYLOAD) in message and "checksum mismatch" in message
    assert leftovers(tmp_path) == []


def test_cut_off_transfer_leaves_no_final_file_then_resumes(server, tmp_path):
    spec = remote(server)
    server.cut_after = 100_000
    with pytest.raises(dl.DownloadError, match=r"cut off after 100000 of 300000 bytes") as info:
        dl.download_file(spec, tmp_path, log=lambda m: None)
    assert "resume" in str(info.value)
    assert leftovers(tmp_path) == ["blob.bin.part"]
    assert (tmp_path / "blob.bin.part").read_bytes() == PAYLOAD[:100_000]
    server.cut_after = None
    logs = []
    path, _ = dl.download_file(spec, tmp_path, log=logs.append)
    assert path.read_bytes() == PAYLOAD
    assert server.requests[-1] == ("blob.bin", "bytes=100000-")
    assert any("resuming" in m for m in logs)
    assert leftovers(tmp_path) == ["blob.bin"]


def test_resume_continues_from_a_partial_file(server, tmp_path):
    (tmp_path / "blob.bin.part").write_bytes(PAYLOAD[:123_456])
    path, digest = dl.download_file(remote(server), tmp_path, log=lambda m: None)
    assert server.requests == [("blob.bin", "bytes=123456-")]
    assert path.read_bytes() == PAYLOAD and digest == md5(PAYLOAD)


def test_resume_of_a_complete_partial_file(server, tmp_path):
    (tmp_path / "blob.bin.part").write_bytes(PAYLOAD)
    path, _ = dl.download_file(remote(server), tmp_path, log=lambda m: None)
    assert path.read_bytes() == PAYLOAD and leftovers(tmp_path) == ["blob.bin"]


def test_server_ignoring_range_restarts_from_zero(server, tmp_path):
    server.ranges = False
    (tmp_path / "blob.bin.part").write_bytes(b"stale bytes that must not be kept")
    path, _ = dl.download_file(remote(server), tmp_path, log=lambda m: None)
    assert path.read_bytes() == PAYLOAD


def test_corrupt_partial_file_fails_the_checksum_and_is_deleted(server, tmp_path):
    (tmp_path / "blob.bin.part").write_bytes(b"x" * 1000)
    with pytest.raises(dl.ChecksumMismatchError):
        dl.download_file(remote(server), tmp_path, log=lambda m: None)
    assert leftovers(tmp_path) == []


def test_unverified_file_lands_with_a_warning(server, tmp_path):
    logs = []
    path, digest = dl.download_file(remote(server, checksum=None), tmp_path, log=logs.append)
    assert path.exists()
    assert any("unverified" in m and digest in m for m in logs)


def test_http_error_leaves_nothing(server, tmp_path):
    spec = dl.RemoteFile(f"{server.base}/absent.bin", "absent.bin", None, "test")
    with pytest.raises(dl.DownloadError, match="HTTP 404"):
        dl.download_file(spec, tmp_path, log=lambda m: None)
    assert leftovers(tmp_path) == []


def test_download_dataset_with_base_url_skips_present_files(server, tmp_path):
    data = b"pretend this is 3dshapes.h5"
    server.files["3dshapes.h5"] = data
    files = [replace(dl.SHAPES3D, md5=md5(data))]
    logs = []
    paths = dl.download_dataset("shapes3d", tmp_path, files=files, base_url=server.base, log=logs.append)
    assert paths == [tmp_path / "shapes3d" / "3dshapes.h5"] and paths[0].read_bytes() == data
    dl.download_dataset("shapes3d", tmp_path, files=files, base_url=server.base, log=logs.append)
    assert len(server.requests) == 1 and "already present" in logs[-1]


def test_smallnorb_files_are_gunzipped_atomically(server, tmp_path):
    names = fx.norb_file_names()
    files = []
    for split, blobs in fx.smallnorb_splits().items():
        for name, blob in zip(names[split], blobs, strict=True):
            packed = gzip.compress(blob, mtime=0)
            server.files[f"{name}.gz"] = packed
            files.append(replace(next(r for r in dl.SMALLNORB if r.target == name), md5=md5(packed)))
    paths = dl.download_dataset("smallnorb", tmp_path, files=files, base_url=server.base, log=lambda m: None)
    folder = tmp_path / "smallnorb"
    assert sorted(p.name for p in paths) == sorted(get_spec("smallnorb").files)
    assert sorted(leftovers(folder)) == sorted([*get_spec("smallnorb").files, dl.MANIFEST])
    recorded = dl.recorded_checksums(folder)
    assert recorded[paths[0].name] == dl.file_md5(paths[0])
    dataset = get_dataset("smallnorb", tmp_path, factor_sizes=fx.SMALLNORB_SIZES)
    assert dataset.num_states == int(np.prod([2, 2, 3, 2]))


def test_bad_gzip_leaves_no_target(tmp_path):
    (tmp_path / "x.mat.gz").write_bytes(gzip.compress(b"abc" * 1000)[:-20])
    with pytest.raises(dl.DownloadError, match="could not decompress"):
        dl.gunzip(tmp_path / "x.mat.gz", tmp_path / "x.mat")
    assert leftovers(tmp_path) == ["x.mat.gz"]


def test_cars_folder_is_extracted_from_the_archive(server, tmp_path):
    tarball = fx.cars_tarball(tmp=tmp_path)
    server.files["nips2015-analogy-data.tar.gz"] = tarball
    files = [replace(dl.CARS3D, md5=md5(tarball))]
    dl.download_dataset("cars3d", tmp_path, files=files, base_url=server.base, log=lambda m: None)
    folder = tmp_path / "cars3d"
    assert leftovers(folder) == [dl.MANIFEST, "cars"]
    assert sorted(p.name for p in (folder / "cars").iterdir()) == [f"car_{i:03d}_mesh.mat" for i in range(3)]
    assert len(dl.recorded_checksums(folder)) == 3
    dataset = get_dataset("cars3d", tmp_path, factor_sizes=fx.CARS3D_SIZES)
    factors = dataset.index_to_factors(np.arange(dataset.num_states))
    np.testing.assert_array_equal(
        fx.decode_car(dataset.sample_observations_from_factors(factors, 0)), factors
    )


def test_archive_without_the_folder_extracts_nothing(tmp_path):
    import tarfile

    with tarfile.open(tmp_path / "a.tar.gz", "w:gz") as tar:
        tar.add(__file__, arcname="data/other/file.txt")
    with pytest.raises(dl.DownloadError, match="no 'cars/' folder"):
        dl.extract_folder(tmp_path / "a.tar.gz", tmp_path, "cars")
    assert leftovers(tmp_path) == ["a.tar.gz"]


def test_procedural_datasets_have_nothing_to_download():
    with pytest.raises(ValueError, match="procedural"):
        dl.remote_files("procedural_dsprites")


def test_the_table_covers_every_real_dataset():
    for name in list_datasets():
        spec = get_spec(name)
        if spec.procedural:
            continue
        files = dl.DOWNLOADS[name]
        assert set(spec.files) <= {r.product for r in files}, name
        for r in files + dl.ALTERNATIVES.get(name, ()):
            assert r.url.startswith(("https://", "http://"))
            assert r.md5 is None or re.fullmatch(r"[0-9a-f]{32}", r.md5), r
            assert r.checksum_source
    assert dl.SCREAM.md5 is None  # none is published: downloaded unverified, never an invented hash
