"""Files and sentences sent to ``attnmeta serve``, checked before anything decodes them
(count, size, type, and the pixels a request would decode: one :class:`InputError` line
naming the file) and stored where the server keeps them while it needs them: a folder per
request, removed when the request ends (or, for the last adapt, when the next one
replaces it), under a temporary folder removed when the server stops; with ``--keep``,
every request's folder stays.

An upload is any object with ``filename``, ``size`` and a binary ``file`` (Starlette's
``UploadFile``), so this module needs no web framework.
"""

from __future__ import annotations

import csv
import itertools
import re
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any, BinaryIO, Protocol, Sequence

from PIL import Image, UnidentifiedImageError

from attnmeta.fewshot.inputs import MAX_IMAGE_BYTES, InputError, describe_path, named_path
from attnmeta.tasks.image_folder import IMAGE_SUFFIXES

__all__ = ["UploadStore", "Upload", "image_support", "image_queries", "text_support",
           "text_queries", "check_count", "check_images", "store_images", "check_label",
           "check_sentence", "write_texts", "size_of", "number", "flag", "decoded_pixels",
           "MAX_SUPPORT_FILES", "MAX_QUERY_FILES", "MAX_TEXT_CHARS", "MAX_CSV_BYTES",
           "MAX_REQUEST_PIXELS", "KEEP_MARKER"]

# Per request. A browser uploads a few hundred photos in seconds on one machine; beyond
# that `attnmeta adapt DIR` reads a folder without sending it over HTTP.
MAX_SUPPORT_FILES = 500
MAX_QUERY_FILES = 200
MAX_TEXT_CHARS = 2000        # a sentence; the model reads its first max_length tokens
MAX_CSV_BYTES = 4 * 2**20
MAX_LABEL_CHARS = 100
# The pixels one request's images may decode, summed over its images and read from their
# headers before any is decoded: decoding costs time and about 11 bytes a pixel (an
# image at PIL's own limit of 89 million pixels: about 1 GB), so a request holds the
# server for a bounded few seconds of decoding (benchmarks/results/design_timings.md). A
# JPEG counts at the reduced scale libjpeg decodes it to for the model (at least twice its
# input size a side): a 12-megapixel phone photo counts 0.75 million for a 224-pixel
# model, a PNG screenshot its whole size.
MAX_REQUEST_PIXELS = 250_000_000
KEEP_MARKER = ".attnmeta-serve"


class Upload(Protocol):
    filename: str | None
    size: int | None
    file: BinaryIO


class UploadStore:
    """Where uploads are written: a new folder per request (``adapt-0001``, ...) under a
    temporary folder that :meth:`close` removes, or under ``keep`` (new, empty, or made
    by an earlier ``attnmeta serve``: a user's own files are never written over). A
    request's folder goes when its request is done with it (:meth:`discard`), except in
    a ``keep`` folder, where every request's files stay."""

    def __init__(self, keep: Path | None = None) -> None:
        self._temporary: tempfile.TemporaryDirectory | None = None
        self.keep = keep is not None
        if keep is None:
            self._temporary = tempfile.TemporaryDirectory(prefix="attnmeta-serve-")
            self.root = Path(self._temporary.name)
        else:
            self.root = Path(keep)
            _claim_keep_folder(self.root)
        self._lock = threading.Lock()
        self._next: dict[str, int] = {}  # per kind: the number to try first

    def new_folder(self, kind: str) -> Path:
        """A new, empty folder for one request's files (never one that exists; safe from
        several threads at once)."""
        with self._lock:
            start = self._next.get(kind, 1)
        for number in itertools.count(start):
            folder = self.root / f"{kind}-{number:04d}"
            try:
                folder.mkdir()
            except FileExistsError:
                continue
            with self._lock:
                self._next[kind] = max(self._next.get(kind, 1), number + 1)
            return folder
        raise AssertionError("unreachable")

    def discard(self, folder: Path | None) -> None:
        """Remove a request's ``folder`` and its files (kept in a ``keep`` folder)."""
        if folder is not None and not self.keep:
            shutil.rmtree(folder, ignore_errors=True)

    def folders(self) -> list[Path]:
        """The request folders the store holds now."""
        return sorted(path for path in self.root.iterdir() if path.is_dir())

    def close(self) -> None:
        """Remove the temporary folder (a ``keep`` folder stays)."""
        if self._temporary is not None:
            self._temporary.cleanup()


def _claim_keep_folder(folder: Path) -> None:
    if folder.exists() and not folder.is_dir():
        raise InputError(f"--keep {folder} is a file: expected a folder for the uploads")
    if not folder.exists() and not folder.parent.is_dir():  # a typo makes no new folders
        raise InputError(f"--keep {folder}: its folder {folder.parent} "
                         f"{describe_path(folder.parent)}: expected an existing folder (make "
                         "it first)")
    if folder.is_dir() and any(folder.iterdir()) and not (folder / KEEP_MARKER).is_file():
        raise InputError(f"--keep {folder} is not empty and was not made by attnmeta serve: "
                         "expected a new or empty folder; nothing was written there")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / KEEP_MARKER).write_text("uploads kept by attnmeta serve\n")


