"""Where Omniglot's files are, how to fetch them, and what a complete copy holds.

The on-disk layout, inside ``<data root>/omniglot/`` (or a folder given directly), is either
the upstream zips or their unpacked folders::

    images_background.zip  or  images_background/<Alphabet>/characterNN/NNNN_DD.png
    images_evaluation.zip   or  images_evaluation/<Alphabet>/characterNN/NNNN_DD.png
    images_background_small1.zip  or  images_background_small1/<Alphabet>/...  (optional)
    images_background_small2.zip  or  images_background_small2/<Alphabet>/...  (optional)

The two small sets are Lake et al.'s "minimal" background sets (5 alphabets each, drawn from
the background set), for training on few alphabets; only the two full sets are downloaded
unless ``sets`` names the small ones.

Loading checks a copy by structure (alphabets, 20 drawings per character, character
counts), not by md5, because re-zipped copies of the same PNGs are equally valid. Only
:func:`download_omniglot` compares md5s with the upstream zips: it keeps a zip already
present only if it is byte-identical to upstream, and otherwise refuses and leaves it be.
Decoding and caching live in :mod:`attnmeta.tasks.omniglot`.
"""

from __future__ import annotations

import contextlib
import os
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from attnmeta.errors import ConfigError, DataError, MissingDataError
from attnmeta.tasks.data_root import data_root_path, resolve_data_root
from attnmeta.tasks.download import download_files

__all__ = ["OMNIGLOT_SETS", "DEFAULT_DOWNLOAD_SETS", "OMNIGLOT_URLS", "OMNIGLOT_MD5",
           "EXPECTED_CHARACTERS", "DRAWINGS_PER_CHARACTER", "download_omniglot",
           "find_omniglot_dir", "default_cache_dir"]

# the full sets, then Lake et al.'s minimal background sets (subsets of "background")
OMNIGLOT_SETS: tuple[str, ...] = ("background", "evaluation", "background_small1",
                                  "background_small2")
# what download_omniglot fetches unless told otherwise
DEFAULT_DOWNLOAD_SETS: tuple[str, ...] = ("background", "evaluation")
OMNIGLOT_URLS: dict[str, str] = {
    name: f"https://raw.githubusercontent.com/brendenlake/omniglot/master/python/images_{name}.zip"
    for name in OMNIGLOT_SETS
}
# md5 of the upstream zips; only checked on download (local re-zipped copies differ)
OMNIGLOT_MD5: dict[str, str] = {
    "background": "68d2efa1b9178cc56df9314c21c6e718",
    "evaluation": "6b91aef0f799c5bb55b94e3f2daec811",
    # computed from copies that the shared data's SOURCE.md records as byte-identical to
    # upstream (sha256 f38eb80f...cb8a4 for small1, 3ccaa407...1c7f for small2)
    "background_small1": "e704a628b5459e08445c13499850abc4",
    "background_small2": "b75a71a51d3b13f821f212756fe481fd",
}
# character counts of each complete set, checked when loading unless expected_characters=None
# (small1: Balinese, Early_Aramaic, Greek, Korean, Latin; small2: Greek, Japanese_(katakana),
# Latin, Sanskrit, Tagalog; 5 alphabets each)
EXPECTED_CHARACTERS: dict[str, int] = {"background": 964, "evaluation": 659,
                                       "background_small1": 136, "background_small2": 156}
DRAWINGS_PER_CHARACTER = 20


# --------------------------------------------------------------------------- download


def download_omniglot(data_root: str | Path | None = None,
                      sets: Sequence[str] = DEFAULT_DOWNLOAD_SETS) -> Path:
    """Download the upstream zips into ``<data_root>/omniglot/`` and return that folder.

    ``sets`` defaults to the two full sets; name ``"background_small1"`` or
    ``"background_small2"`` to fetch Lake et al.'s minimal background sets too.

    ``data_root`` defaults to ``$ATTNMETA_DATA`` or ``~/.cache/attnmeta/data`` and is created
    if missing. Each zip is checked against :data:`OMNIGLOT_MD5` (see
    :func:`attnmeta.tasks.download.download_file`): one already present is kept if its md5
    matches, and refused with a ``ValueError`` (left untouched) if not; a new download that
    does not match is not written.
    """
    for set_name in sets:
        _check_choice("set", set_name, OMNIGLOT_SETS)
    names = {set_name: f"images_{set_name}.zip" for set_name in sets}
    return download_files(data_root_path(data_root) / "omniglot",
                          {names[s]: OMNIGLOT_URLS[s] for s in sets},
                          {names[s]: f"md5:{OMNIGLOT_MD5[s]}" for s in sets})


