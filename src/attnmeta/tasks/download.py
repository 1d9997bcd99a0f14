"""One way to fetch every data set: pinned URL, pinned checksum, nothing half-written.

The transfer itself is :func:`pooch.retrieve`: it streams into a temporary file beside the
destination and moves it into place only once the checksum matches, deleting it otherwise,
so a failed or corrupted transfer leaves no file a later load could trust.

A file already at the destination is never overwritten (pooch would replace it, so it is
checked here first): if its checksum matches the pinned one it is kept; if not, a one-line
``ValueError`` names the file, its checksum and the expected one, and the user decides
(move it away to download again). Checksums are written ``"md5:<hex>"`` or
``"sha256:<hex>"``.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Mapping
from urllib.parse import urlparse

from attnmeta.errors import DataError, DownloadError, MissingDependencyError
from attnmeta.files import file_digest

__all__ = ["download_file", "download_files"]

logger = logging.getLogger(__name__)

_ALGORITHMS = ("md5", "sha256")
# pooch's temporary file is private (0600); data files are meant to be readable by others
_SHARED_FILE_MODE = 0o644


def _split_hash(known_hash: str) -> tuple[str, str]:
    """``"md5:<hex>"`` -> ``("md5", "<hex>")``; refuses a bare or unknown algorithm."""
    algorithm, _, digest = known_hash.partition(":")
    if algorithm not in _ALGORITHMS or not re.fullmatch(r"[0-9a-f]+", digest):
        raise ValueError(f"known_hash={known_hash!r}: expected 'md5:<hex>' or 'sha256:<hex>'")
    return algorithm, digest


def _keep_existing(destination: Path, known_hash: str) -> None:
    """Return if ``destination`` holds the pinned bytes; raise (touching nothing) if not."""
    algorithm, expected = _split_hash(known_hash)
    if not destination.is_file():
        raise DataError(f"{destination} exists but is not a file: expected the downloaded "
                        f"file there; move it away to download again")
    actual = file_digest(destination, algorithm)
    if actual != expected:
        raise DataError(f"{destination} has {algorithm} {actual}, expected {expected}: it is "
                        f"not the pinned upstream file and was left untouched; move it away "
                        f"to download again")
    logger.info("keeping existing %s (%s matches)", destination, algorithm)


def download_file(url: str, destination: str | Path, known_hash: str, *,
                  progressbar: bool = False, timeout_s: float = 60.0) -> Path:
    """Fetch ``url`` to ``destination`` unless an identical file is already there.

    Args:
        url: where the bytes come from (http or https for the built-in data sets).
        destination: the file to write; its folder is created if missing.
        known_hash: the pinned checksum, ``"md5:<hex>"`` or ``"sha256:<hex>"``.
        progressbar: show pooch's progress bar (needs ``tqdm``).
        timeout_s: seconds to wait for the server at each read.

    Raises:
        DataError: an existing file differs from the pinned checksum (it is left as it
            is), or the downloaded bytes do (nothing is written).
        OSError: the transfer failed (nothing is written).
        MissingDependencyError: pooch is not installed.
    """
    destination = Path(destination).expanduser()
    algorithm, expected = _split_hash(known_hash)
    if destination.exists() or destination.is_symlink():
        _keep_existing(destination, known_hash)
        return destination
    try:  # imported here: only downloading needs them, loading local copies does not
        import pooch
        import requests
    except ImportError as error:
        raise MissingDependencyError(f"downloading {url} needs the pooch package ({error}): "
                                     "pip install pooch") from None
    # pooch picks a downloader from the scheme; HTTP gets ours so the timeout applies
    downloader = (pooch.HTTPDownloader(progressbar=progressbar, timeout=timeout_s)
                  if urlparse(url).scheme in ("http", "https") else None)
    logger.info("downloading %s to %s", url, destination)
    try:
        pooch.retrieve(url, known_hash=known_hash, fname=destination.name,
                       path=destination.parent, downloader=downloader, progressbar=progressbar)
    except requests.RequestException as error:
        raise DownloadError(f"cannot download {url} ({error}); {destination} was not "
                            "written") from None
    except ValueError as error:
        got = re.search(r"but got (\w+)", str(error))
        if got is None:  # not a checksum mismatch (an unknown URL scheme): a bug, kept
            raise ValueError(f"cannot download {url} ({error}); {destination} was not "
                             "written") from error
        raise DataError(f"download of {url} has {algorithm} {got.group(1)}, expected "
                        f"{expected}: corrupted transfer or changed upstream file; "
                        f"{destination} was not written") from None
    os.chmod(destination, _SHARED_FILE_MODE)
    return destination


def download_files(folder: str | Path, urls: Mapping[str, str],
                   known_hashes: Mapping[str, str], *, progressbar: bool = False,
                   timeout_s: float = 60.0) -> Path:
    """Fetch each ``name -> url`` of ``urls`` to ``folder/name`` with :func:`download_file`,
    checked against ``known_hashes[name]`` (``"md5:<hex>"`` or ``"sha256:<hex>"``).

    Every existing file is checked before anything is fetched, so a stray file is reported
    before minutes of downloading rather than after. Returns ``folder``.
    """
    folder = Path(folder).expanduser()
    for name in urls:
        if (folder / name).exists():
            _keep_existing(folder / name, known_hashes[name])
    for name, url in urls.items():
        download_file(url, folder / name, known_hashes[name], progressbar=progressbar,
                      timeout_s=timeout_s)
    return folder
