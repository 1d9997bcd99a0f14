"""Atomic writes: the old file survives a failure; no temporary file is left behind."""

from __future__ import annotations

import stat

import pytest

from attnmeta.files import atomic_write, atomic_write_bytes


def test_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / "model.bin"
    atomic_write_bytes(path, b"old")
    with pytest.raises(RuntimeError):
        with atomic_write(path) as temp:
            temp.write_bytes(b"half-writ")
            raise RuntimeError("killed")
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["model.bin"]


def test_successful_write_replaces_and_sets_mode(tmp_path):
    path = tmp_path / "sub" / "data.npz"
    with atomic_write(path, mode=0o644) as temp:
        temp.write_bytes(b"new")
        assert not path.exists()  # invisible until the block ends
    assert path.read_bytes() == b"new"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
