"""The one download helper: pinned checksums, nothing half-written, no user file replaced.

Every transfer is from a local HTTP server on 127.0.0.1 (the ``local_server`` fixture)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from attnmeta.files import file_digest
from attnmeta.tasks.download import download_file, download_files

PAYLOAD = b"upstream bytes of a data set file\n" * 5000
SHA256 = hashlib.sha256(PAYLOAD).hexdigest()
MD5 = hashlib.md5(PAYLOAD).hexdigest()


def one_line(excinfo: pytest.ExceptionInfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


def files_in(folder: Path) -> list[str]:
    """Every entry of ``folder``, hidden temporary files included."""
    return sorted(os.listdir(folder)) if folder.exists() else []


@pytest.fixture
def served(local_server):
    (local_server.folder / "data.bin").write_bytes(PAYLOAD)
    return local_server


@pytest.mark.parametrize("known_hash", [f"sha256:{SHA256}", f"md5:{MD5}"])
def test_good_download_is_written_whole_and_readable(served, tmp_path, known_hash):
    destination = tmp_path / "root" / "set" / "data.bin"
    assert download_file(served.url_of("data.bin"), destination, known_hash) == destination
    assert destination.read_bytes() == PAYLOAD
    assert files_in(destination.parent) == ["data.bin"]  # no temporary file left
    assert destination.stat().st_mode & 0o777 == 0o644  # shared data: readable by others
    assert served.requests == ["/data.bin"]


def test_checksum_mismatch_on_download_writes_no_file(served, tmp_path):
    destination = tmp_path / "out" / "data.bin"
    with pytest.raises(ValueError) as excinfo:
        download_file(served.url_of("data.bin"), destination, "sha256:" + "0" * 64)
    message = one_line(excinfo)
    assert f"has sha256 {SHA256}, expected {'0' * 64}" in message
    assert served.url_of("data.bin") in message and f"{destination} was not written" in message
    assert files_in(destination.parent) == []  # neither the file nor pooch's temporary one


def test_existing_good_file_is_kept_without_a_request(served, tmp_path):
    destination = tmp_path / "data.bin"
    destination.write_bytes(PAYLOAD)
    os.utime(destination, ns=(1_000_000_000, 1_000_000_000))
    assert download_file(served.url_of("data.bin"), destination, f"md5:{MD5}") == destination
    assert served.requests == []
    assert destination.read_bytes() == PAYLOAD
    assert destination.stat().st_mtime_ns == 1_000_000_000  # not rewritten


def test_existing_garbage_file_is_refused_and_left_untouched(served, tmp_path):
    destination = tmp_path / "data.bin"
    destination.write_bytes(b"my own notes, not the data set")
    os.utime(destination, ns=(1_000_000_000, 1_000_000_000))
    garbage_sha256 = file_digest(destination)
    with pytest.raises(ValueError) as excinfo:
        download_file(served.url_of("data.bin"), destination, f"sha256:{SHA256}")
    assert one_line(excinfo) == (
        f"{destination} has sha256 {garbage_sha256}, expected {SHA256}: it is not the pinned "
        f"upstream file and was left untouched; move it away to download again")
    assert destination.read_bytes() == b"my own notes, not the data set"
    assert destination.stat().st_mtime_ns == 1_000_000_000
    assert served.requests == []
    assert files_in(tmp_path) == sorted(["data.bin", "served"])


def test_existing_folder_in_the_way_is_refused(served, tmp_path):
    (tmp_path / "data.bin").mkdir()
    with pytest.raises(ValueError, match=r"data.bin exists but is not a file"):
        download_file(served.url_of("data.bin"), tmp_path / "data.bin", f"sha256:{SHA256}")
    assert served.requests == []


def test_failed_transfer_is_one_line_and_writes_nothing(served, tmp_path):
    destination = tmp_path / "out" / "missing.bin"
    with pytest.raises(OSError) as excinfo:
        download_file(served.url_of("missing.bin"), destination, f"sha256:{SHA256}")
    message = one_line(excinfo)
    assert message.startswith(f"cannot download {served.url_of('missing.bin')} (404")
    assert files_in(destination.parent) == []


def test_bad_checksum_notation_is_refused_before_any_request(served, tmp_path):
    for known_hash in (SHA256, "sha1:abc", "md5:XYZ"):
        with pytest.raises(ValueError, match=r"expected 'md5:<hex>' or 'sha256:<hex>'"):
            download_file(served.url_of("data.bin"), tmp_path / "data.bin", known_hash)
    assert served.requests == []


def test_download_files_checks_every_existing_file_before_fetching(served, tmp_path):
    (served.folder / "second.bin").write_bytes(b"second")
    folder = tmp_path / "set"
    folder.mkdir()
    (folder / "second.bin").write_bytes(b"stale copy")
    urls = {"data.bin": served.url_of("data.bin"), "second.bin": served.url_of("second.bin")}
    hashes = {"data.bin": f"sha256:{SHA256}",
              "second.bin": f"sha256:{hashlib.sha256(b'second').hexdigest()}"}
    with pytest.raises(ValueError, match=r"second.bin has sha256 .* left untouched"):
        download_files(folder, urls, hashes)
    assert served.requests == [] and files_in(folder) == ["second.bin"]
    (folder / "second.bin").write_bytes(b"second")  # the user moved the stale copy away
    assert download_files(folder, urls, hashes) == folder
    assert served.requests == ["/data.bin"]  # the good file already there is not fetched
    assert (folder / "data.bin").read_bytes() == PAYLOAD