def check_count(count: int, limit: int, what: str) -> None:
    """At least one ``what``, at most ``limit``."""
    if count == 0:
        raise InputError(f"no {what}: expected at least one")
    if count > limit:
        raise InputError(f"{count} {what}: expected at most {limit} in one request")


def _shown_name(upload: Upload, index: int) -> str:
    return Path(upload.filename or f"file {index}").name or f"file {index}"


def size_of(upload: Upload) -> int:
    if upload.size is not None:
        return int(upload.size)
    upload.file.seek(0, 2)  # to the end: the size of a file without a declared one
    size = upload.file.tell()
    upload.file.seek(0)
    return size


def decoded_pixels(image: Image.Image, image_size: int | None) -> int:
    """The pixels reading an opened (not yet decoded) ``image`` for a model of input size
    ``image_size`` decodes: its whole size, or for a JPEG the reduced scale libjpeg
    decodes it at (as :func:`attnmeta.tasks.image_folder.load_image` asks: ``draft``,
    at least twice ``image_size`` a side). ``image_size`` None: the whole size."""
    if image_size is not None and image.format in ("JPEG", "MPO"):
        image.draft("RGB", (2 * image_size, 2 * image_size))  # sets the size it will decode
    width, height = image.size
    return width * height


def check_images(uploads: Sequence[Upload], image_size: int | None = None,
                 max_pixels: int | None = None) -> list[str]:
    """Each upload's name, once every one has an image suffix, is at most
    ``MAX_IMAGE_BYTES`` and has a header PIL recognises, and all of them together decode
    at most ``max_pixels`` (None: :data:`MAX_REQUEST_PIXELS`) pixels for a model of input
    size ``image_size`` (see :func:`decoded_pixels`; the refusal names the image that
    crosses it). Only headers are read here."""
    max_pixels = MAX_REQUEST_PIXELS if max_pixels is None else max_pixels
    names, pixels = [], 0
    for index, upload in enumerate(uploads):
        name = _shown_name(upload, index)
        suffix = Path(name).suffix.lower()
        if suffix not in IMAGE_SUFFIXES:
            raise InputError(f"{name} is not an image file (suffix {suffix or 'none'}): "
                             f"expected files ending in {', '.join(sorted(IMAGE_SUFFIXES))}")
        size = size_of(upload)
        if size > MAX_IMAGE_BYTES:
            raise InputError(f"{name} is {size / 2**20:.1f} MB: expected at most "
                             f"{MAX_IMAGE_BYTES // 2**20} MB per image")
        try:
            with Image.open(upload.file) as image:  # reads the header only
                pixels += decoded_pixels(image, image_size)
        except Image.DecompressionBombError as error:  # PIL's own check of the header's size
            raise InputError(f"{name} is too large to decode safely "
                             f"({str(error).split(',')[0]}: a possible decompression bomb): "
                             "expected a smaller image") from None
        except (UnidentifiedImageError, OSError):
            raise InputError(f"{name} is not an image PIL can read (its contents are no "
                             f"{suffix[1:].upper()} image): expected an image file") from None
        finally:
            upload.file.seek(0)
        if pixels > max_pixels:
            raise InputError(f"{name} brings this request's images to {pixels / 1e6:,.1f} "
                             f"million pixels to decode: expected at most "
                             f"{max_pixels / 1e6:,.0f} million per request (send fewer or "
                             "smaller images, in several requests; attnmeta adapt / predict "
                             "read a folder of any size)")
        names.append(name)
    return names


def store_images(uploads: Sequence[Upload], names: Sequence[str], folder: Path) -> list[Path]:
    """Write checked uploads into ``folder`` (numbered, so equal names do not collide). Each
    path is a :class:`~attnmeta.fewshot.inputs.NamedPath` of its upload's name: a message
    about it (a truncated file, say) names the file the person sent, not where the server
    keeps it."""
    paths = []
    for index, (upload, name) in enumerate(zip(uploads, names)):
        safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name)[-80:]
        path = folder / f"{index:04d}-{safe}"
        with path.open("xb") as out:
            shutil.copyfileobj(upload.file, out)
        paths.append(named_path(path, name))
    return paths


def check_label(label: Any, where: str) -> str:
    """A class name: a non-empty string of at most ``MAX_LABEL_CHARS``."""
    if not isinstance(label, str) or not label.strip():
        raise InputError(f"{where} has no class name: expected a name for every class")
    if len(label.strip()) > MAX_LABEL_CHARS:
        raise InputError(f"{where}: class name {label.strip()[:30]!r}... is {len(label)} "
                         f"characters: expected at most {MAX_LABEL_CHARS}")
    return label.strip()


def check_sentence(text: Any, where: str) -> str:
    """A sentence: a non-empty string of at most ``MAX_TEXT_CHARS``."""
    if not isinstance(text, str) or not text.strip():
        raise InputError(f"{where} is {text!r:.40}: expected a non-empty sentence")
    if len(text) > MAX_TEXT_CHARS:
        raise InputError(f"{where} is {len(text)} characters: expected at most "
                         f"{MAX_TEXT_CHARS} per sentence")
    return text.strip()


