"""Few-shot data from the user's own image folders: ``root/<split>/<class>/<image>``."""

from __future__ import annotations

import logging
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

__all__ = ["LabelledImages", "load_image_folder", "load_image", "IMAGE_SUFFIXES"]

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


def _changes_colour(mode: str, channels: int) -> bool:
    """Whether reading an image stored in PIL ``mode`` for a ``channels``-channel model
    drops its colour (colour -> grey) or invents channels (grey -> RGB)."""
    grey = mode in _GREY_MODES or mode.startswith("I;16")
    return grey if channels == 3 else not grey


def _read_image(path: Path, image_size: int, channels: int) -> tuple[np.ndarray, str]:
    """:func:`load_image`'s array, and the PIL mode the file was stored in (e.g. "RGB")."""
    try:
        with Image.open(path) as image:
            mode = image.mode
            image = image.convert("L" if channels == 1 else "RGB")
            image = image.resize((image_size, image_size), Image.Resampling.LANCZOS)
            array = np.asarray(image, dtype=np.float32) / 255.0
    except Image.DecompressionBombError as error:
        # PIL's message: "Image size (N pixels) exceeds limit of M pixels, could be ..."
        numbers = re.findall(r"\d+", str(error))
        size = f"{numbers[0]} pixels, over the {numbers[1]}" if len(numbers) >= 2 else "over the"
        raise ValueError(f"image {path} is too large: {size} PIL decodes safely (a possible "
                         f"decompression bomb); shrink it, or raise PIL.Image.MAX_IMAGE_PIXELS "
                         f"if you trust the file") from None
    except (UnidentifiedImageError, OSError) as error:
        raise ValueError(f"cannot read image {path}: {error}") from None
    return (array[None] if channels == 1 else array.transpose(2, 0, 1)), mode


def load_image(path: Path, image_size: int, channels: int) -> np.ndarray:
    """One image as ``[channels, image_size, image_size]`` float32 in [0, 1].

    Raises ``ValueError`` naming the file if it is not a readable image, or is so large
    that PIL refuses to decode it (``Image.DecompressionBombError``).
    """
    return _read_image(path, image_size, channels)[0]


def load_image_folder(root: str | Path, split: str | None = "train", image_size: int = 28,
                      channels: int = 1) -> LabelledImages:
    """Read ``root/<split>/<class>/*`` (or ``root/<class>/*`` if ``split`` is None) as
    ``images [N, channels, image_size, image_size]`` float32 in [0, 1] and ``labels [N]``.

    Each sub-folder is a class; its name is the class name. Classes are sorted by name so
    the label of a class never depends on the file system's listing order. Images stored
    with other channels than the model reads (colour for a 1-channel model, grey for a
    3-channel one) are converted, and one warning per split says how many.
    """
    folder = Path(root) if split is None else Path(root) / split
    if not folder.is_dir():
        raise FileNotFoundError(
            f"image folder {folder} does not exist: expected {folder}/<class>/<images>")
    class_dirs = sorted(d for d in folder.iterdir() if d.is_dir())
    if not class_dirs:
        raise ValueError(f"image folder {folder} has no class sub-folders: "
                         f"expected {folder}/<class>/<images>")
    images, labels, names = [], [], []
    converted: Counter[str] = Counter()  # stored mode -> count, for converted images only
    for label, class_dir in enumerate(class_dirs):
        files = sorted(p for p in class_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise ValueError(f"class folder {class_dir} holds no images: expected files "
                             f"ending in {sorted(IMAGE_SUFFIXES)}")
        for path in files:
            array, mode = _read_image(path, image_size, channels)
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
