"""Emoji drawn in two styles (emoji-data 16.0.0: Google / Noto and Twitter / Twemoji), split
by class for cross-style few-shot classification.

Files, inside ``<data root>/emoji/`` (or a folder given directly), as the npm packages
``emoji-datasource-google@16.0.0`` and ``emoji-datasource-twitter@16.0.0`` ship them
(:func:`download_emoji` fetches and unpacks those)::

    emoji.json      [{"name", "short_name", "image", "category", "subcategory",
                      "skin_variations": {"1F3FB": {"image", ...}, ...}?, ...}, ...]  1911 emoji
    google/*.png    64 x 64 (RGBA; a few LA or palette with transparency), one per emoji and
                    per skin-tone variant (3786)
    twitter/*.png   the same file names in the other style

Licences: emoji-data MIT, Google images Apache 2.0, Twitter images CC BY 4.0 (attribute both
when showing them).

**Classes.** Every emoji of ``emoji.json`` is one class, named by its ``short_name`` (unique;
``name`` is not: two emoji are "MAN IN TUXEDO"), except the category ``Component``: its five
skin-tone swatches (the hair-style components are not among the 1911) are parts of other
emoji, not pictures of their own, and are left out: 1906 classes. A skin-tone variant is never
a class of its own: with ``variants=True`` the five single-tone variants (modifiers
``1F3FB`` .. ``1F3FF``) are extra examples of their base emoji. Of the 13 two-person emoji
with 25 variants (every pair of tones, e.g. HANDSHAKE) only the five where both people share
one tone (``1F3FB-1F3FB`` ...) are taken, so every class with variants has the same 6 images
per style (base + 5 tones); the 20 mixed-tone ones of each are left out.

**Which classes can serve K > 1 in one style**: only the 323 emoji with skin-tone variants
(hands, people, body parts: 123 train / 100 val / 100 test classes), and only when loaded with
``variants=True`` (6 images per style). Every other class has exactly one image per style.

**Class split** (fixed; :func:`emoji_class_split`), by whole subcategories (98 once Component's
``skin-tone`` is gone), so look-alike emoji of one subcategory (the faces of ``face-smiling``,
the man / woman / person forms of one ``person-role``) never straddle splits:

1. a subcategory holding more than 5% of the 1906 emoji always goes to train: only
   ``country-flag`` (259 emoji); otherwise whichever split drew it would be two-thirds flags;
2. the other subcategories are ordered by the SHA-256 of their UTF-8 names (a fixed, seed-free
   shuffle) and taken in that order into test until it holds at least 20% of the 1906 emoji,
   then into val until it holds at least 15%;
3. the rest go to train.

Result: test 404 classes (20 subcategories), val 287 (17), train 1215 (61). Subcategories of
one category may still land in different splits (``face-smiling`` is test, ``face-concerned``
val, ``face-hand`` train).

Each class of a split is a row block in the split's items (base image first, then the tones
in modifier order, Google before Twitter for ``style="both"``); classes are sorted by name.
Images are read as RGBA, composited on white (their transparent background becomes 1.0),
then converted to RGB (or grey) and resized with Lanczos when ``image_size`` is not 64.
Decoded images are kept in memory per style and size, so loading several splits decodes
each PNG once.

Cross-style episodes (:func:`cross_style_episodes`) take their support from one style and
their queries from the other: a model must recognise the Twitter drawing of an emoji it has
seen only as Google's. The generic sampler over a ``style="both"`` split with 1-shot 1-query
episodes is cross-style too (each class then has exactly two images, one per style).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import numbers
import os
import re
import shutil
import tarfile
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor
from torch.utils.data import Dataset

from attnmeta.errors import ConfigError, DataError, MissingDataError
from attnmeta.files import atomic_write, file_digest
from attnmeta.tasks.data_root import data_root_path, find_dataset_dir
from attnmeta.tasks.download import download_files
from attnmeta.tasks.episode import Episode
from attnmeta.tasks.registry import DatasetEntry, register_dataset
from attnmeta.tasks.splits import ImageSplit
from attnmeta.tasks.text import ordered_by_digest

__all__ = ["EMOJI_STYLES", "EMOJI_SPLITS", "SKIN_TONES", "EXCLUDED_CATEGORY", "EMOJI_URLS",
           "EMOJI_SHA256", "EMOJI_JSON_SHA256", "EXPECTED_CLASSES", "EmojiClass", "EmojiSplit",
           "CrossStyleEpisodes", "find_emoji_dir", "read_emoji", "emoji_subcategory_split",
           "emoji_class_split", "load_emoji", "cross_style_episodes", "download_emoji"]

logger = logging.getLogger(__name__)

EMOJI_STYLES: tuple[str, ...] = ("google", "twitter")
EMOJI_SPLITS: tuple[str, ...] = ("train", "val", "test")
# the five Fitzpatrick modifiers, in the order a class's variant images are listed
SKIN_TONES: tuple[str, ...] = ("1F3FB", "1F3FC", "1F3FD", "1F3FE", "1F3FF")
EXCLUDED_CATEGORY = "Component"
# step 2 of the class split: test first, then val, each until it holds this share of emoji
SPLIT_FRACTIONS: dict[str, float] = {"test": 0.20, "val": 0.15}
# step 1: a subcategory with more than this share of all emoji stays in train
LARGE_SUBCATEGORY_FRACTION = 0.05
# the class split of the full emoji-data 16.0.0 set (1911 emoji, 1906 classes)
FULL_EMOJI_COUNT = 1911
EXPECTED_CLASSES: dict[str, int] = {"train": 1215, "val": 287, "test": 404}
NATIVE_SIZE = 64

_VERSION = "16.0.0"
_TARBALLS: dict[str, str] = {style: f"emoji-datasource-{style}-{_VERSION}.tgz"
                             for style in EMOJI_STYLES}
EMOJI_URLS: dict[str, str] = {
    style: f"https://registry.npmjs.org/emoji-datasource-{style}/-/{tarball}"
    for style, tarball in _TARBALLS.items()
}
EMOJI_SHA256: dict[str, str] = {
    "google": "fb5fd131b362aab7a55542d2a147a79708cce0a8b1c1bbacd470172708b5c438",
    "twitter": "f64a530c63bca463bd8317fdc4615ce63a53a0c65018e4ce2d848aaba7a28877",
}
EMOJI_JSON_SHA256 = "1d602e65be88772bf8cc368ce16b855d719eeddbafe128d471b80203f494d29f"
_SHARED_FILE_MODE = 0o644
_SHARED_DIR_MODE = 0o755
_PNG_NAME = re.compile(r"[0-9a-f][0-9a-f-]*\.png")


# --------------------------------------------------------------------------- emoji.json


@dataclass(frozen=True)
class EmojiClass:
    """One base emoji: its PNG file names (``images[0]`` the base, then one per tone of
    ``tones``, each a modifier of :data:`SKIN_TONES`), category and subcategory."""

    name: str            # short_name, e.g. "grinning"
    title: str           # name, e.g. "GRINNING FACE"
    category: str
    subcategory: str
    images: tuple[str, ...]
    tones: tuple[str, ...]  # "" for the base image


def find_emoji_dir(data_root: str | Path | None = None) -> Path:
    """``<data root>/emoji`` or, if it holds ``emoji.json``, the root itself."""
    return find_dataset_dir(data_root, "emoji", "emoji.json", "emoji",
                            "emoji.json with google/ and twitter/ PNG folders")


def _text(value: Any) -> bool:
    return isinstance(value, str) and value.strip() != ""


def _variant_images(path: Path, index: int, entry: dict) -> list[tuple[str, str]]:
    """``(tone, image)`` of the five single-tone variants of ``entry`` (none without any)."""
    variations = entry.get("skin_variations") or {}
    if not isinstance(variations, dict):
        raise DataError(f"{path}: entry {index} ({entry['short_name']!r}) has skin_variations "
                        f"of type {type(variations).__name__}: expected an object")
    if not variations:
        return []
    chosen = []
    for tone in SKIN_TONES:
        # one-person emoji key a variant by its tone, two-person ones by both people's
        variant = variations.get(tone, variations.get(f"{tone}-{tone}"))
        if not (isinstance(variant, dict) and _text(variant.get("image"))):
            raise DataError(f"{path}: entry {index} ({entry['short_name']!r}) has no skin "
                            f"variation {tone} (or {tone}-{tone}) with an image: expected "
                            f"all five tones {', '.join(SKIN_TONES)}")
        chosen.append((tone, variant["image"]))
    return chosen


def read_emoji(folder: str | Path) -> tuple[list[EmojiClass], int]:
    """The classes of ``folder/emoji.json`` sorted by name, and how many emoji it lists in
    all (Component included). ``ValueError`` naming the file and the bad entry."""
    path = Path(folder) / "emoji.json"
    if not path.is_file():
        raise MissingDataError(f"emoji file {path} does not exist: expected emoji.json beside "
                               f"google/ and twitter/; `attnmeta download emoji --data-root "
                               f"DIR` fetches them")
    stat = path.stat()
    return _read_emoji(path.resolve(), (stat.st_size, stat.st_mtime_ns))


@functools.lru_cache(maxsize=4)
def _read_emoji(path: Path, stamp: tuple) -> tuple[list[EmojiClass], int]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise DataError(f"{path} line {error.lineno} column {error.colno}: not valid JSON "
                        f"({error.msg})") from None
    except UnicodeDecodeError as error:
        raise DataError(f"{path} is not UTF-8 text ({error})") from None
    if not isinstance(data, list):
        raise DataError(f"{path}: top level is {type(data).__name__}, expected a list of emoji")
    classes, seen = [], set()
    for index, entry in enumerate(data):
        fields = ("name", "short_name", "image", "category", "subcategory")
        if not (isinstance(entry, dict) and all(_text(entry.get(f)) for f in fields)):
            raise DataError(f"{path}: entry {index} is {json.dumps(entry)[:80]}: expected an "
                            f"object with non-empty {', '.join(fields)}")
        if entry["category"] == EXCLUDED_CATEGORY:
            continue
        if entry["short_name"] in seen:
            raise DataError(f"{path}: entry {index} repeats short_name "
                            f"{entry['short_name']!r}: expected one entry per emoji")
        seen.add(entry["short_name"])
        variants = _variant_images(path, index, entry)
        classes.append(EmojiClass(
            entry["short_name"], entry["name"], entry["category"], entry["subcategory"],
            (entry["image"],) + tuple(image for _, image in variants),
            ("",) + tuple(tone for tone, _ in variants)))
    if not classes:
        raise DataError(f"{path} lists no emoji outside the {EXCLUDED_CATEGORY!r} category: "
                        "expected emoji-data's emoji.json")
    return sorted(classes, key=lambda c: c.name), len(data)


# --------------------------------------------------------------------------- class split


def emoji_subcategory_split(classes: list[EmojiClass]) -> dict[str, list[str]]:
    """``split -> subcategories`` (in the order taken; train's large ones last): the rule
    of the module docstring."""
    sizes = Counter(c.subcategory for c in classes)
    total = sum(sizes.values())
    order = ordered_by_digest(sizes)
    large = [s for s in order if sizes[s] > LARGE_SUBCATEGORY_FRACTION * total]
    queue = [s for s in order if s not in large]
    split: dict[str, list[str]] = {"test": [], "val": []}
    position = 0
    for name in ("test", "val"):
        count = 0
        while count < SPLIT_FRACTIONS[name] * total and position < len(queue) - 1:
            split[name].append(queue[position])
            count += sizes[queue[position]]
            position += 1
    split["train"] = queue[position:] + large
    return {name: split[name] for name in EMOJI_SPLITS}


def emoji_class_split(classes: list[EmojiClass]) -> dict[str, list[str]]:
    """``split -> sorted class names``, every class in the split of its subcategory."""
    owner = {sub: name for name, subs in emoji_subcategory_split(classes).items() for sub in subs}
    split: dict[str, list[str]] = {name: [] for name in EMOJI_SPLITS}
    for emoji in classes:
        split[owner[emoji.subcategory]].append(emoji.name)
    return {name: sorted(names) for name, names in split.items()}


# --------------------------------------------------------------------------- images


def _decode_png(path: Path, image_size: int, channels: int) -> np.ndarray:
    """uint8 ``[channels, S, S]``: the RGBA PNG composited on white, converted, resized."""
    try:
        with Image.open(path) as image:
            rgba = image.convert("RGBA")
    except FileNotFoundError:
        raise MissingDataError(f"emoji image {path} does not exist: expected every image "
                               f"emoji.json lists in {path.parent}") from None
    except (UnidentifiedImageError, OSError) as error:
        raise DataError(f"cannot read emoji image {path}: {error}") from None
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    flat = Image.alpha_composite(white, rgba).convert("RGB" if channels == 3 else "L")
    if flat.size != (image_size, image_size):
        flat = flat.resize((image_size, image_size), Image.Resampling.LANCZOS)
    array = np.asarray(flat, dtype=np.uint8)
    return array[None] if channels == 1 else array.transpose(2, 0, 1)


@functools.lru_cache(maxsize=8)
def _decoded(folder: Path, style: str, image_size: int, channels: int, stamp: tuple
             ) -> dict[str, np.ndarray]:
    """File name -> decoded image, filled as splits ask (one dict per style and size)."""
    return {}


def _style_images(folder: Path, style: str, names: list[str], image_size: int,
                  channels: int) -> np.ndarray:
    """uint8 ``[len(names), channels, S, S]`` of ``folder/style/<name>``, each PNG decoded
    once per process (until ``emoji.json`` or the style folder changes)."""
    style_dir = folder / style
    if not style_dir.is_dir():
        raise MissingDataError(f"emoji style folder {style_dir} does not exist: expected the "
                               f"{style} PNGs beside {folder / 'emoji.json'}")
    stamp = ((folder / "emoji.json").stat().st_mtime_ns, style_dir.stat().st_mtime_ns)
    cache = _decoded(folder.resolve(), style, image_size, channels, stamp)
    for name in names:
        if name not in cache:
            cache[name] = _decode_png(style_dir / name, image_size, channels)
    if not names:  # a split without classes (a tiny copy)
        return np.empty((0, channels, image_size, image_size), dtype=np.uint8)
    return np.stack([cache[name] for name in names])


# --------------------------------------------------------------------------- splits


@dataclass
class EmojiSplit(ImageSplit):
    """The emoji of one class split in one style (or both), ready for episodes.

    Attributes:
        images: float32 ``[N, channels, S, S]`` in [0, 1], transparency composited on white.
        labels: int64 ``[N]``, class ids ``0..C-1``; a class's images are consecutive rows,
            its base image first.
        class_names: ``[C]`` sorted ``short_name`` s (e.g. ``"+1"``, ``"grinning"``).
        class_categories, class_subcategories: ``[C]``, e.g. "Smileys & Emotion",
            "face-smiling".
        tones: ``[N]``, ``""`` for a base image, else its skin-tone modifier ("1F3FB" ...).
        item_styles: ``[N]``, the style each image is drawn in.
        style: ``"google"``, ``"twitter"`` or ``"both"``; split: its class split name;
        variants: whether skin-tone variants were included.
    """

    images: Tensor
    labels: Tensor
    class_names: list[str]
    class_categories: list[str]
    class_subcategories: list[str]
    tones: list[str]
    item_styles: list[str]
    style: str = ""
    split: str = ""
    variants: bool = False

    @property
    def images_per_class(self) -> Tensor:
        """int64 ``[C]``: how many images each class has here (the largest usable K)."""
        return torch.bincount(self.labels, minlength=self.num_classes)


def _check_choice(name: str, value: Any, choices: tuple) -> None:
    if value not in choices:
        raise ConfigError(f"{name}={value!r}: expected one of {', '.join(map(repr, choices))}")


def load_emoji(data_root: str | Path | None = None, split: str = "train",
               style: str = "google", image_size: int = NATIVE_SIZE, *, channels: int = 3,
               variants: bool = False) -> EmojiSplit:
    """The emoji of class split ``split`` drawn in ``style``.

    Args:
        data_root: data root or emoji folder, see :func:`find_emoji_dir`.
        split: ``"train"``, ``"val"`` or ``"test"`` (fixed class split: module docstring).
        style: ``"google"``, ``"twitter"``, or ``"both"`` (each class's Google images then
            its Twitter ones: with ``variants=False`` exactly two images per class).
        image_size: side ``S`` (the PNGs are 64; others are resized with Lanczos).
        channels: 3 for RGB, 1 for grey.
        variants: add each base emoji's five skin-tone variants as further examples of it.
    """
    _check_choice("split", split, EMOJI_SPLITS)
    _check_choice("style", style, EMOJI_STYLES + ("both",))
    _check_choice("channels", channels, (1, 3))
    if isinstance(image_size, bool) or not isinstance(image_size, numbers.Integral) \
            or image_size < 1:
        raise ConfigError(f"image_size={image_size!r}: expected a positive integer")
    folder = find_emoji_dir(data_root)
    classes, listed = read_emoji(folder)
    names = emoji_class_split(classes)
    if listed == FULL_EMOJI_COUNT:
        counts = {name: len(members) for name, members in names.items()}
        if counts != EXPECTED_CLASSES:
            raise DataError(f"{folder / 'emoji.json'}: class split sizes {counts}, expected "
                            f"{EXPECTED_CLASSES} (emoji-data {_VERSION})")
    chosen = set(names[split])
    members = [c for c in classes if c.name in chosen]  # sorted by name, as classes are
    styles = EMOJI_STYLES if style == "both" else (style,)
    rows: list[tuple[int, str, str, str]] = []  # (label, style, image, tone)
    for label, emoji in enumerate(members):
        count = len(emoji.images) if variants else 1
        for item_style in styles:
            rows += [(label, item_style, image, tone) for image, tone
                     in zip(emoji.images[:count], emoji.tones[:count])]
    pieces = [_style_images(folder, s, [image for _, item_style, image, _ in rows
                                        if item_style == s], int(image_size), channels)
              for s in styles]
    if len(styles) == 1:
        stacked = pieces[0]
    else:  # put each style's decoded rows back where they belong
        stacked = np.empty((len(rows),) + pieces[0].shape[1:], dtype=np.uint8)
        for s, piece in zip(styles, pieces):
            stacked[[i for i, row in enumerate(rows) if row[1] == s]] = piece
    images = torch.from_numpy(stacked).float().div_(255.0)
    return EmojiSplit(
        images=images,
        labels=torch.tensor([row[0] for row in rows], dtype=torch.int64),
        class_names=[c.name for c in members],
        class_categories=[c.category for c in members],
        class_subcategories=[c.subcategory for c in members],
        tones=[row[3] for row in rows],
        item_styles=[row[1] for row in rows],
        style=style, split=split, variants=variants)


# --------------------------------------------------------------------------- episodes


def _positive(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ConfigError(f"{name}={value!r}: expected an integer >= {low}")
    return int(value)


def _rows_by_class(split: EmojiSplit) -> list[tuple[int, np.ndarray]]:
    """Per class: its base image's row and its tone variants' rows."""
    labels = split.labels.numpy()
    rows = []
    for label in range(split.num_classes):
        mine = np.flatnonzero(labels == label)
        bases = [r for r in mine.tolist() if split.tones[r] == ""]
        if len(bases) != 1:
            raise ValueError(f"class {split.class_names[label]!r} has {len(bases)} base images "
                             f"in the {split.style} split: expected one (a single-style split "
                             f"from load_emoji)")
        rows.append((bases[0], np.asarray([r for r in mine.tolist() if split.tones[r] != ""],
                                          dtype=np.int64)))
    return rows


class CrossStyleEpisodes(Dataset):
    """Seeded N-way K-shot Q-query episodes: support from one style, queries from the other.

    Per class, the support is its base image in the support style plus ``k_shot - 1`` of its
    tone variants there, and the queries are its base image in the query style plus
    ``q_query - 1`` of its tone variants there (variants drawn at random, without
    replacement). So 1-shot support is the single base image of each class, and
    ``k_shot > 1`` or ``q_query > 1`` needs splits loaded with ``variants=True``; only
    classes with at least ``k_shot`` support-style and ``q_query`` query-style images are
    drawn. Episode ``i`` depends only on ``(seed, i)``; labels are ``0..n_way-1`` in the
    order the classes were drawn, support and query ordered class by class, as
    :class:`attnmeta.tasks.FewShotEpisodes` orders them.
    """

    def __init__(self, support_split: EmojiSplit, query_split: EmojiSplit, n_way: int = 5,
                 k_shot: int = 1, q_query: int = 1, num_episodes: int = 1000,
                 seed: int = 0) -> None:
        self.n_way = _positive("n_way", n_way, 1)
        self.k_shot = _positive("k_shot", k_shot, 1)
        self.q_query = _positive("q_query", q_query, 0)
        self.num_episodes = _positive("num_episodes", num_episodes, 0)
        self.seed = int(seed)
        if support_split.class_names != query_split.class_names:
            raise ValueError(f"support split {support_split.split!r} and query split "
                             f"{query_split.split!r} have different classes: expected the "
                             f"same class split loaded in two styles")
        for role, split in (("support", support_split), ("query", query_split)):
            if split.style not in EMOJI_STYLES:
                raise ValueError(f"{role} split has style={split.style!r}: expected one of "
                                 f"{', '.join(map(repr, EMOJI_STYLES))}")
        if support_split.style == query_split.style:
            raise ConfigError(f"support and query splits are both {support_split.style!r}: "
                              f"expected two different styles")
        self.support_split, self.query_split = support_split, query_split
        self._support_rows = _rows_by_class(support_split)
        self._query_rows = _rows_by_class(query_split)
        self.classes = np.asarray([
            c for c in range(support_split.num_classes)
            if 1 + len(self._support_rows[c][1]) >= self.k_shot
            and 1 + len(self._query_rows[c][1]) >= self.q_query], dtype=np.int64)
        if len(self.classes) < self.n_way:
            hint = "" if support_split.variants and query_split.variants else \
                "; load both splits with variants=True for K or Q > 1"
            raise ConfigError(
                f"n_way={self.n_way} but only {len(self.classes)} classes of the "
                f"{support_split.split} split have >= {self.k_shot} {support_split.style} and "
                f">= {self.q_query} {query_split.style} images: expected n_way <= "
                f"{len(self.classes)}{hint}")

    def __len__(self) -> int:
        return self.num_episodes

    def __iter__(self) -> Iterator[Episode]:
        return (self[i] for i in range(self.num_episodes))

    @staticmethod
    def _pick(rng: np.random.Generator, base: int, tones: np.ndarray, count: int) -> list[int]:
        picked = [base] + rng.choice(tones, size=max(count - 1, 0), replace=False).tolist()
        return picked[:count]

    def episode_indices(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The classes ``[n_way]``, support rows ``[n_way, k_shot]`` (of the support split)
        and query rows ``[n_way, q_query]`` (of the query split) of episode ``index``."""
        rng = np.random.default_rng([self.seed, index])
        chosen = rng.choice(self.classes, size=self.n_way, replace=False)
        support = [self._pick(rng, *self._support_rows[c], self.k_shot) for c in chosen]
        query = [self._pick(rng, *self._query_rows[c], self.q_query) for c in chosen]
        return (chosen, np.asarray(support, dtype=np.int64).reshape(self.n_way, self.k_shot),
                np.asarray(query, dtype=np.int64).reshape(self.n_way, self.q_query))

    def __getitem__(self, index: int) -> Episode:
        if not 0 <= index < self.num_episodes:
            raise IndexError(f"episode {index} out of range [0, {self.num_episodes})")
        _, support, query = self.episode_indices(index)
        labels = torch.arange(self.n_way)
        return Episode(
            support_x=self.support_split.images[torch.from_numpy(support.reshape(-1))],
            support_y=labels.repeat_interleave(self.k_shot),
            query_x=self.query_split.images[torch.from_numpy(query.reshape(-1))],
            query_y=labels.repeat_interleave(self.q_query),
        )


def cross_style_episodes(support_split: EmojiSplit, query_split: EmojiSplit, n_way: int = 5,
                         k_shot: int = 1, q_query: int = 1, num_episodes: int = 1000,
                         seed: int = 0) -> CrossStyleEpisodes:
    """Episodes with support from ``support_split``'s style and queries from
    ``query_split``'s (the same class split in the other style): see
    :class:`CrossStyleEpisodes`."""
    return CrossStyleEpisodes(support_split, query_split, n_way, k_shot, q_query,
                              num_episodes, seed)


# --------------------------------------------------------------------------- download


def _extract_style(tarball: Path, style: str, folder: Path) -> None:
    """Unpack ``package/img/<style>/64/*.png`` into ``folder/<style>`` (all or nothing);
    an existing ``folder/<style>`` is kept as it is."""
    target = folder / style
    if target.exists():
        logger.info("keeping existing %s", target)
        return
    prefix = f"package/img/{style}/64/"
    partial = Path(tempfile.mkdtemp(dir=folder, prefix=f".{style}.", suffix=".partial"))
    try:
        with tarfile.open(tarball, "r:gz") as archive:
            for member in archive:
                name = member.name[len(prefix):]
                if member.isfile() and member.name.startswith(prefix) \
                        and _PNG_NAME.fullmatch(name):
                    (partial / name).write_bytes(archive.extractfile(member).read())
                    os.chmod(partial / name, _SHARED_FILE_MODE)
        if not any(partial.iterdir()):
            raise DataError(f"{tarball} holds no {prefix}*.png: expected the "
                            f"emoji-datasource-{style} package")
        os.chmod(partial, _SHARED_DIR_MODE)
        os.replace(partial, target)
    except (tarfile.TarError, EOFError, OSError) as error:
        shutil.rmtree(partial, ignore_errors=True)
        raise DataError(f"cannot unpack {tarball} ({error}): move it away to download "
                        "again") from None
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise


def _extract_member(tarball: Path, member: str, destination: Path, sha256: str | None) -> None:
    """Write ``member`` of ``tarball`` to ``destination`` unless it exists (then, with
    ``sha256``, check it); the bytes are checked before they are written."""
    if destination.exists():
        if sha256 is not None and file_digest(destination, "sha256") != sha256:
            raise DataError(f"{destination} has sha256 {file_digest(destination, 'sha256')}, "
                            f"expected {sha256}: it is not emoji-data {_VERSION}'s and was "
                            f"left untouched; move it away to download again")
        return
    try:
        with tarfile.open(tarball, "r:gz") as archive:
            handle = archive.extractfile(member)
            data = handle.read() if handle is not None else None
    except KeyError:
        data = None
    except (tarfile.TarError, EOFError, OSError) as error:
        raise DataError(f"cannot unpack {tarball} ({error}): move it away to download "
                        "again") from None
    if data is None:
        raise DataError(f"{tarball} has no file {member}: expected the emoji-datasource "
                        "package")
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise DataError(f"{tarball}: {member} has sha256 {hashlib.sha256(data).hexdigest()}, "
                        f"expected {sha256}")
    with atomic_write(destination, mode=_SHARED_FILE_MODE) as temp:
        temp.write_bytes(data)


def download_emoji(data_root: str | Path | None = None) -> Path:
    """Fetch the two npm packages (pinned version, SHA-256 checked as
    :func:`attnmeta.tasks.download.download_files` does) into ``<data_root>/emoji`` and
    unpack their 64-pixel PNGs into ``google/`` and ``twitter/``, plus ``emoji.json``
    (SHA-256 checked too) and ``LICENSE.txt``. Existing files and folders are kept."""
    folder = data_root_path(data_root) / "emoji"
    download_files(folder, {_TARBALLS[style]: EMOJI_URLS[style] for style in EMOJI_STYLES},
                   {_TARBALLS[style]: f"sha256:{EMOJI_SHA256[style]}" for style in EMOJI_STYLES})
    for style in EMOJI_STYLES:
        _extract_style(folder / _TARBALLS[style], style, folder)
    google = folder / _TARBALLS["google"]
    _extract_member(google, "package/emoji.json", folder / "emoji.json", EMOJI_JSON_SHA256)
    _extract_member(google, "package/LICENSE", folder / "LICENSE.txt", None)
    return folder


def _load(config: Any, split: str, tokenizer: object) -> ImageSplit:
    """Both styles of each emoji class (two images a class, one Google, one Twitter), so
    1-shot 1-query episodes of the generic sampler are cross-style; tone variants and
    one-style support need :func:`cross_style_episodes`."""
    data = config.data
    return load_emoji(data.root, split, style="both", image_size=data.image_size,
                      channels=data.channels)


register_dataset("emoji", DatasetEntry(_load, channels=3, download=download_emoji))
