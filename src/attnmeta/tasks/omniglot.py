"""Omniglot (Lake, Salakhutdinov & Tenenbaum, Science 2015) for few-shot classification.

1623 handwritten characters from 50 alphabets, 20 drawings each, 105x105 1-bit PNGs, shipped
as two sets: ``background`` (30 alphabets, 964 characters) and ``evaluation`` (20 alphabets,
659 characters), as upstream zips or their unpacked folders inside ``<data root>/omniglot/``
(layout, locating, structure checks and :func:`download_omniglot` are in
:mod:`attnmeta.tasks.omniglot_files`; they are re-exported here).

A set is decoded once (PNGs read straight from the zip, inverted so strokes are bright,
resized to ``image_size`` with Lanczos) and cached as a ``.npz`` of uint8 images; later loads
read the cache. Local copies are checked by structure (alphabets, 20 drawings per character,
character counts), not by md5, because re-zipped copies of the same PNGs are equally valid;
only :func:`download_omniglot` compares md5s with upstream.

Two split protocols are provided by :func:`load_omniglot`:

* ``"vinyals"`` (Vinyals et al. 2016, used by MAML/ProtoNets): background and evaluation
  characters are pooled (1623) in a fixed order; of the first 1200 (Vinyals' training
  characters) the first 1100 are ``"train"`` and the next 100 ``"val"`` (disjoint, for model
  selection), the other 423 are ``"test"``; each character rotated by 0/90/180/270 degrees
  is a separate class. 1100 / 100 / 423 is also MAML's split (cbfinn/maml,
  data_generator.py lines 46-54: ``num_val = 100``, ``num_train = 1200 - num_val``), though
  MAML orders the characters by a seeded shuffle rather than by name.
* ``"lake"`` (Lake et al. 2015): background for training, evaluation for testing, no rotation;
  ``"val"`` is the last 5 background alphabets by folder name (Ojibwe, Sanskrit, Syriac
  (Estrangelo), Tagalog, Tifinagh: 151 characters), so ``"train"`` is the other 25 (813
  characters): alphabet-disjoint from training, as the test set is. ``background="small1"``
  or ``"small2"`` carves train and val from one of Lake et al.'s minimal background sets
  instead (5 alphabets, 136 / 156 characters; the last alphabet is ``"val"``); the test set
  is still the evaluation set.

Splits made before the validation split was carved out trained on all 1200 Vinyals
characters (all 964 background characters for Lake): results made with them are not
comparable character for character with runs made now.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import time
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor

from attnmeta.errors import ConfigError, DataError
from attnmeta.files import atomic_write
from attnmeta.tasks.omniglot_files import (DRAWINGS_PER_CHARACTER, EXPECTED_CHARACTERS,
                                           OMNIGLOT_MD5, OMNIGLOT_SETS, OMNIGLOT_URLS,
                                           _bad_zip_message, _check_choice, _check_structure,
                                           _list_set, _SetListing, default_cache_dir,
                                           download_omniglot, find_omniglot_dir)
from attnmeta.tasks.registry import DatasetEntry, register_dataset
from attnmeta.tasks.sampler import FewShotEpisodes
from attnmeta.tasks.splits import ImageSplit

__all__ = [
    "OMNIGLOT_SETS",
    "OMNIGLOT_URLS",
    "OMNIGLOT_MD5",
    "EXPECTED_CHARACTERS",
    "DRAWINGS_PER_CHARACTER",
    "VINYALS_TRAIN_CHARACTERS",
    "VINYALS_VAL_CHARACTERS",
    "LAKE_VAL_ALPHABETS",
    "LAKE_SMALL_VAL_ALPHABETS",
    "BACKGROUND_SETS",
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

VINYALS_TRAIN_CHARACTERS = 1200
VINYALS_VAL_CHARACTERS = 100
LAKE_VAL_ALPHABETS = 5
LAKE_SMALL_VAL_ALPHABETS = 1  # of a minimal background set's 5 alphabets
ROTATION_DEGREES: tuple[int, ...] = (0, 90, 180, 270)

SPLITS = ("train", "val", "test")
PROTOCOLS = ("vinyals", "lake")
# protocol lake's background: the full set, or one of Lake et al.'s minimal (5-alphabet) sets
BACKGROUND_SETS: dict[str, str] = {"full": "background", "small1": "background_small1",
                                   "small2": "background_small2"}
# bump when the decoding changes, so stale caches are rebuilt instead of silently reused
_CACHE_FORMAT = "attnmeta-omniglot-v1"
# mkstemp creates 0600 files; data and caches are meant to be readable by other users
_SHARED_FILE_MODE = 0o644


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
                raise DataError(message) from error
            try:  # the decode alone: a wrong shape stored below is a bug, not the file's
                drawing = _decode_drawing(png, image_size)
            except (UnidentifiedImageError, OSError, ValueError) as error:
                where = f"{listing.location}: {member}" if listing.is_zip else member
                raise DataError(f"{where} is not a readable PNG ({error}): expected a 1-bit "
                                f"Omniglot drawing") from error
            images[index] = drawing
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


def _fingerprint(listing: _SetListing) -> str:
    """Changes when any PNG of the set is added, removed or changed, or the format bumps."""
    digest = hashlib.sha256(_CACHE_FORMAT.encode())
    for line in sorted(listing.stamps):
        digest.update(line.encode() + b"\n")
    return digest.hexdigest()


def _read_cache(path: Path, listing: _SetListing, image_size: int) -> OmniglotSet | None:
    """The cached set, or None if absent, unreadable, or made from different source PNGs."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as cached:
            if str(cached["fingerprint"]) != _fingerprint(listing):
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
        raise ConfigError(f"image_size={image_size!r}: expected a positive integer")


