"""BreastMNIST and RetinaMNIST: two of MedMNIST v2's 28 x 28 sets (Yang et al., Scientific
Data 10:41, 2023), for few-shot evaluation on medical images.

Files, inside ``<data root>/medmnist/`` (or a folder given directly): the official
``breastmnist.npz`` and ``retinamnist.npz`` of the MedMNIST Zenodo record 10519652, with the
arrays ``{train,val,test}_images`` (uint8, ``[N, 28, 28]`` grey or ``[N, 28, 28, 3]`` RGB) and
``{train,val,test}_labels`` (``[N, 1]``). URLs, MD5s, label names and split sizes are those of
``medmnist/info.py`` in the ``medmnist`` 3.0.2 package (github.com/MedMNIST/MedMNIST, commit
3bb56be69bca38e5f105b21e4d6482b91354d3a4), copied into :data:`MEDMNIST_INFO`; the package
itself is not a dependency. Licence CC BY 4.0: cite the paper and the source data sets
(BreastMNIST: Al-Dhabyani et al. 2020; RetinaMNIST: the DeepDRiD challenge, Liu et al. 2022).

A local copy is read only if its MD5 is the official one (checked on each load, remembered
per file size and modification time), then its arrays are checked against the table.

**Splits.** These sets have 2 (breast: 0 "malignant", 1 "normal, benign") and 5 (retina:
diabetic retinopathy grades "0" .. "4") classes, far too few to split by class, so there is
no meta-learning class split: ``'train'`` / ``'val'`` / ``'test'`` are the official *image*
splits, each holding every class. They are for few-shot **evaluation** of a model
meta-trained elsewhere (support and queries drawn from the official test set: 156 breast,
400 retina images), never for meta-training: a model meta-trained on ``'train'`` has seen the
very classes it is tested on.
"""

from __future__ import annotations

import functools
import numbers
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from attnmeta.errors import ConfigError, DataError, MissingDataError
from attnmeta.files import file_digest
from attnmeta.tasks.data_root import data_root_path, resolve_data_root
from attnmeta.tasks.download import download_files
from attnmeta.tasks.image_folder import LabelledImages
from attnmeta.tasks.registry import DatasetEntry, register_dataset

__all__ = ["MEDMNIST_SETS", "MEDMNIST_SPLITS", "MEDMNIST_URLS", "MEDMNIST_MD5", "MEDMNIST_INFO",
           "MedmnistInfo", "find_medmnist_file", "load_medmnist", "download_medmnist",
           "download_breastmnist", "download_retinamnist"]

MEDMNIST_SETS: tuple[str, ...] = ("breastmnist", "retinamnist")
MEDMNIST_SPLITS: tuple[str, ...] = ("train", "val", "test")
NATIVE_SIZE = 28


@dataclass(frozen=True)
class MedmnistInfo:
    """What ``medmnist/info.py`` says of one set."""

    python_class: str
    url: str
    md5: str
    task: str
    label: dict[str, str]
    n_channels: int
    n_samples: dict[str, int]
    license: str


_RECORD = "https://zenodo.org/records/10519652/files"
MEDMNIST_INFO: dict[str, MedmnistInfo] = {
    "breastmnist": MedmnistInfo(
        python_class="BreastMNIST",
        url=f"{_RECORD}/breastmnist.npz?download=1",
        md5="750601b1f35ba3300ea97c75c52ff8f6",
        task="binary-class",
        label={"0": "malignant", "1": "normal, benign"},
        n_channels=1,
        n_samples={"train": 546, "val": 78, "test": 156},
        license="CC BY 4.0"),
    "retinamnist": MedmnistInfo(
        python_class="RetinaMNIST",
        url=f"{_RECORD}/retinamnist.npz?download=1",
        md5="bd4c0672f1bba3e3a89f0e4e876791e4",
        task="ordinal-regression",
        label={"0": "0", "1": "1", "2": "2", "3": "3", "4": "4"},
        n_channels=3,
        n_samples={"train": 1080, "val": 120, "test": 400},
        license="CC BY 4.0"),
}
MEDMNIST_URLS: dict[str, str] = {name: info.url for name, info in MEDMNIST_INFO.items()}
MEDMNIST_MD5: dict[str, str] = {name: info.md5 for name, info in MEDMNIST_INFO.items()}


def _check_choice(name: str, value: object, choices: tuple) -> None:
    if value not in choices:
        raise ConfigError(f"{name}={value!r}: expected one of {', '.join(map(repr, choices))}")


def find_medmnist_file(name: str, data_root: str | Path | None = None) -> Path:
    """``<data root>/medmnist/<name>.npz``, or ``<data root>/<name>.npz`` (the root is the
    medmnist folder itself)."""
    _check_choice("name", name, MEDMNIST_SETS)
    root = resolve_data_root(data_root)
    for path in (root / "medmnist" / f"{name}.npz", root / f"{name}.npz"):
        if path.is_file():
            return path
    raise MissingDataError(f"no {name} data under {root}: expected "
                           f"{root / 'medmnist' / (name + '.npz')}; `attnmeta download {name} "
                           f"--data-root {root}` fetches it")


def _check_md5(path: Path, name: str) -> None:
    stat = path.stat()
    actual = _md5(path.resolve(), stat.st_size, stat.st_mtime_ns)
    if actual != MEDMNIST_MD5[name]:
        raise DataError(f"{path} has md5 {actual}, expected {MEDMNIST_MD5[name]}: it is not "
                        f"the official {name}.npz (move it away and `attnmeta download {name}`)")


