"""Omniglot (Lake, Salakhutdinov & Tenenbaum, Science 2015) for few-shot classification.

1623 handwritten characters from 50 alphabets, 20 drawings each, 105x105 1-bit PNGs, shipped
as two sets: ``background`` (30 alphabets, 964 characters) and ``evaluation`` (20 alphabets,
659 characters). The on-disk layout, inside ``<data root>/omniglot/`` (or a folder given
directly), is either the upstream zips or their unpacked folders::

    images_background.zip  or  images_background/<Alphabet>/characterNN/NNNN_DD.png
    images_evaluation.zip   or  images_evaluation/<Alphabet>/characterNN/NNNN_DD.png

A set is decoded once (PNGs read straight from the zip, inverted so strokes are bright,
resized to ``image_size`` with Lanczos) and cached as a ``.npz`` of uint8 images; later loads
read the cache. Local copies are checked by structure (alphabets, 20 drawings per character,
character counts), not by md5: only :func:`download_omniglot` checks upstream md5s, because
re-zipped copies of the same PNGs are equally valid.

Two split protocols are provided by :func:`load_omniglot`:

* ``"vinyals"`` (Vinyals et al. 2016, used by MAML/ProtoNets): background and evaluation
  characters are pooled (1623) in a fixed order, the first 1200 are for training, the other
  423 for testing, and each character rotated by 0/90/180/270 degrees is a separate class.
* ``"lake"`` (Lake et al. 2015): background for training, evaluation for testing, no rotation.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import stat
import time
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor

from attnmeta.files import atomic_write
from attnmeta.tasks.data_root import data_root_path, resolve_data_root
from attnmeta.tasks.sampler import FewShotEpisodes

__all__ = [
    "OMNIGLOT_SETS",
    "OMNIGLOT_URLS",
    "OMNIGLOT_MD5",
    "EXPECTED_CHARACTERS",
    "DRAWINGS_PER_CHARACTER",
    "VINYALS_TRAIN_CHARACTERS",
    "VINYALS_VAL_CHARACTERS",
    "OmniglotSet",
    "OmniglotSplit",
    "download_omniglot",
    "find_omniglot_dir",
    "default_cache_dir",
    "load_omniglot_set",
    "load_omniglot",
    "omniglot_episodes",
]

logger = logging.getLogger(__name__)

OMNIGLOT_SETS: tuple[str, ...] = ("background", "evaluation")
OMNIGLOT_URLS: dict[str, str] = {
    name: f"https://raw.githubusercontent.com/brendenlake/omniglot/master/python/images_{name}.zip"
    for name in OMNIGLOT_SETS
}
# md5 of the upstream zips; only checked on download (local re-zipped copies differ)
OMNIGLOT_MD5: dict[str, str] = {
    "background": "68d2efa1b9178cc56df9314c21c6e718",
    "evaluation": "6b91aef0f799c5bb55b94e3f2daec811",
}
# character counts of the full sets, checked when loading unless expected_characters=None
EXPECTED_CHARACTERS: dict[str, int] = {"background": 964, "evaluation": 659}
DRAWINGS_PER_CHARACTER = 20
VINYALS_TRAIN_CHARACTERS = 1200
VINYALS_VAL_CHARACTERS = 100
ROTATION_DEGREES: tuple[int, ...] = (0, 90, 180, 270)

SPLITS = ("train", "val", "test")
PROTOCOLS = ("vinyals", "lake")
# bump when the decoding changes, so stale caches are rebuilt instead of silently reused
_CACHE_FORMAT = "attnmeta-omniglot-v1"
_DOWNLOAD_CHUNK_BYTES = 1 << 20
# mkstemp creates 0600 files; data and caches are meant to be readable by other users
_SHARED_FILE_MODE = 0o644


# --------------------------------------------------------------------------- download


def _download_verified(url: str, destination: Path, expected_md5: str,
                       timeout_s: float = 60.0) -> None:
    """Fetch ``url`` to ``destination`` atomically, failing if its md5 is not ``expected_md5``.

    The bytes go to a temporary file next to ``destination`` and are renamed into place only
    once the md5 matches, so an interrupted or corrupted download never leaves a file that a
    later load would mistake for a good copy.
    """
    with atomic_write(destination, mode=_SHARED_FILE_MODE) as temp:
        digest = hashlib.md5(usedforsecurity=False)
        with open(temp, "wb") as out, urllib.request.urlopen(url, timeout=timeout_s) as response:
            while chunk := response.read(_DOWNLOAD_CHUNK_BYTES):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != expected_md5:
            raise ValueError(
                f"download of {url} has md5 {digest.hexdigest()}, expected {expected_md5}: "
                f"corrupted transfer or changed upstream file; {destination} was not written"
            )


def download_omniglot(data_root: str | Path | None = None,
                      sets: Sequence[str] = OMNIGLOT_SETS) -> Path:
    """Download the upstream zips into ``<data_root>/omniglot/`` and return that folder.

    ``data_root`` defaults to ``$ATTNMETA_DATA`` or ``~/.cache/attnmeta/data`` and is created
    if missing. A zip already present is kept as is (it may be a valid re-zipped copy whose
    md5 differs from upstream; loading checks its structure). Each new download is checked
    against :data:`OMNIGLOT_MD5` and written atomically (temp file, then ``os.replace``).
    """
    omniglot_dir = data_root_path(data_root) / "omniglot"
    for set_name in sets:
        _check_choice("set", set_name, OMNIGLOT_SETS)
        destination = omniglot_dir / f"images_{set_name}.zip"
        if destination.exists():
            logger.info("keeping existing %s", destination)
            continue
        logger.info("downloading %s to %s", OMNIGLOT_URLS[set_name], destination)
        _download_verified(OMNIGLOT_URLS[set_name], destination, OMNIGLOT_MD5[set_name])
    return omniglot_dir


# --------------------------------------------------------------------------- locating


def _check_choice(name: str, value: Any, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ValueError(f"{name}={value!r}: expected one of {', '.join(map(repr, choices))}")


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
    raise FileNotFoundError(
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
    fingerprint: str  # changes when any PNG is added, removed or changed


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
        raise ValueError(_bad_zip_message(zip_path)) from error
    drawings: dict[tuple[str, str], list[str]] = {}
    fingerprint_lines: list[str] = []
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
            raise ValueError(f"{zip_path}: {info.filename} is not at {_layout_hint(set_name)}")
        drawings.setdefault((parts[1], parts[2]), []).append(info.filename)
        fingerprint_lines.append(f"{info.filename}\t{info.file_size}\t{info.CRC}")
    if f"{top}/" not in top_level:
        found = ", ".join(sorted(top_level)[:5]) or "nothing"
        raise ValueError(f"{zip_path} has no {top}/ top folder: expected "
                         f"{_layout_hint(set_name)}, found {found}")
    return _SetListing(zip_path, set_name, True, _sorted_characters(drawings),
                       _fingerprint(fingerprint_lines))


def _list_folder(folder: Path, set_name: str) -> _SetListing:
    drawings: dict[tuple[str, str], list[str]] = {}
    fingerprint_lines: list[str] = []
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
                        stat = entry.stat()
                        pngs.append(entry.path)
                        fingerprint_lines.append(
                            f"{alphabet_dir.name}/{character_dir.name}/{entry.name}\t"
                            f"{stat.st_size}\t{stat.st_mtime_ns}"
                        )
    return _SetListing(folder, set_name, False, _sorted_characters(drawings),
                       _fingerprint(fingerprint_lines))


def _sorted_characters(drawings: dict[tuple[str, str], list[str]]
                       ) -> list[tuple[str, str, list[str]]]:
    # plain string order: upstream names are zero-padded (character01, 0709_01.png)
    return [(alphabet, character, sorted(drawings[alphabet, character]))
            for alphabet, character in sorted(drawings)]


def _fingerprint(lines: list[str]) -> str:
    digest = hashlib.sha256(_CACHE_FORMAT.encode())
    for line in sorted(lines):
        digest.update(line.encode() + b"\n")
    return digest.hexdigest()


def _check_structure(listing: _SetListing, expected_characters: Mapping[str, int] | None) -> None:
    """Every character has 20 drawings; the set has the full character count if one is expected."""
    set_name, location = listing.set_name, listing.location
    alphabets = {alphabet for alphabet, _, _ in listing.characters}
    if not alphabets:
        raise ValueError(f"{location}: no alphabets found under images_{set_name}/: expected "
                         f"{_layout_hint(set_name)}")
    for alphabet, character, drawings in listing.characters:
        if len(drawings) != DRAWINGS_PER_CHARACTER:
            raise ValueError(f"{location}: {alphabet}/{character} has {len(drawings)} drawings, "
                             f"expected {DRAWINGS_PER_CHARACTER}")
    expected = None if expected_characters is None else expected_characters.get(set_name)
    if expected is not None and len(listing.characters) != expected:
        raise ValueError(
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
    raise FileNotFoundError(
        f"Omniglot {set_name} set not found: expected {zip_path} or an unpacked {folder}/ "
        f"folder (download_omniglot() fetches the zips)"
    )


# --------------------------------------------------------------------------- decoding


def _decode_drawing(png: bytes, image_size: int) -> np.ndarray:
    """One PNG -> uint8 ``[image_size, image_size]`` with strokes bright (255) on 0."""
    with Image.open(io.BytesIO(png)) as image:
        # Omniglot PNGs are black strokes on white; inverting makes the background exactly 0,
        # so zero padding / zero init means "no ink"
        inverted = ImageOps.invert(image.convert("L"))
    return np.asarray(inverted.resize((image_size, image_size), Image.LANCZOS), dtype=np.uint8)


def _decode_listing(listing: _SetListing, image_size: int) -> np.ndarray:
    """All drawings of a set, character by character: uint8 ``[C * 20, S, S]``."""
    members = [member for _, _, drawings in listing.characters for member in drawings]
    images = np.empty((len(members), image_size, image_size), dtype=np.uint8)
    with contextlib.ExitStack() as stack:
        archive = (stack.enter_context(zipfile.ZipFile(listing.location))
                   if listing.is_zip else None)
        for index, member in enumerate(members):
            try:
                png = archive.read(member) if archive is not None else Path(member).read_bytes()
            except (zipfile.BadZipFile, zlib.error, EOFError) as error:
                message = _bad_zip_message(listing.location, f"{member}: {error}")
                raise ValueError(message) from error
            try:
                images[index] = _decode_drawing(png, image_size)
            except (UnidentifiedImageError, OSError, ValueError) as error:
                where = f"{listing.location}: {member}" if listing.is_zip else member
                raise ValueError(f"{where} is not a readable PNG ({error}): expected a 1-bit "
                                 f"Omniglot drawing") from error
    return images


# --------------------------------------------------------------------------- cache


@dataclass(frozen=True)
class OmniglotSet:
    """One decoded Omniglot set (``background`` or ``evaluation``), as cached on disk.

    Attributes:
        set_name: ``"background"`` or ``"evaluation"``.
        images: uint8 ``[C * 20, S, S]``, strokes bright (255) on a 0 background; drawings of
            character ``c`` are rows ``20c .. 20c+19``.
        character_index: int64 ``[C * 20]``, the character (0..C-1) of each image.
        alphabets, characters: ``[C]`` alphabet and character folder names, sorted.
    """

    set_name: str
    images: np.ndarray
    character_index: np.ndarray
    alphabets: list[str]
    characters: list[str]

    @property
    def num_characters(self) -> int:
        return len(self.characters)

    @property
    def character_names(self) -> list[str]:
        """``"Alphabet/characterNN"`` for each character."""
        return [f"{a}/{c}" for a, c in zip(self.alphabets, self.characters)]


def _cache_path(cache_dir: Path, set_name: str, image_size: int) -> Path:
    return cache_dir / f"omniglot_{set_name}_{image_size}px.npz"


def _read_cache(path: Path, listing: _SetListing, image_size: int) -> OmniglotSet | None:
    """The cached set, or None if absent, unreadable, or made from different source PNGs."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as cached:
            if str(cached["fingerprint"]) != listing.fingerprint:
                logger.info("cache %s was built from other data; rebuilding", path)
                return None
            images = cached["images"]
            character_index = cached["character_index"].astype(np.int64)
            alphabets = cached["alphabets"].tolist()
            characters = cached["characters"].tolist()
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
        logger.warning("ignoring unreadable cache %s (%s); rebuilding", path, error)
        return None
    expected_index = np.repeat(np.arange(len(characters)), DRAWINGS_PER_CHARACTER)
    if (images.dtype != np.uint8 or images.shape != (len(expected_index), image_size, image_size)
            or not np.array_equal(character_index, expected_index)):
        logger.warning("cache %s has unexpected contents; rebuilding", path)
        return None
    return OmniglotSet(listing.set_name, images, character_index, alphabets, characters)