def load_omniglot_set(data_root: str | Path | None = None, set_name: str = "background",
                      image_size: int = 28, cache_dir: str | Path | None = None,
                      expected_characters: Mapping[str, int] | None = EXPECTED_CHARACTERS,
                      ) -> OmniglotSet:
    """Decode one set (or read it from the cache) after checking its structure.

    Args:
        data_root: data root or Omniglot folder, see :func:`find_omniglot_dir`.
        set_name: ``"background"``, ``"evaluation"``, ``"background_small1"`` or
            ``"background_small2"``.
        image_size: side ``S`` of the square images (Lanczos resize of the 105x105 PNGs).
        cache_dir: where ``omniglot_<set>_<S>px.npz`` is kept; default
            :func:`default_cache_dir`. A cache made from other PNGs (the listing's names,
            sizes and CRCs or mtimes differ) is rebuilt.
        expected_characters: character count required per set name (default: complete
            sets, 964, 659, 136 and 156); None accepts any count, e.g. for a partial or
            synthetic copy.
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
        _write_cache_atomically(cache_file, data, _fingerprint(listing))
    except OSError as error:
        raise OSError(f"cannot write Omniglot cache {cache_file} ({error}): pass a writable "
                      f"cache_dir") from error
    return data


# --------------------------------------------------------------------------- splits


@dataclass
class OmniglotSplit(ImageSplit):
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

    @property
    def class_alphabets(self) -> list[str]:
        """``[C]``, the alphabet of each class (the groups of within-alphabet episodes)."""
        return [name.split("/", 1)[0] for name in self.class_names]


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
                  num_val_characters: int = VINYALS_VAL_CHARACTERS,
                  num_val_alphabets: int | None = None,
                  background: str = "full") -> OmniglotSplit:
    """One Omniglot split under a standard protocol.

    ``protocol="vinyals"``: all characters are pooled in this exact order: background
    characters sorted by (alphabet folder name, character folder name), then evaluation
    characters sorted the same way (1623 in all). The first ``num_train_characters`` (1200)
    are Vinyals' training characters: ``"val"`` is the last ``num_val_characters`` (100) of
    them and ``"train"`` the others (1100), so the two share no character; ``"test"`` is the
    rest (423). Rotations default to on (4 classes per character: train 4400, val 400,
    test 1692 classes).

    ``protocol="lake"``: ``"test"`` is the evaluation set (20 alphabets, 659 characters);
    ``"val"`` the last ``num_val_alphabets`` (5) background alphabets in folder-name order
    (151 characters) and ``"train"`` the other background alphabets (25, 813 characters), so
    no alphabet is in two splits. Rotations default to off. With ``background="small1"`` or
    ``"small2"``, train and val come from that minimal background set instead, and val is its
    last alphabet by default (small1: Latin, 26 characters, train 110; small2: Tagalog, 17
    characters, train 139).

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
        num_val_alphabets: Lake: background alphabets held out as ``"val"``; None = 5
            (:data:`LAKE_VAL_ALPHABETS`) for the full background set, 1 for a small one.
        background: Lake: ``"full"``, ``"small1"`` or ``"small2"``, the background set that
            train and val are carved from (only ``"full"`` with ``protocol="vinyals"``).
    """
    _check_choice("split", split, SPLITS)
    _check_choice("protocol", protocol, PROTOCOLS)
    _check_choice("background", background, tuple(BACKGROUND_SETS))
    if protocol == "vinyals" and background != "full":
        raise ConfigError(f"background={background!r}: expected 'full' with protocol='vinyals' "
                          f"(the minimal background sets are for protocol='lake')")
    _check_image_size(image_size)
    if num_val_alphabets is None:
        num_val_alphabets = LAKE_VAL_ALPHABETS if background == "full" \
            else LAKE_SMALL_VAL_ALPHABETS
    if rotations is None:
        rotations = protocol == "vinyals"

    def load(set_name: str) -> OmniglotSet:
        return load_omniglot_set(data_root, set_name, image_size, cache_dir, expected_characters)

    if protocol == "lake":
        if split == "test":
            data = load("evaluation")
            return _assemble_split([(data, np.arange(data.num_characters))], rotations,
                                   protocol, split)
        data = load(BACKGROUND_SETS[background])
        alphabets = sorted(set(data.alphabets))
        if isinstance(num_val_alphabets, bool) or not isinstance(num_val_alphabets, int) \
                or not 0 < num_val_alphabets < len(alphabets):
            raise ConfigError(f"num_val_alphabets={num_val_alphabets!r}: expected 1.."
                              f"{len(alphabets) - 1} to leave training alphabets among the "
                              f"{len(alphabets)} background alphabets")
        held_out = set(alphabets[-num_val_alphabets:])
        in_val = np.array([alphabet in held_out for alphabet in data.alphabets])
        chosen = np.flatnonzero(in_val if split == "val" else ~in_val)
        return _assemble_split([(data, chosen)], rotations, protocol, split)

    background, evaluation = load("background"), load("evaluation")
    total = background.num_characters + evaluation.num_characters
    if not 0 < num_train_characters < total:
        raise ConfigError(f"num_train_characters={num_train_characters}: expected 1..{total - 1} "
                          f"to leave test characters among the {total} found")
    if not 0 < num_val_characters < num_train_characters:
        raise ConfigError(f"num_val_characters={num_val_characters}: expected "
                          f"1..{num_train_characters - 1} (val is carved from the "
                          f"{num_train_characters} training characters, leaving some to train on)")
    start, stop = {"train": (0, num_train_characters - num_val_characters),
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


def _load(config: Any, split: str, tokenizer: object) -> OmniglotSplit:
    data = config.data
    # rotated training classes only: val and test keep the protocol's (unrotated) characters
    rotations = True if data.rotations == "train" and split == "train" else None
    return load_omniglot(data.root, split=split, protocol=data.protocol,
                         image_size=data.image_size, background=data.background,
                         rotations=rotations)


# within-alphabet episodes: a model trained on the background alphabets only (protocol lake)
register_dataset("omniglot", DatasetEntry(_load, download=download_omniglot, inverted=True,
                                          alphabets=lambda data: data.protocol == "lake"))
