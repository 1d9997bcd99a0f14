"""A person's own examples read as a model reads them: support sets (a folder of classes, a
``text,label`` CSV, or ``(item, label)`` pairs) and queries (images, folders of images,
sentence files, strings), each checked with a one-line message naming what is wrong.

A model reads one modality (:class:`Preprocessing`): images of ``channels`` colour channels
resized to ``image_size``, in [0, 1] (a backbone's own normalisation is inside the model,
so an exported graph starts from these same tensors), or sentences cut to ``max_length``
tokens by the run's tokenizer.
"""

from __future__ import annotations

import csv
import errno
import io
import logging
import os
import stat
import unicodedata
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Literal, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from attnmeta.errors import InputError, ModelError  # re-exported: their old home
from attnmeta.files import NamedPath, file_digest, named_path, shown_name  # noqa: F401 (re-exported)
from attnmeta.tasks.image_folder import (IMAGE_SUFFIXES, _changes_colour, _read_image,
                                        check_fit, check_image_size, is_hidden)

__all__ = ["InputError", "ModelError", "Preprocessing", "Examples", "NamedPath", "named_path",
           "shown_name", "describe_path", "read_support", "read_queries", "check_class_name",
           "read_csv_rows", "image_tensor", "images_to_tensor", "note_converted", "Progress",
           "progress_words", "eta_seconds", "duration_words", "MAX_IMAGE_BYTES"]

logger = logging.getLogger(__name__)

# An upload or a file larger than this is refused before it is decoded (a photo from a
# phone is 2-10 MB; PIL's own decompression-bomb check still applies to what passes).
MAX_IMAGE_BYTES = 32 * 1024 * 1024
TEXT_SUFFIXES = {".txt", ".csv"}


@dataclass(frozen=True)
class Preprocessing:
    """How raw examples become model inputs: ``modality`` "image" (``[C, S, S]`` float32 in
    [0, 1], ``channels`` C, ``image_size`` S; ``inverted``: 1 - pixel, as the run's data set
    was read, e.g. Omniglot's dark strokes made bright; ``fit``: how a picture of another
    shape becomes S x S, "resize" (squash, as every model before ``fit`` read), "crop"
    (shorter side to S, centre kept, as ImageNet encoders are evaluated) or "pad" (longer
    side to S, padded with white)) or "text" (``max_length`` token ids). Image tensors given
    directly are taken as model inputs already (their colour and ``inverted`` as they are),
    made S x S by the same ``fit``."""

    modality: Literal["image", "text"]
    image_size: int = 28
    channels: int = 1
    max_length: int = 48
    inverted: bool = False
    fit: str = "resize"

    def __post_init__(self) -> None:
        check_fit(self.fit)
        if self.modality not in ("image", "text"):
            raise ValueError(f"modality={self.modality!r}: expected 'image' or 'text'")
        check_image_size(self.image_size)
        if isinstance(self.max_length, bool) or not isinstance(self.max_length, int) \
                or self.max_length < 1:
            raise ValueError(f"max_length={self.max_length!r}: expected the tokens a model "
                             "reads of a sentence (1 or more)")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "Preprocessing":
        """The inverse of :meth:`to_dict`; a record saved before ``fit`` existed reads as
        "resize", the squash it was made with."""
        return cls(**{"fit": "resize", **values})


@dataclass
class Examples:
    """Raw examples and, for a support set, their class names: ``items`` (image paths or
    ``[C, H, W]`` tensors, or sentences), ``names`` (how reports name each item: a path or
    the sentence), ``labels`` (class names; empty for queries)."""

    items: list[Any]
    names: list[str]
    labels: list[str]