def _write_cache_atomically(path: Path, data: OmniglotSet, fingerprint: str) -> None:
    """Write the ``.npz`` to a temp file and rename it, so readers never see half a cache."""
    with atomic_write(path, mode=_SHARED_FILE_MODE) as temp, open(temp, "wb") as out:
        np.savez(out, images=data.images, character_index=data.character_index.astype(np.int32),
                 alphabets=np.array(data.alphabets), characters=np.array(data.characters),
                 fingerprint=np.array(fingerprint), image_size=np.array(data.images.shape[-1]))


def _check_image_size(image_size: Any) -> None:
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)) \
            or image_size < 1:
        raise ValueError(f"image_size={image_size!r}: expected a positive integer")


def load_omniglot_set(data_root: str | Path | None = None, set_name: str = "background",
                      image_size: int = 28, cache_dir: str | Path | None = None,
                      expected_characters: Mapping[str, int] | None = EXPECTED_CHARACTERS,
                      ) -> OmniglotSet:
    """Decode one set (or read it from the cache) after checking its structure.

    Args:
        data_root: data root or Omniglot folder, see :func:`find_omniglot_dir`.
        set_name: ``"background"`` or ``"evaluation"``.
        image_size: side ``S`` of the square images (Lanczos resize of the 105x105 PNGs).
        cache_dir: where ``omniglot_<set>_<S>px.npz`` is kept; default
            :func:`default_cache_dir`. A cache made from other PNGs (the listing's names,
            sizes and CRCs or mtimes differ) is rebuilt.
        expected_characters: character count required per set name (default: the full
            sets, 964 and 659); None accepts any count, e.g. for a partial or synthetic copy.
    """
    _check_choice("set_name", set_name, OMNIGLOT_SETS)
    _check_image_size(image_size)
    omniglot_dir = find_omniglot_dir(data_root)
    listing = _list_set(omniglot_dir, set_name)
    _check_structure(listing, expected_characters)
    cache_root = Path(cache_dir).expanduser() if cache_dir is not None \
        else default_cache_dir(omniglot_dir)
    cache_file = _cache_path(cache_root, set_name, int(image_size))
    cached = _read_cache(cache_file, listing, int(image_size))
    if cached is not None:
        return cached
    started = time.perf_counter()
    images = _decode_listing(listing, int(image_size))
    data = OmniglotSet(
        set_name=set_name,
        images=images,
        character_index=np.repeat(np.arange(len(listing.characters)), DRAWINGS_PER_CHARACTER),
        alphabets=[alphabet for alphabet, _, _ in listing.characters],
        characters=[character for _, character, _ in listing.characters],
    )
    logger.info("decoded %d Omniglot %s drawings from %s in %.1f s", len(images), set_name,
                listing.location, time.perf_counter() - started)
    try:
        _write_cache_atomically(cache_file, data, listing.fingerprint)
    except OSError as error:
        raise OSError(f"cannot write Omniglot cache {cache_file} ({error}): pass a writable "
                      f"cache_dir") from error
    return data