@functools.lru_cache(maxsize=8)
def _md5(path: Path, size: int, mtime_ns: int) -> str:
    return file_digest(path, "md5")


def _read_split(path: Path, name: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images ``[N, 28, 28(, 3)]`` and int64 labels ``[N]``, checked against the table."""
    info = MEDMNIST_INFO[name]
    try:
        with np.load(path, allow_pickle=False) as data:
            images, labels = data[f"{split}_images"], data[f"{split}_labels"]
    except KeyError as error:
        raise DataError(f"{path} has no array {error}: expected {split}_images and "
                        f"{split}_labels") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise DataError(f"cannot read {path} ({error}): expected MedMNIST's .npz") from None
    count = info.n_samples[split]
    shape = (count, NATIVE_SIZE, NATIVE_SIZE) + ((3,) if info.n_channels == 3 else ())
    if images.dtype != np.uint8 or images.shape != shape:
        raise DataError(f"{path}: {split}_images is {images.dtype} {images.shape}, expected "
                        f"uint8 {shape}")
    if labels.shape not in ((count, 1), (count,)):
        raise DataError(f"{path}: {split}_labels has shape {labels.shape}, expected "
                        f"({count}, 1)")
    labels = labels.reshape(-1).astype(np.int64)
    if labels.min() < 0 or labels.max() >= len(info.label):
        raise DataError(f"{path}: {split}_labels span {labels.min()}..{labels.max()}, "
                        f"expected 0..{len(info.label) - 1}")
    return images, labels


def _resize(images: np.ndarray, image_size: int) -> np.ndarray:
    """Each uint8 image ``[28, 28(, 3)]`` resized with Lanczos, as the other loaders do."""
    return np.stack([np.asarray(Image.fromarray(image).resize(
        (image_size, image_size), Image.Resampling.LANCZOS)) for image in images])


def load_medmnist(name: str, data_root: str | Path | None = None, split: str = "test", *,
                  image_size: int = NATIVE_SIZE, channels: int | None = None
                  ) -> LabelledImages:
    """Official image split ``split`` of MedMNIST set ``name`` ('breastmnist' |
    'retinamnist'): ``images [N, C, S, S]`` float32 in [0, 1], ``labels [N]`` int64, and
    the official class names.

    Args:
        image_size: side ``S``; 28 is the files' own, others are Lanczos resizes.
        channels: ``None`` for the set's own (1 breast, 3 retina); 1 makes RGB grey (ITU-R
            601 luma, as PIL's "L"), 3 repeats a grey channel.
    """
    _check_choice("name", name, MEDMNIST_SETS)
    _check_choice("split", split, MEDMNIST_SPLITS)
    _check_choice("channels", channels, (None, 1, 3))
    if isinstance(image_size, bool) or not isinstance(image_size, numbers.Integral) \
            or image_size < 1:
        raise ConfigError(f"image_size={image_size!r}: expected a positive integer")
    path = find_medmnist_file(name, data_root)
    _check_md5(path, name)
    images, labels = _read_split(path, name, split)
    if image_size != NATIVE_SIZE:
        images = _resize(images, int(image_size))
    pixels = torch.from_numpy(np.ascontiguousarray(images)).float().div_(255.0)
    pixels = pixels.unsqueeze(1) if pixels.ndim == 3 else pixels.permute(0, 3, 1, 2)
    if channels == 1 and pixels.shape[1] == 3:
        luma = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
        pixels = (pixels * luma).sum(dim=1, keepdim=True)
    elif channels == 3 and pixels.shape[1] == 1:
        pixels = pixels.expand(-1, 3, -1, -1)
    info = MEDMNIST_INFO[name]
    class_names = [info.label[str(i)] for i in range(len(info.label))]
    return LabelledImages(pixels.contiguous(), torch.from_numpy(labels), class_names, split)


def download_medmnist(data_root: str | Path | None = None,
                      names: tuple[str, ...] = MEDMNIST_SETS) -> Path:
    """Fetch the official ``<name>.npz`` of each of ``names`` from Zenodo into
    ``<data_root>/medmnist``, checked against its MD5 as
    :func:`attnmeta.tasks.download.download_files` does (an existing file is checked and
    kept, never replaced)."""
    for name in names:
        _check_choice("name", name, MEDMNIST_SETS)
    return download_files(data_root_path(data_root) / "medmnist",
                          {f"{name}.npz": MEDMNIST_URLS[name] for name in names},
                          {f"{name}.npz": f"md5:{MEDMNIST_MD5[name]}" for name in names})


def download_breastmnist(data_root: str | Path | None = None) -> Path:
    """:func:`download_medmnist` of ``breastmnist.npz`` alone (560 kB)."""
    return download_medmnist(data_root, ("breastmnist",))


def download_retinamnist(data_root: str | Path | None = None) -> Path:
    """:func:`download_medmnist` of ``retinamnist.npz`` alone (3.3 MB)."""
    return download_medmnist(data_root, ("retinamnist",))


def _load(config: Any, split: str, tokenizer: object) -> LabelledImages:
    """The official *image* split ``split`` (every class in each): for few-shot evaluation
    with the official test set as queries, never meta-training (no class split)."""
    data = config.data
    return load_medmnist(data.dataset, data.root, split, image_size=data.image_size,
                         channels=data.channels)


register_dataset("breastmnist", DatasetEntry(_load, download=download_breastmnist))
register_dataset("retinamnist", DatasetEntry(_load, channels=3, download=download_retinamnist))