def _is_image_path(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def _image_files(folder: Path) -> list[Path]:
    """The image files below ``folder`` (hidden ones skipped, see :func:`is_hidden`; links
    to folders are not followed, so a link loop is harmless), sorted."""
    return sorted(p for p in folder.rglob("*")
                  if _is_image_path(p) and not is_hidden(p, folder) and p.is_file())


def describe_path(path: Path) -> str:
    """What ``path`` is, for a message about a path that is not the file or folder asked
    for: "does not exist", "is a character device, not a file", "is a symbolic link that
    loops (...)", "is a file", ..."""
    try:
        status = os.lstat(path)
    except (OSError, ValueError):
        return "does not exist"
    if stat.S_ISLNK(status.st_mode):
        try:
            status = os.stat(path)
        except OSError as error:
            if error.errno == errno.ELOOP:
                return "is a symbolic link that loops (it leads back to itself)"
            return f"is a symbolic link to {os.readlink(path)}, which does not exist"
    kinds = ((stat.S_ISDIR, "is a folder"), (stat.S_ISREG, "is a file"),
             (stat.S_ISCHR, "is a character device, not a file"),
             (stat.S_ISBLK, "is a block device, not a file"),
             (stat.S_ISFIFO, "is a named pipe (FIFO), not a file"),
             (stat.S_ISSOCK, "is a socket, not a file"))
    return next((words for test, words in kinds if test(status.st_mode)), "is not a file")


def check_class_name(label: str, where: str) -> str:
    """``label`` if it can name a class: not empty, on one line and without control
    characters (NUL, a newline, a tab, ...), which would break every line that names it
    (predictions, CSVs, the page); else an :class:`InputError` naming it and ``where`` it
    came from. Every support set (folders, CSVs, pairs, the server's uploads) is checked
    here, by :func:`read_support`."""
    if not label.strip():
        raise InputError(f"{where} has no class name ({label!r}): expected a name for every "
                         "class")
    if any(unicodedata.category(c) == "Cs" for c in label):  # bytes the system could not decode
        raise InputError(f"class name {label!r:.60} ({where}) is not UTF-8 text: expected a "
                         "name in UTF-8 (rename it)")
    bad = next((c for c in label if unicodedata.category(c) in ("Cc", "Zl", "Zp")), None)
    if bad is not None:
        what = {"\x00": "a NUL character", "\n": "a line break", "\r": "a carriage return",
                "\t": "a tab"}.get(bad, f"the control character U+{ord(bad):04X}")
        raise InputError(f"class name {label!r:.60} ({where}) holds {what}: expected a name "
                         "on one line, without control characters")
    return label


def read_csv_rows(path: Path, columns: Sequence[str]) -> list[tuple[int, dict[str, str]]]:
    """The rows of a CSV file with a header holding ``columns``, as (line number, row). An
    empty file, a missing column, a row of the wrong width or an empty cell is an
    :class:`InputError` naming the file (:func:`shown_name`) and line."""
    shown = shown_name(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise InputError(f"CSV file {shown} is not UTF-8 text: expected a UTF-8 CSV with "
                         f"columns {','.join(columns)}") from None
    except OSError as error:
        raise InputError(f"cannot read CSV file {shown}: {error.strerror or error}") from None
    reader = csv.reader(io.StringIO(text))
    try:
        header = next(reader, None)
        if header is None or not any(cell.strip() for cell in header):
            raise InputError(f"CSV file {shown} is empty: expected a header line "
                             f"'{','.join(columns)}' and one row per example")
        header = [cell.strip().lower() for cell in header]
        missing = [c for c in columns if c not in header]
        if missing:
            other = next((f" (its cells are separated by {mark!r}, not commas)" for mark in
                          (";", "\t", "|") if len(header) == 1 and mark in header[0]), "")
            raise InputError(f"CSV file {shown} line 1: header {','.join(header)!r} lacks "
                             f"column {missing[0]!r}{other}: expected columns "
                             f"{','.join(columns)}, separated by commas")
        rows = []
        for row in reader:
            line = reader.line_num
            if not row or not any(cell.strip() for cell in row):
                continue  # blank lines are allowed
            if len(row) != len(header):
                raise InputError(f"CSV file {shown} line {line}: {len(row)} fields, expected "
                                 f"{len(header)} ({','.join(header)}); quote a text that "
                                 "holds a comma")
            values = dict(zip(header, (cell.strip() for cell in row)))
            empty = [c for c in columns if not values[c]]
            if empty:
                raise InputError(f"CSV file {shown} line {line}: column {empty[0]!r} is "
                                 "empty: expected a value")
            rows.append((line, values))
    except csv.Error as error:
        raise InputError(f"CSV file {shown} line {reader.line_num}: {error}: expected "
                         "comma-separated text (quote a cell that holds a comma, quote or "
                         "line break)") from None
    if not rows:
        raise InputError(f"CSV file {shown} has a header but no rows: expected one row per "
                         "example")
    return rows


def _support_folder(folder: Path, modality: str) -> Examples:
    if modality == "text":
        raise InputError(f"support {folder} is a folder, but the model reads text: expected "
                         "a CSV file with columns text,label")
    class_dirs = sorted(d for d in folder.iterdir() if d.is_dir() and not is_hidden(d))
    if not class_dirs:
        raise InputError(f"support folder {folder} has no class sub-folders: expected "
                         f"{folder}/<class>/<images>")
    items, labels = [], []
    for class_dir in class_dirs:
        check_class_name(class_dir.name, f"a folder in {folder}")
        files = _image_files(class_dir)
        if not files:
            raise InputError(f"class {class_dir.name!r} ({class_dir}) has no usable example: "
                             "expected image files ending in "
                             f"{', '.join(sorted(IMAGE_SUFFIXES))} (hidden ones are skipped)")
        items += files
        labels += [class_dir.name] * len(files)
    return Examples(items, [shown_name(p) for p in items], labels)


def read_support(source: Any, modality: str) -> Examples:
    """A support set from ``source``: a folder ``DIR/<class>/<files>`` (images), a CSV with
    columns ``text,label`` (sentences; ``image,label`` for image paths relative to the
    CSV), or an iterable of ``(item, label)`` pairs (item: an image path or ``[C, H, W]``
    tensor, or a sentence). At least two classes, each with an example."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        if path.is_dir():
            examples = _support_folder(path, modality)
        elif path.is_file() and path.suffix.lower() == ".csv":
            column = "text" if modality == "text" else "image"
            rows = read_csv_rows(path, (column, "label"))
            for line, row in rows:
                check_class_name(row["label"], f"CSV file {shown_name(path)} line {line}")
            items: list[Any] = [row[column] if modality == "text" else path.parent / row[column]
                                for _, row in rows]
            examples = Examples(items, [shown_name(i) for i in items],
                                [row["label"] for _, row in rows])
        elif path.is_file():
            raise InputError(f"support {path} is neither a folder nor a .csv file: expected "
                             "DIR/<class>/<files> or a CSV with columns "
                             + ("text,label" if modality == "text" else "image,label"))
        else:
            raise InputError(f"support {path} {describe_path(path)}: expected a folder of "
                             "classes or a CSV file")
    else:
        pairs = list(source)
        for index, pair in enumerate(pairs):
            if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
                raise InputError(f"support item {index} is {type(pair).__name__}: expected an "
                                 "(item, label) pair")
            check_class_name(str(pair[1]), f"support item {index} ({_name(pair[0], index):.60})")
        items = [item for item, _ in pairs]
        examples = Examples(items, [_name(item, i) for i, item in enumerate(items)],
                            [str(label) for _, label in pairs])
    _note_repeated(examples, modality)
    classes = sorted(set(examples.labels))
    if len(classes) < 2:
        found = f"one class ({classes[0]!r})" if classes else "no examples"
        raise InputError(f"the support set has {found}: expected at least 2 classes, each "
                         "with at least one example")
    return examples


def _name(item: Any, index: int) -> str:
    if isinstance(item, (str, Path)):
        return shown_name(item)
    return f"item {index}"


def _note_repeated(examples: Examples, modality: str) -> None:
    """One warning when an example is in two classes: an image file whose contents (their
    sha256; only files of equal size are read) or a sentence that is also another class's.
    The model cannot tell such examples apart."""
    keyed: dict[Any, list[int]] = {}
    for index, item in enumerate(examples.items):
        if modality == "text" and isinstance(item, str):
            keyed.setdefault(("text", item.strip()), []).append(index)
        elif modality == "image" and isinstance(item, (str, Path)):
            try:
                keyed.setdefault(("size", os.stat(item).st_size), []).append(index)
            except (OSError, ValueError):
                continue  # reading it says what is wrong
    groups = []
    for (kind, _), indices in keyed.items():
        if len({examples.labels[i] for i in indices}) < 2:
            continue
        if kind == "text":
            groups.append(indices)
            continue
        by_digest: dict[str, list[int]] = {}
        for index in indices:
            try:
                by_digest.setdefault(file_digest(Path(examples.items[index])), []).append(index)
            except OSError:
                continue
        groups += [same for same in by_digest.values()
                   if len({examples.labels[i] for i in same}) > 1]
    if not groups:
        return
    first = groups[0]
    second = next(i for i in first if examples.labels[i] != examples.labels[first[0]])
    one, other = examples.labels[first[0]], examples.labels[second]
    more = f" ({len(groups) - 1} more such)" if len(groups) > 1 else ""
    if modality == "text":
        where = (f"the same sentence {examples.names[first[0]]!r:.60} is in two classes, "
                 f"{one!r} and {other!r}")
    else:
        where = (f"the same image is in two classes: {examples.names[first[0]]} (class {one!r}) "
                 f"and {examples.names[second]} (class {other!r}) hold the same contents")
    logger.warning("%s%s: expected each example in one class (the model cannot tell them "
                   "apart)", where, more)


def read_queries(sources: Iterable[Any], modality: str) -> Examples:
    """Queries from ``sources``: for images, image files, folders (searched recursively)
    and ``[C, H, W]`` tensors; for text, sentences (strings that name no file), ``.txt``
    files (a sentence a line) and ``.csv`` files (column ``text``). A source of the other
    modality is an :class:`InputError`."""
    items: list[Any] = []
    for source in sources:
        if isinstance(source, Tensor):
            if modality == "text":
                raise InputError("query is a tensor (an image?), but the model reads text: "
                                 "expected sentences")
            items.append(source)
            continue
        path = (source if isinstance(source, Path) else
                Path(source) if isinstance(source, str) else None)
        exists = path is not None and _exists(path)
        if modality == "text":
            if exists and path.is_file() and path.suffix.lower() in TEXT_SUFFIXES:
                items += _sentences(path)
            elif exists and (path.is_dir() or _is_image_path(path)):
                raise InputError(f"query {path} is {'a folder' if path.is_dir() else 'an image'}"
                                 ", but the model reads text: expected sentences, or a .txt "
                                 "or .csv file of them")
            elif isinstance(source, str) and source.strip():
                items.append(source.strip())
            else:
                raise InputError(f"query {source!r}: expected a sentence, or a .txt or .csv file")
            continue
        if path is None:
            raise InputError(f"query of type {type(source).__name__}: expected an image path, "
                             "a folder of images or a [C, H, W] tensor")
        if not (exists and (path.is_dir() or path.is_file())):
            raise InputError(f"query {shown_name(path)} {describe_path(path)}: expected an "
                             "image file or a folder of images")
        if path.is_dir():
            found = _image_files(path)
            if not found:
                raise InputError(f"query folder {path} holds no images: expected files ending "
                                 f"in {', '.join(sorted(IMAGE_SUFFIXES))} (hidden ones are "
                                 "skipped)")
            items += found
        elif path.suffix.lower() in TEXT_SUFFIXES:
            raise InputError(f"query {shown_name(path)} is a text file, but the model reads "
                             "images: expected an image file or a folder of images")
        else:
            items.append(path)
    if not items:
        raise InputError("no queries: expected at least one")
    return Examples(items, [_name(item, i) for i, item in enumerate(items)], [])


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:  # a sentence too long to be a file name
        return False


def _sentences(path: Path) -> list[str]:
    if path.suffix.lower() == ".csv":
        return [row["text"] for _, row in read_csv_rows(path, ("text",))]
    try:
        lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    except UnicodeDecodeError:
        raise InputError(f"query file {path} is not UTF-8 text: expected a sentence a line") \
            from None
    sentences = [line for line in lines if line]
    if not sentences:
        raise InputError(f"query file {path} is empty: expected a sentence a line")
    return sentences


# ------------------------------------------------------------------- to model inputs
def _fit_tensor(image: Tensor, size: int, preprocessing: Preprocessing) -> Tensor:
    """``[C, H, W]`` model input made ``[C, size, size]`` by ``preprocessing.fit``, as a file
    is: "pad" fills with white as the model reads it (0 when ``inverted``)."""
    def resized(tensor: Tensor, height: int, width: int) -> Tensor:
        return F.interpolate(tensor[None], size=(height, width), mode="bilinear",
                             antialias=True, align_corners=False)[0]

    height, width = image.shape[1:]
    if preprocessing.fit == "crop":
        side = min(height, width)
        top, left = (height - side) // 2, (width - side) // 2
        return resized(image[:, top:top + side, left:left + side], size, size)
    if preprocessing.fit == "pad":
        scale = size / max(height, width)
        inner_h = max(1, min(size, round(height * scale)))
        inner_w = max(1, min(size, round(width * scale)))
        canvas = image.new_full((image.shape[0], size, size),
                                0.0 if preprocessing.inverted else 1.0)
        top, left = (size - inner_h) // 2, (size - inner_w) // 2
        canvas[:, top:top + inner_h, left:left + inner_w] = resized(image, inner_h, inner_w)
        return canvas
    return resized(image, size, size)


def image_tensor(item: Any, preprocessing: Preprocessing) -> tuple[Tensor, str | None]:
    """One image as ``[C, S, S]`` float32 in [0, 1], and the PIL mode it was stored in when
    that changes its colour (None otherwise). Files and tensors alike are made S x S by
    ``preprocessing.fit``."""
    size, channels = preprocessing.image_size, preprocessing.channels
    if isinstance(item, Tensor):
        image = item.detach().to(torch.float32)
        if image.dim() == 2:
            image = image[None]
        if image.dim() != 3 or image.shape[0] not in (1, 3):
            raise InputError(f"image tensor of shape {list(item.shape)}: expected [C, H, W] "
                             "with C = 1 or 3, values in [0, 1]")
        changed = None
        if image.shape[0] != channels:
            changed = "L" if image.shape[0] == 1 else "RGB"
            image = image.mean(0, keepdim=True) if channels == 1 else image.expand(3, -1, -1)
        if image.shape[1:] != (size, size):
            image = _fit_tensor(image, size, preprocessing)
        return image.clamp(0, 1).contiguous(), changed
    # a PIL image is read as it is (any mode, its EXIF orientation kept), not re-encoded
    path = item if isinstance(item, (io.BytesIO, Image.Image, Path)) else Path(item)
    name = shown_name(item) if isinstance(item, (str, Path)) else None
    if isinstance(path, Path):
        if not path.is_file():
            raise InputError(f"image {name} {describe_path(path)}: expected an image file")
        if path.stat().st_size > MAX_IMAGE_BYTES:
            raise InputError(f"image {name} is {path.stat().st_size / 2**20:.0f} MB: expected "
                             f"at most {MAX_IMAGE_BYTES // 2**20} MB")
    # an unreadable image is already an InputError there; any other ValueError is a bug
    array, mode = _read_image(path, size, channels, preprocessing.fit, name)
    if preprocessing.inverted:
        array = 1.0 - array
    return torch.from_numpy(np.ascontiguousarray(array)), (mode if _changes_colour(mode, channels)
                                                           else None)


Progress = Callable[[int, int], None]  # (done, total)


def images_to_tensor(items: Sequence[Any], preprocessing: Preprocessing,
                     progress: Progress | None = None, *,
                     tally: list[int] | None = None) -> Tensor:
    """``[n, C, S, S]`` for ``items``, filled in place as each image is read (no second
    copy of the batch); ``progress(done, total)`` is called after each image. One note
    says how many had their colour converted (the model reads ``channels`` channels); with
    ``tally``, that count is added to ``tally[0]`` instead, for a caller that reads in
    chunks and notes the whole once (:func:`note_converted`)."""
    batch: Tensor | None = None
    converted = 0
    for done, item in enumerate(items, 1):
        tensor, changed = image_tensor(item, preprocessing)
        if batch is None:
            batch = tensor.new_empty((len(items), *tensor.shape))
        batch[done - 1] = tensor
        converted += changed is not None
        if progress is not None:
            progress(done, len(items))
    if tally is not None:
        tally[0] += converted
    else:
        note_converted(converted, len(items), preprocessing)
    if batch is None:  # no items: an empty batch of the model's shape
        size = preprocessing.image_size
        return torch.empty((0, preprocessing.channels, size, size))
    return batch


def note_converted(converted: int, total: int, preprocessing: Preprocessing) -> None:
    """The one note that ``converted`` of ``total`` images had their colour changed."""
    if converted:
        target = "grey" if preprocessing.channels == 1 else "RGB"
        logger.warning("converted %d of %d image%s to %s: the model reads %d channel%s",
                       converted, total, "" if total == 1 else "s", target,
                       preprocessing.channels, "" if preprocessing.channels == 1 else "s")


def progress_words(done: int, total: int, seconds: float) -> str:
    """``done/total`` with the share done and, once something is done, the time left at
    the rate so far: ``320/1003 (32%), about 7 s left`` (for progress lines and pages)."""
    if total <= 0:
        return f"{done} done, {seconds:.0f} s so far"
    words = f"{done}/{total} ({100 * done // total}%)"
    left = eta_seconds(done, total, seconds)
    if left is not None and done < total:
        words += f", about {duration_words(left)} left"
    return words


def eta_seconds(done: int, total: int, seconds: float) -> float | None:
    """Seconds left at the rate so far (``seconds`` for ``done`` of ``total``); None
    before anything is done."""
    if done <= 0 or total <= 0 or seconds <= 0:
        return None
    return max(0.0, seconds / done * (total - done))


def duration_words(seconds: float) -> str:
    """``7 s``, ``2 min 5 s``, ``1 h 3 min``."""
    whole = int(round(seconds))
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60} s"
    return f"{whole // 3600} h {whole % 3600 // 60} min"