# --------------------------------------------------------------------------- splits


@dataclass
class OmniglotSplit:
    """Images and class labels of one split, ready for :func:`omniglot_episodes`.

    Attributes:
        images: float32 ``[N, 1, S, S]`` in [0, 1], strokes bright, background 0.
        labels: int64 ``[N]``, class ids ``0..C-1`` within this split; class ``c`` owns the
            20 consecutive rows ``20c .. 20c+19``.
        class_names: ``[C]``, ``"Alphabet/characterNN/rot90"`` (or ``"Alphabet/characterNN"``
            without rotations).
        protocol, split: how the split was made.
    """

    images: Tensor
    labels: Tensor
    class_names: list[str]
    protocol: str = ""
    split: str = ""

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def _assemble_split(pieces: Sequence[tuple[OmniglotSet, np.ndarray]], rotations: bool,
                    protocol: str, split: str) -> OmniglotSplit:
    """Stack the chosen characters of each set; with rotations each becomes 4 classes."""
    per_character, names = [], []
    for data, chosen in pieces:
        size = data.images.shape[-1]
        grouped = data.images.reshape(data.num_characters, DRAWINGS_PER_CHARACTER, size, size)
        per_character.append(grouped[chosen])
        names.extend(data.character_names[i] for i in chosen.tolist())
    characters = np.concatenate(per_character)  # [C, 20, S, S]
    if rotations:
        # np.rot90 turns counter-clockwise; class order is character-major: (c, rot0..rot270)
        characters = np.stack([np.rot90(characters, k, axes=(-2, -1))
                               for k in range(len(ROTATION_DEGREES))], axis=1)
        names = [f"{name}/rot{degrees}" for name in names for degrees in ROTATION_DEGREES]
    size = characters.shape[-1]
    flat = np.ascontiguousarray(characters.reshape(-1, size, size))
    images = torch.from_numpy(flat).unsqueeze(1).float().div_(255.0)
    labels = torch.arange(len(names), dtype=torch.int64).repeat_interleave(DRAWINGS_PER_CHARACTER)
    return OmniglotSplit(images, labels, names, protocol, split)


