"""The user's own image folders: huge images are refused in one line, and converting
colour to grey (or grey to RGB) for the model is said once per split, not silently."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from attnmeta.tasks import LabelledSplit, load_image_folder
from attnmeta.tasks.image_folder import load_image

LOGGER = "attnmeta.tasks.image_folder"


def write_images(folder: Path, modes: list[str], size: int = 8) -> None:
    """One PNG per entry of ``modes`` (PIL mode 'L', 'RGB', 'RGBA', ...) in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(modes))
    for i, mode in enumerate(modes):
        channels = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4}[mode]
        pixels = rng.integers(0, 256, (size, size, channels), dtype=np.uint8)
        Image.fromarray(pixels.squeeze(-1) if channels == 1 else pixels, mode).save(
            folder / f"{i}.png")


def conversion_records(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == LOGGER and r.levelno == logging.WARNING]


def test_split_shape_labels_and_interface(tmp_path):
    write_images(tmp_path / "train" / "b", ["L"] * 3)
    write_images(tmp_path / "train" / "a", ["L"] * 2)
    split = load_image_folder(tmp_path, "train", image_size=6)
    assert isinstance(split, LabelledSplit) and split.items is split.images
    assert split.images.shape == (5, 1, 6, 6) and split.images.dtype == torch.float32
    assert split.labels.dtype == torch.int64 and split.labels.tolist() == [0, 0, 1, 1, 1]
    assert split.class_names == ["a", "b"] and split.split == "train"


def test_colour_images_read_as_grey_are_reported_once_per_split(tmp_path, caplog):
    write_images(tmp_path / "train" / "a", ["RGB", "RGB", "L"])
    write_images(tmp_path / "train" / "b", ["RGBA", "L", "RGB"])
    write_images(tmp_path / "test" / "a", ["L", "L"])
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        train = load_image_folder(tmp_path, "train", image_size=4, channels=1)
        assert conversion_records(caplog) == [
            f"converted 3 RGB, 1 RGBA images of {tmp_path / 'train'} to grey "
            "(the model reads 1 channel)"]
        caplog.clear()
        load_image_folder(tmp_path, "test", image_size=4, channels=1)
        assert conversion_records(caplog) == []  # grey stored, grey read: nothing to say
    assert train.images.shape == (6, 1, 4, 4)


def test_grey_images_read_as_rgb_are_reported(tmp_path, caplog):
    write_images(tmp_path / "a", ["L", "RGB"])
    write_images(tmp_path / "b", ["L", "L"])
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        split = load_image_folder(tmp_path, None, image_size=4, channels=3)
    assert conversion_records(caplog) == [
        f"converted 3 L images of {tmp_path} to RGB (the model reads 3 channels)"]
    assert split.images.shape == (4, 3, 4, 4) and split.split == ""


def test_decompression_bomb_is_one_line_naming_the_file_and_its_size(tmp_path, monkeypatch):
    write_images(tmp_path / "train" / "a", ["L", "L"], size=64)  # 4096 pixels each
    # PIL refuses above twice MAX_IMAGE_PIXELS; lowering it stands in for a 20000x20000 PNG
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    path = tmp_path / "train" / "a" / "0.png"
    with pytest.raises(ValueError) as excinfo:
        load_image(path, 8, 1)
    message = str(excinfo.value)
    assert "\n" not in message
    assert message.startswith(f"image {path} is too large: 4096 pixels, over the 2000 PIL "
                              "decodes safely (a possible decompression bomb)")
    with pytest.raises(ValueError, match=r"0.png is too large: 4096 pixels"):
        load_image_folder(tmp_path, "train", image_size=8)


def test_unreadable_image_is_named(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match=r"cannot read image .*broken.png"):
        load_image_folder(tmp_path, None)
