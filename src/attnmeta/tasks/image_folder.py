"""Few-shot data from the user's own image folders: ``root/<split>/<class>/<image>``."""

from __future__ import annotations

import io
import logging
import numbers
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from attnmeta.errors import ConfigError, DataError, InputError, MissingDataError
from attnmeta.files import shown_name
from attnmeta.tasks.registry import DatasetEntry, register_dataset

__all__ = ["LabelledImages", "load_image_folder", "load_image", "IMAGE_SUFFIXES", "FITS",
           "check_image_size", "is_hidden"]

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
# PIL modes without colour; every other mode (RGB, RGBA, P, CMYK, ...) may hold colour
_GREY_MODES = {"1", "L", "LA", "La", "I", "F"}


@dataclass
class LabelledImages:
    """Images ``[N, C, H, W]`` float32 in [0, 1], int64 labels ``[N]`` in ``0..C-1``, class
    names ``[C]``, and the split's name ('' if unknown)."""

    images: torch.Tensor
    labels: torch.Tensor
    class_names: list[str]
    split: str = ""

    @property
    def items(self) -> torch.Tensor:
        """``images``, under the name every :class:`attnmeta.tasks.LabelledSplit` uses."""
        return self.images


# Geometry of a decoded image: how a picture of another shape becomes S x S
FITS = ("resize", "crop", "pad")
_FIT_HELP = ("'resize' (squash to S x S), 'crop' (shorter side to S, centre S x S kept) or "
             "'pad' (longer side to S, padded with white)")
# modes holding an alpha channel; a palette or a L/RGB image may also name a transparent
# colour in image.info["transparency"]
_ALPHA_MODES = {"RGBA", "RGBa", "LA", "La", "PA"}
_WHITE = {"L": 255, "RGB": (255, 255, 255), "F": 1.0}


def is_hidden(path: Path, root: Path | None = None) -> bool:
    """Whether ``path`` (or, with ``root``, any part of it below ``root``) is hidden: a name
    starting with "." (``.DS_Store``, macOS's AppleDouble ``._photo.png``, ``.git``) or the
    ``__MACOSX`` folder a zip made on macOS holds. Such files are never examples."""
    parts = path.relative_to(root).parts if root is not None else (path.name,)
    return any(part.startswith(".") or part == "__MACOSX" for part in parts)


def check_fit(fit: str) -> str:
    """``fit`` itself if it is one of :data:`FITS`, else a ``ValueError`` naming it."""
    if fit not in FITS:
        raise InputError(f"unknown fit {fit!r}: expected {_FIT_HELP}")
    return fit


def _changes_colour(mode: str, channels: int) -> bool:
    """Whether reading an image stored in PIL ``mode`` for a ``channels``-channel model
    drops its colour (colour -> grey) or invents channels (grey -> RGB)."""
    grey = mode in _GREY_MODES or mode.startswith("I;16")
    return grey if channels == 3 else not grey


def _high_bit_values(image: Image.Image) -> np.ndarray:
    """A 16-bit or 32-bit grey image (``I;16*``, ``I``, ``F``) as float32 in [0, 1], scaled
    by the range of the data's type, never clipped at 255: a 16-bit PNG pixel of 32768
    reads 0.5. ``I`` holds any integer data: non-negative values within 0..65535 are taken
    as unsigned 16-bit (what older PILs give for a 16-bit PNG), larger ones by the type's
    positive range (0..2**31 - 1); data with negative values as signed 16-bit if it fits,
    else as signed 32-bit. ``F`` within [0, 1] is kept, within [0, 255] or [0, 65535] is
    taken as 8- or 16-bit values, else its own minimum and maximum map to 0 and 1. A pixel
    of the colour ``image.info["transparency"]`` names reads white."""
    raw = np.asarray(image)
    values = raw.astype(np.float64)
    if image.mode == "F":
        values = np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if raw.dtype.kind == "f":
        if low >= 0 and high <= 1:
            pass
        elif low >= 0 and high <= 255:
            values = values / 255.0
        elif low >= 0 and high <= 65535:
            values = values / 65535.0
        else:
            values = (values - low) / (high - low) if high > low else np.zeros_like(values)
    elif low >= 0:  # unsigned: 16-bit if it fits, else the type's whole positive range
        values = values / (65535.0 if high <= 65535 else float(np.iinfo(raw.dtype).max))
    elif low >= -32768 and high <= 32767:
        values = (values + 32768.0) / 65535.0
    else:
        values = (values + 2.0 ** 31) / (2.0 ** 32 - 1)
    transparent = image.info.get("transparency")
    if isinstance(transparent, (int, float)) and not isinstance(transparent, bool):
        values[raw == transparent] = 1.0
    return np.clip(values, 0.0, 1.0).astype(np.float32)