# --------------------------------------------------------------------------- locating


def _check_choice(name: str, value: Any, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ConfigError(f"{name}={value!r}: expected one of {', '.join(map(repr, choices))}")


def _set_paths(omniglot_dir: Path, set_name: str) -> tuple[Path, Path]:
    """The unpacked folder and the zip that may hold one set."""
    return omniglot_dir / f"images_{set_name}", omniglot_dir / f"images_{set_name}.zip"


def find_omniglot_dir(data_root: str | Path | None = None) -> Path:
    """The folder holding the Omniglot zips or unpacked folders.

    ``data_root`` (default ``$ATTNMETA_DATA``, else ``~/.cache/attnmeta/data``) may be the
    data root, whose ``omniglot/`` sub-folder is used, or the Omniglot folder itself.
    """
    root = resolve_data_root(data_root)
    if (root / "omniglot").is_dir():
        return root / "omniglot"
    if any(path.exists() for name in OMNIGLOT_SETS for path in _set_paths(root, name)):
        return root
    raise MissingDataError(
        f"no Omniglot data under {root}: expected {root / 'omniglot'}/images_background.zip "
        f"(or an unpacked images_background/ folder); `attnmeta download omniglot "
        f"--data-root {root}` fetches it"
    )


def _writable_dir(path: Path) -> bool:
    """Whether ``path`` is a folder we may write into.

    Root passes ``os.access`` on any folder, so the mode bits are checked too: a shared data
    copy marked read-only (``r-xr-xr-x``) must not gain a cache folder just because the
    process runs as root.
    """
    try:
        mode = path.stat().st_mode
    except OSError:
        return False
    any_write_bit = stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH
    return stat.S_ISDIR(mode) and bool(mode & any_write_bit) \
        and os.access(path, os.W_OK | os.X_OK)


def default_cache_dir(omniglot_dir: Path) -> Path:
    """``<omniglot_dir>/cache`` if it is (or can be made) a writable folder, else
    ``~/.cache/attnmeta``.

    Shared read-only data copies are common (cluster scratch, containers), hence the fallback;
    ``<omniglot_dir>/cache`` is only created when ``omniglot_dir`` itself is writable.
    """
    preferred = omniglot_dir / "cache"
    if not preferred.exists() and _writable_dir(omniglot_dir):
        with contextlib.suppress(OSError):
            preferred.mkdir()
    if _writable_dir(preferred):
        return preferred
    return Path("~/.cache/attnmeta").expanduser()


# --------------------------------------------------------------------------- listing


@dataclass(frozen=True)
class _SetListing:
    """Where one set's PNGs are, grouped by character, in the order they are decoded."""

    location: Path  # the zip, or the unpacked images_<set> folder
    set_name: str
    is_zip: bool
    # sorted by (alphabet, character); each character's drawings sorted by file name
    characters: list[tuple[str, str, list[str]]]
    # "<member>\t<size>\t<CRC or mtime>" per PNG: what the cache fingerprint is made of
    stamps: list[str]


def _bad_zip_message(zip_path: Path, detail: str = "") -> str:
    folder = zip_path.with_suffix("")
    detail = f" ({detail})" if detail else ""
    return (f"{zip_path} is not a valid zip archive (corrupt or truncated){detail}: delete it "
            f"and download again, or unpack a good copy to {folder}/")


def _layout_hint(set_name: str) -> str:
    return f"images_{set_name}/<Alphabet>/<character>/<drawing>.png"


def _list_zip(zip_path: Path, set_name: str) -> _SetListing:
    top = f"images_{set_name}"
    try:
        with zipfile.ZipFile(zip_path) as archive:
            infos = archive.infolist()
    except zipfile.BadZipFile as error:
        raise DataError(_bad_zip_message(zip_path)) from error
    drawings: dict[tuple[str, str], list[str]] = {}
    stamps: list[str] = []
    top_level: set[str] = set()
    for info in infos:
        parts = info.filename.rstrip("/").split("/")
        # macOS zips carry resource forks and dot files that are not data
        if parts[0] == "__MACOSX" or parts[-1].startswith("."):
            continue
        top_level.add(parts[0] + ("/" if len(parts) > 1 or info.is_dir() else ""))
        if parts[0] != top:
            continue
        if info.is_dir():
            if len(parts) == 3:  # an (empty?) character folder: counted so 0 drawings is caught
                drawings.setdefault((parts[1], parts[2]), [])
            continue
        if not parts[-1].lower().endswith(".png"):
            continue
        if len(parts) != 4:
            raise DataError(f"{zip_path}: {info.filename} is not at {_layout_hint(set_name)}")
        drawings.setdefault((parts[1], parts[2]), []).append(info.filename)
        stamps.append(f"{info.filename}\t{info.file_size}\t{info.CRC}")
    if f"{top}/" not in top_level:
        found = ", ".join(sorted(top_level)[:5]) or "nothing"
        raise DataError(f"{zip_path} has no {top}/ top folder: expected "
                        f"{_layout_hint(set_name)}, found {found}")
    return _SetListing(zip_path, set_name, True, _sorted_characters(drawings), stamps)


def _list_folder(folder: Path, set_name: str) -> _SetListing:
    drawings: dict[tuple[str, str], list[str]] = {}
    stamps: list[str] = []
    for alphabet_dir in folder.iterdir():
        if not alphabet_dir.is_dir() or alphabet_dir.name.startswith("."):
            continue
        for character_dir in alphabet_dir.iterdir():
            if not character_dir.is_dir() or character_dir.name.startswith("."):
                continue
            pngs = drawings.setdefault((alphabet_dir.name, character_dir.name), [])
            with os.scandir(character_dir) as entries:
                for entry in entries:
                    if entry.is_file() and entry.name.lower().endswith(".png"):
                        info = entry.stat()
                        pngs.append(entry.path)
                        stamps.append(f"{alphabet_dir.name}/{character_dir.name}/{entry.name}\t"
                                      f"{info.st_size}\t{info.st_mtime_ns}")
    return _SetListing(folder, set_name, False, _sorted_characters(drawings), stamps)


def _sorted_characters(drawings: dict[tuple[str, str], list[str]]
                       ) -> list[tuple[str, str, list[str]]]:
    # plain string order: upstream names are zero-padded (character01, 0709_01.png)
    return [(alphabet, character, sorted(drawings[alphabet, character]))
            for alphabet, character in sorted(drawings)]


def _check_structure(listing: _SetListing, expected_characters: Mapping[str, int] | None) -> None:
    """Every character has 20 drawings; the set has the full character count if one is expected."""
    set_name, location = listing.set_name, listing.location
    alphabets = {alphabet for alphabet, _, _ in listing.characters}
    if not alphabets:
        raise DataError(f"{location}: no alphabets found under images_{set_name}/: expected "
                        f"{_layout_hint(set_name)}")
    for alphabet, character, drawings in listing.characters:
        if len(drawings) != DRAWINGS_PER_CHARACTER:
            raise DataError(f"{location}: {alphabet}/{character} has {len(drawings)} drawings, "
                            f"expected {DRAWINGS_PER_CHARACTER}")
    expected = None if expected_characters is None else expected_characters.get(set_name)
    if expected is not None and len(listing.characters) != expected:
        raise DataError(
            f"{location} has {len(listing.characters)} characters in {len(alphabets)} alphabets, "
            f"expected {expected} for the full Omniglot {set_name} set (incomplete copy? pass "
            f"expected_characters=None to accept a partial set)"
        )


def _list_set(omniglot_dir: Path, set_name: str) -> _SetListing:
    # an unpacked folder wins over the zip: it is what a user who unzipped by hand works with
    folder, zip_path = _set_paths(omniglot_dir, set_name)
    if folder.is_dir():
        return _list_folder(folder, set_name)
    if zip_path.is_file():
        return _list_zip(zip_path, set_name)
    raise MissingDataError(
        f"Omniglot {set_name} set not found: expected {zip_path} or an unpacked {folder}/ "
        f"folder (download_omniglot() fetches the zips)"
    )
