"""Atomic writes: all or nothing, with ordinary permissions."""

import os
import stat

import pytest

from untwine.utils.io import atomic_open, atomic_write_json


def test_atomic_write_replaces_and_keeps_umask_permissions(tmp_path):
    target = tmp_path / "a" / "result.json"
    atomic_write_json(target, {"x": 1})
    atomic_write_json(target, {"x": 2})
    assert target.read_text().strip().startswith("{") and '"x": 2' in target.read_text()
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~mask
    assert [p.name for p in target.parent.iterdir()] == ["result.json"]


def test_failed_write_leaves_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "result.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_open(target) as handle:
        handle.write(b"half")
        raise RuntimeError("interrupted")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["result.bin"]
