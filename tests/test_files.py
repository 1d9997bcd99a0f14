"""Atomic writes: the old file survives a failure; no temporary file is left behind."""

from __future__ import annotations

import stat

import pytest

from attnmeta.files import atomic_write, atomic_write_bytes, remove_stale_temporaries


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


def test_stale_temporaries_are_removed_and_nothing_else(tmp_path):
    with atomic_write(tmp_path / "step_1.json") as temp:
        name = temp.name  # what a process killed inside this block leaves behind
        temp.write_bytes(b"{")
    stale = [tmp_path / name, tmp_path / ".step_2.safetensors.abc123.tmp"]
    kept = [tmp_path / "step_1.json", tmp_path / ".notes.txt.abc123.tmp",
            tmp_path / "step_3.tmp", tmp_path / "sub" / ".step_4.json.abc.tmp"]
    (tmp_path / "sub").mkdir()
    (tmp_path / ".step_5.json.dir.tmp").mkdir()  # not a file: not ours to remove
    for path in stale + kept[1:]:
        path.write_bytes(b"half")
    assert remove_stale_temporaries(tmp_path, "step_*") == sorted(stale)
    assert all(path.exists() for path in kept) and (tmp_path / ".step_5.json.dir.tmp").is_dir()
    assert remove_stale_temporaries(tmp_path / "missing", "step_*") == []