def _opaque(image: Image.Image, channels: int) -> Image.Image:
    """``image`` as the ``L`` or ``RGB`` image a person sees (``channels`` 1 or 3), or as an
    ``F`` image in [0, 1] for 16- and 32-bit grey. Transparent parts are white; a palette
    image is read through its palette; CMYK, YCbCr and 1-bit images are converted."""
    mode = image.mode
    if mode.startswith("I;16") or mode in ("I", "F"):
        return Image.fromarray(_high_bit_values(image), mode="F")
    if mode in ("P", "PA") or mode in _ALPHA_MODES or "transparency" in image.info:
        grey = mode in _GREY_MODES
        image = image.convert("LA" if grey else "RGBA")
        base = "L" if grey else "RGB"
        background = Image.new(base, image.size, _WHITE[base])
        # paste with a mask blends: alpha * colour + (1 - alpha) * white
        background.paste(image.convert(base), mask=image.getchannel("A"))
        image = background
    return image.convert("L" if channels == 1 else "RGB")


def _fit_square(image: Image.Image, size: int, fit: str) -> Image.Image:
    """``image`` (``L``, ``RGB`` or ``F``) as ``size`` x ``size`` by ``fit`` (see FITS)."""
    width, height = image.size
    if fit == "resize":
        return image.resize((size, size), Image.Resampling.LANCZOS)
    if fit == "crop":
        side = min(width, height)
        box = ((width - side) / 2, (height - side) / 2, (width + side) / 2, (height + side) / 2)
        return image.resize((size, size), Image.Resampling.LANCZOS, box=box)
    scale = size / max(width, height)
    inner = (max(1, min(size, round(width * scale))), max(1, min(size, round(height * scale))))
    canvas = Image.new(image.mode, (size, size), _WHITE[image.mode])
    canvas.paste(image.resize(inner, Image.Resampling.LANCZOS),
                 ((size - inner[0]) // 2, (size - inner[1]) // 2))
    return canvas


def _pixels(image: Image.Image, image_size: int, channels: int, fit: str) -> np.ndarray:
    """An upright ``image`` as ``[image_size, image_size(, 3)]`` float32 in [0, 1]."""
    picture = _fit_square(_opaque(image, channels), image_size, fit)
    if picture.mode != "F":
        return np.asarray(picture, dtype=np.float32) / 255.0
    array = np.clip(np.asarray(picture, dtype=np.float32), 0.0, 1.0)
    return np.repeat(array[:, :, None], 3, axis=2) if channels == 3 else array


def _read_image(path: Path | io.BytesIO | Image.Image, image_size: int, channels: int,
                fit: str = "resize", name: str | None = None) -> tuple[np.ndarray, str]:
    """:func:`load_image`'s array, and the PIL mode the file was stored in (e.g. "RGB").

    The one place a file becomes pixels: its EXIF orientation is applied, transparency is
    composited onto white, 16-bit data is scaled by value, and a large JPEG is decoded by
    libjpeg at a reduced scale (still at least twice ``image_size`` on each side, as PIL's
    own thumbnails do) before ``fit`` makes it ``image_size`` square. ``path`` may also be
    a PIL image already open, read the same way and left as it was. ``name``: how messages
    name the file (default: ``path``'s ``shown`` name if it has one, as an upload stored by
    ``attnmeta serve`` has, else ``path``). An image of
    several frames (an animated GIF, PNG or WebP, a multi-page TIFF) is read as its first,
    and one between PIL's pixel limit and twice it (which PIL decodes, with a warning of
    its own) is read; each with one warning naming the file.
    """
    check_fit(fit)
    check_image_size(image_size)
    shown = name or (shown_name(path) if isinstance(path, (str, Path)) else "image")
    try:
        if isinstance(path, Image.Image):
            mode = path.mode
            array = _pixels(ImageOps.exif_transpose(path), image_size, channels, fit)  # a copy
        else:
            with Image.open(path) as image:
                mode = image.mode
                _note_unusual(image, shown)
                if image.format in ("JPEG", "MPO"):
                    image.draft("RGB", (2 * image_size, 2 * image_size))
                ImageOps.exif_transpose(image, in_place=True)
                array = _pixels(image, image_size, channels, fit)
    except Image.DecompressionBombError as error:
        # PIL's message: "Image size (N pixels) exceeds limit of M pixels, could be ..."
        counts = re.findall(r"\d+", str(error))
        size = f"{counts[0]} pixels, over the {counts[1]}" if len(counts) >= 2 else "over the"
        raise InputError(f"image {shown} is too large: {size} PIL decodes safely (a possible "
                         f"decompression bomb); shrink it, or raise PIL.Image.MAX_IMAGE_PIXELS "
                         f"if you trust the file") from None
    except UnidentifiedImageError:
        raise InputError(f"cannot read image {shown}: its contents are in no image format PIL "
                         f"reads: expected an image file ({', '.join(sorted(IMAGE_SUFFIXES))})"
                         ) from None
    except (OSError, ValueError, SyntaxError, EOFError) as error:
        # ValueError: a mode PIL cannot convert (e.g. LAB), or a corrupt EXIF block;
        # SyntaxError, EOFError: how some of PIL's decoders report a damaged file
        damaged = "truncated" in str(error).lower() or isinstance(error, EOFError)
        raise InputError(f"cannot read image {shown}: {error or type(error).__name__}: expected "
                         + ("a complete image file" if damaged else
                            "an image file PIL can decode")) from None
    return (array[None] if channels == 1 else array.transpose(2, 0, 1)), mode


def check_image_size(image_size: int) -> int:
    """``image_size`` itself if it is a whole number of pixels, 1 or more (else a
    ``ValueError`` naming it)."""
    if isinstance(image_size, bool) or not isinstance(image_size, numbers.Integral) \
            or image_size < 1:
        raise InputError(f"image_size={image_size!r}: expected the side, in pixels, of the "
                         "square images the model reads (1 or more)")
    return image_size


def _note_unusual(image: Image.Image, shown: object) -> None:
    """One warning for an opened ``image`` that is read, but not all of it or not as PIL
    would without a word: several frames (the first is read; not for a camera's MPO), or
    more pixels than PIL's limit (up to twice it, beyond which PIL refuses it). Frames that
    cannot be counted are an ``EOFError`` (a damaged file)."""
    limit = Image.MAX_IMAGE_PIXELS
    width, height = image.size
    if limit and width * height > limit:
        logger.warning("image %s has %d pixels, over PIL's limit of %d (a possible "
                       "decompression bomb; under twice it, so read anyway): expected a "
                       "smaller image", shown, width * height, limit)
    if image.format == "MPO":  # a camera's JPEG with previews or depth after the picture
        return
    try:  # finding a second frame reads on past the first
        frames = getattr(image, "n_frames", 1) if getattr(image, "is_animated", False) else 1
        image.seek(0)
    except Exception as error:  # PIL's frame readers fail in many ways on a cut file
        raise EOFError(f"its frames end early or are damaged ({type(error).__name__}: "
                       f"{error})") from None
    if frames > 1:
        logger.warning("image %s has %d frames (animated or several pages): the model reads "
                       "the first only", shown, frames)


def load_image(path: Path, image_size: int, channels: int, fit: str = "resize") -> np.ndarray:
    """One image as ``[channels, image_size, image_size]`` float32 in [0, 1], read as a
    person sees it (EXIF orientation, transparency on white, 16-bit by value), made square
    by ``fit`` (one of :data:`FITS`: "resize" squashes, "crop" keeps the centre square,
    "pad" keeps the whole picture on white).

    Raises ``ValueError`` naming the file if it is not a readable image, or is so large
    that PIL refuses to decode it (``Image.DecompressionBombError``), and for an unknown
    ``fit``.
    """
    return _read_image(path, image_size, channels, fit)[0]


def load_image_folder(root: str | Path, split: str | None = "train", image_size: int = 28,
                      channels: int = 1, *, fit: str = "resize") -> LabelledImages:
    """Read ``root/<split>/<class>/*`` (or ``root/<class>/*`` if ``split`` is None) as
    ``images [N, channels, image_size, image_size]`` float32 in [0, 1] and ``labels [N]``.

    Each sub-folder is a class; its name is the class name. Hidden files and folders
    (:func:`is_hidden`: ``.DS_Store``, ``._photo.png``, ``__MACOSX``) are skipped. Classes
    are sorted by name so the label of a class never depends on the file system's listing
    order. Images stored
    with other channels than the model reads (colour for a 1-channel model, grey for a
    3-channel one) are converted, and one warning per split says how many. ``fit`` makes
    each image square as :func:`load_image` does.
    """
    check_fit(fit)
    check_image_size(image_size)
    folder = Path(root) if split is None else Path(root) / split
    if not folder.is_dir():
        raise MissingDataError(
            f"image folder {folder} does not exist: expected {folder}/<class>/<images>")
    class_dirs = sorted(d for d in folder.iterdir() if d.is_dir() and not is_hidden(d))
    if not class_dirs:
        raise DataError(f"image folder {folder} has no class sub-folders: "
                        f"expected {folder}/<class>/<images>")
    images, labels, names = [], [], []
    converted: Counter[str] = Counter()  # stored mode -> count, for converted images only
    for label, class_dir in enumerate(class_dirs):
        files = sorted(p for p in class_dir.iterdir()
                       if p.suffix.lower() in IMAGE_SUFFIXES and not is_hidden(p) and p.is_file())
        if not files:
            raise DataError(f"class folder {class_dir} holds no images: expected files "
                            f"ending in {sorted(IMAGE_SUFFIXES)}")
        for path in files:
            array, mode = _read_image(path, image_size, channels, fit)
            images.append(array)
            if _changes_colour(mode, channels):
                converted[mode] += 1
        labels += [label] * len(files)
        names.append(class_dir.name)
    if converted:
        # one record per split: a silent change of colour would make results hard to trust
        target = "grey" if channels == 1 else "RGB"
        stored = ", ".join(f"{count} {mode}" for mode, count in sorted(converted.items()))
        logger.warning("converted %s image%s of %s to %s (the model reads %d channel%s)",
                       stored, "" if sum(converted.values()) == 1 else "s", folder, target,
                       channels, "" if channels == 1 else "s")
    return LabelledImages(torch.from_numpy(np.stack(images)),
                          torch.tensor(labels, dtype=torch.int64), names, split or "")


def _load(config: Any, split: str, tokenizer: object) -> LabelledImages:
    if config.data.root is None:
        raise ConfigError("config key 'data.root' is not set: expected the image folder's "
                          "path (data.root=/path/with/train/and/test)")
    return load_image_folder(config.data.root, split=split, image_size=config.data.image_size,
                             channels=config.data.channels)


register_dataset("image_folder", DatasetEntry(_load, channels=3))
