"""Few-shot data from the user's own image folders: ``root/<split>/<class>/<image>``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

__all__ = ["LabelledImages", "load_image_folder", "IMAGE_SUFFIXES"]

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


@dataclass
class LabelledImages:
    """Images ``[N, C, H, W]`` float32 in [0, 1], labels ``[N]`` in ``0..C-1``, class names."""

    images: torch.Tensor
    labels: torch.Tensor
    class_names: list[str]


def load_image(path: Path, image_size: int, channels: int) -> np.ndarray:
    """One image as ``[channels, image_size, image_size]`` float32 in [0, 1]."""
    try:
        with Image.open(path) as image:
            image = image.convert("L" if channels == 1 else "RGB")
            image = image.resize((image_size, image_size), Image.Resampling.LANCZOS)
            array = np.asarray(image, dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError) as error:
        raise ValueError(f"cannot read image {path}: {error}") from None
    return array[None] if channels == 1 else array.transpose(2, 0, 1)


def load_image_folder(root: str | Path, split: str = "train", image_size: int = 28,
                      channels: int = 1) -> LabelledImages:
    """Read ``root/<split>/<class>/*`` (or ``root/<class>/*`` if ``split`` is None).

    Each sub-folder is a class; its name is the class name. Classes are sorted by name so
    the label of a class never depends on the file system's listing order.
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
    for label, class_dir in enumerate(class_dirs):
        files = sorted(p for p in class_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise ValueError(f"class folder {class_dir} holds no images: expected files "
                             f"ending in {sorted(IMAGE_SUFFIXES)}")
        images += [load_image(p, image_size, channels) for p in files]
        labels += [label] * len(files)
        names.append(class_dir.name)
    return LabelledImages(torch.from_numpy(np.stack(images)), torch.tensor(labels), names)