def write_texts(path: Path, texts: Sequence[str], labels: Sequence[str] | None = None) -> Path:
    """Sentences (and their labels) as a CSV with columns ``text[,label]``: what the
    library reads as a support set or as queries (a sentence is never taken for a path)."""
    with path.open("x", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["text", "label"] if labels is not None else ["text"])
        for index, text in enumerate(texts):
            writer.writerow([text, labels[index]] if labels is not None else [text])
    return path


# ------------------------------------------------------------ a request's examples
def _files(values: Sequence[Any]) -> list[Upload]:
    return [value for value in values if not isinstance(value, str)]


def image_support(files: Sequence[Any], labels: Sequence[Any], folder: Path,
                  image_size: int | None = None) -> list[tuple[Path, str]]:
    """``(stored path, class)`` pairs for uploaded images and their parallel labels
    (their pixels within :data:`MAX_REQUEST_PIXELS` for a model of ``image_size``)."""
    images = _files(files)
    check_count(len(images), MAX_SUPPORT_FILES, "support images")
    labels = [label for label in labels if isinstance(label, str)]
    if len(labels) != len(images):
        raise InputError(f"{len(images)} files but {len(labels)} labels: expected one labels "
                         "field (the file's class) per file")
    names = check_images(images, image_size)
    labels = [check_label(label, f"image {name}") for label, name in zip(labels, names)]
    return list(zip(store_images(images, names, folder), labels))


def image_queries(files: Sequence[Any], folder: Path, image_size: int | None = None
                  ) -> tuple[list[str], list[Path]]:
    """The uploaded query images' names and stored paths (their pixels within
    :data:`MAX_REQUEST_PIXELS` for a model of ``image_size``)."""
    images = _files(files)
    check_count(len(images), MAX_QUERY_FILES, "query images")
    names = check_images(images, image_size)
    return names, store_images(images, names, folder)


def text_support(examples: Any, csv_files: Sequence[Any], folder: Path
                 ) -> list[tuple[str, str]]:
    """``(sentence, class)`` pairs from JSON ``examples`` ``[{"text", "label"}]`` or the
    first uploaded CSV (columns ``text,label``); kept in ``folder/support.csv``."""
    uploaded = _files(csv_files)
    if uploaded:
        if size_of(uploaded[0]) > MAX_CSV_BYTES:
            raise InputError(f"{_shown_name(uploaded[0], 0)} is over {MAX_CSV_BYTES // 2**20} "
                             "MB: expected a smaller CSV")
        path = named_path(folder / "uploaded.csv", _shown_name(uploaded[0], 0))
        with path.open("xb") as out:
            shutil.copyfileobj(uploaded[0].file, out)
        from attnmeta.fewshot.inputs import read_csv_rows

        examples = [row for _, row in read_csv_rows(path, ("text", "label"))]
    elif not isinstance(examples, list):
        raise InputError('no examples: expected JSON {"examples": [{"text": ..., "label": '
                         '...}]} or a CSV upload (field file, columns text,label)')
    check_count(len(examples), MAX_SUPPORT_FILES, "support examples")
    bad = [i for i, example in enumerate(examples) if not isinstance(example, dict)]
    if bad:
        raise InputError(f"example {bad[0]} is {type(examples[bad[0]]).__name__}: expected "
                         'an object {"text": ..., "label": ...}')
    texts = [check_sentence(e.get("text"), f"example {i}") for i, e in enumerate(examples)]
    labels = [check_label(e.get("label"), f"example {i}") for i, e in enumerate(examples)]
    write_texts(folder / "support.csv", texts, labels)
    return list(zip(texts, labels))


def text_queries(texts: Any, folder: Path, one_by_one: bool
                 ) -> tuple[list[str], Path, list[Path]]:
    """The sentences, a CSV of them all (one model call) and, with ``one_by_one``, a CSV
    per sentence (explanations). Files we wrote: a sentence is never read as a path."""
    if not isinstance(texts, list):
        raise InputError('no texts: expected JSON {"texts": ["a sentence", ...]}')
    check_count(len(texts), MAX_QUERY_FILES, "query texts")
    names = [check_sentence(text, f"text {i}") for i, text in enumerate(texts)]
    singles = [write_texts(folder / f"query-{i:04d}.csv", [text])
               for i, text in enumerate(names)] if one_by_one else []
    return names, write_texts(folder / "queries.csv", names), singles


def number(value: Any, kind: type, name: str) -> Any:
    """A form or JSON field as ``kind`` (int or float); None if absent or empty."""
    if value is None or value == "":
        return None
    try:
        return kind(value)
    except (TypeError, ValueError):
        what = "an integer" if kind is int else "a number"
        raise InputError(f"{name}={value!r:.30}: expected {what}") from None


def flag(value: Any) -> bool:
    """A form or JSON field as a yes/no."""
    return value is True or str(value).lower() in ("1", "true", "on", "yes")