def load_omniglot(data_root: str | Path | None = None, split: str = "train",
                  protocol: str = "vinyals", image_size: int = 28, rotations: bool | None = None,
                  cache_dir: str | Path | None = None,
                  expected_characters: Mapping[str, int] | None = EXPECTED_CHARACTERS,
                  num_train_characters: int = VINYALS_TRAIN_CHARACTERS,
                  num_val_characters: int = VINYALS_VAL_CHARACTERS) -> OmniglotSplit:
    """One Omniglot split under a standard protocol.

    ``protocol="vinyals"``: all characters are pooled in this exact order: background
    characters sorted by (alphabet folder name, character folder name), then evaluation
    characters sorted the same way (1623 in all). ``"train"`` is the first
    ``num_train_characters`` (1200) of them, ``"test"`` the rest (423). ``"val"`` is the
    last ``num_val_characters`` (100) of the *training* characters: it overlaps ``"train"``,
    so it only tracks fitting progress; for a held-out validation set, train on a subset.
    Rotations default to on (4 classes per character: train 4800, test 1692 classes).

    ``protocol="lake"``: ``"train"`` is the background set (964 characters), ``"test"`` the
    evaluation set (659); there is no ``"val"``. Rotations default to off.

    Args:
        data_root: data root or Omniglot folder, see :func:`find_omniglot_dir`.
        split: ``"train"``, ``"val"`` or ``"test"``.
        protocol: ``"vinyals"`` or ``"lake"``.
        image_size: side ``S`` of the returned ``[N, 1, S, S]`` images.
        rotations: make 0/90/180/270-degree copies separate classes; None = protocol default.
        cache_dir: see :func:`load_omniglot_set`.
        expected_characters: see :func:`load_omniglot_set` (None for partial/synthetic sets).
        num_train_characters, num_val_characters: Vinyals split sizes (only change them for
            partial or synthetic data).
    """
    _check_choice("split", split, SPLITS)
    _check_choice("protocol", protocol, PROTOCOLS)
    _check_image_size(image_size)
    if rotations is None:
        rotations = protocol == "vinyals"

    def load(set_name: str) -> OmniglotSet:
        return load_omniglot_set(data_root, set_name, image_size, cache_dir, expected_characters)

    if protocol == "lake":
        if split == "val":
            raise ValueError("split='val' is not defined for protocol='lake': expected 'train' "
                             "or 'test'")
        data = load("background" if split == "train" else "evaluation")
        return _assemble_split([(data, np.arange(data.num_characters))], rotations, protocol,
                               split)

    background, evaluation = load("background"), load("evaluation")
    total = background.num_characters + evaluation.num_characters
    if not 0 < num_train_characters < total:
        raise ValueError(f"num_train_characters={num_train_characters}: expected 1..{total - 1} "
                         f"to leave test characters among the {total} found")
    if not 0 < num_val_characters <= num_train_characters:
        raise ValueError(f"num_val_characters={num_val_characters}: expected "
                         f"1..{num_train_characters} (val is taken from the training characters)")
    start, stop = {"train": (0, num_train_characters),
                   "val": (num_train_characters - num_val_characters, num_train_characters),
                   "test": (num_train_characters, total)}[split]
    pooled = np.arange(start, stop)  # positions in the background-then-evaluation order
    from_background = pooled[pooled < background.num_characters]
    from_evaluation = pooled[pooled >= background.num_characters] - background.num_characters
    pieces = [(data, chosen) for data, chosen in ((background, from_background),
                                                  (evaluation, from_evaluation)) if chosen.size]
    return _assemble_split(pieces, rotations, protocol, split)


def omniglot_episodes(split: OmniglotSplit, n_way: int = 5, k_shot: int = 1, q_query: int = 15,
                      num_episodes: int = 1000, seed: int = 0,
                      transform: Callable[[Tensor], Tensor] | None = None) -> FewShotEpisodes:
    """Seeded N-way K-shot episodes over a split (``support_x [N*K, 1, S, S]``, etc.).

    ``k_shot + q_query`` must be at most 20, the drawings per character.
    """
    # plain ints: FewShotEpisodes groups by label, and tensor elements would need .item() each
    return FewShotEpisodes(split.images, split.labels.tolist(), n_way=n_way, k_shot=k_shot,
                           q_query=q_query, num_episodes=num_episodes, seed=seed,
                           transform=transform)
