"""BreastMNIST / RetinaMNIST: the real files (skipped where absent), their MD5s, and the
download path with fake files (no test reaches the internet)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from support import one_line_error

from attnmeta.files import file_digest
from attnmeta.runs.build import DATASETS, download_dataset, load_split
from attnmeta.runs.config import config_from_dict
from attnmeta.tasks import LabelledSplit
from attnmeta.tasks import medmnist
from attnmeta.tasks.data_root import DATA_ROOT_ENV_VAR
from attnmeta.tasks.medmnist import (MEDMNIST_INFO, MEDMNIST_MD5, MEDMNIST_URLS,
                                     download_medmnist, load_medmnist)

REAL_DATA = Path(os.environ.get(DATA_ROOT_ENV_VAR) or
                 Path(__file__).resolve().parents[3] / "shared" / "data")
needs_medmnist = pytest.mark.skipif(
    not all((REAL_DATA / "medmnist" / f"{name}.npz").is_file() for name in MEDMNIST_INFO),
    reason=f"MedMNIST breastmnist.npz / retinamnist.npz not found under {REAL_DATA}/medmnist "
           f"(set {DATA_ROOT_ENV_VAR})")

# SOURCE.md of the shared copy: official MD5s (medmnist 3.0.2 info.py) and the split sizes
SOURCE_MD5 = {"breastmnist": "750601b1f35ba3300ea97c75c52ff8f6",
              "retinamnist": "bd4c0672f1bba3e3a89f0e4e876791e4"}
SIZES = {"breastmnist": {"train": 546, "val": 78, "test": 156},
         "retinamnist": {"train": 1080, "val": 120, "test": 400}}
TRAIN_CLASS_COUNTS = {"breastmnist": [147, 399], "retinamnist": [486, 128, 206, 194, 66]}


def one_line(excinfo: pytest.ExceptionInfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


def test_table_is_medmnist_info():
    assert MEDMNIST_MD5 == SOURCE_MD5
    for name in SOURCE_MD5:
        assert MEDMNIST_URLS[name] == (f"https://zenodo.org/records/10519652/files/{name}.npz"
                                       "?download=1")
        assert MEDMNIST_INFO[name].n_samples == SIZES[name]
    assert MEDMNIST_INFO["breastmnist"].label == {"0": "malignant", "1": "normal, benign"}
    assert (DATASETS["breastmnist"].channels, DATASETS["retinamnist"].channels) == (1, 3)


@needs_medmnist
@pytest.mark.parametrize("name", ["breastmnist", "retinamnist"])
def test_real_files_have_the_official_md5(name):
    assert file_digest(REAL_DATA / "medmnist" / f"{name}.npz", "md5") == SOURCE_MD5[name]


@needs_medmnist
@pytest.mark.parametrize("name, channels, classes", [
    ("breastmnist", 1, ["malignant", "normal, benign"]),
    ("retinamnist", 3, ["0", "1", "2", "3", "4"])])
def test_real_splits(name, channels, classes):
    for split, size in SIZES[name].items():
        data = load_medmnist(name, REAL_DATA, split)
        assert isinstance(data, LabelledSplit) and data.split == split
        assert data.items.shape == (size, channels, 28, 28)
        assert data.items.dtype == torch.float32
        assert 0.0 <= float(data.items.min()) and float(data.items.max()) <= 1.0
        assert data.labels.dtype == torch.int64 and data.labels.shape == (size,)
        assert set(data.labels.tolist()) == set(range(len(classes)))  # every class in each
        assert data.class_names == classes
    train = load_medmnist(name, REAL_DATA / "medmnist", "train")  # the folder itself works
    assert torch.bincount(train.labels).tolist() == TRAIN_CLASS_COUNTS[name]
    # the pixels are the file's, scaled
    with np.load(REAL_DATA / "medmnist" / f"{name}.npz") as raw:
        first = torch.from_numpy(raw["test_images"][0]).float() / 255
    test = load_medmnist(name, REAL_DATA, "test")
    assert torch.equal(test.items[0], first[None] if channels == 1 else first.permute(2, 0, 1))


@needs_medmnist
def test_channels_and_size():
    grey = load_medmnist("retinamnist", REAL_DATA, "val", channels=1)
    colour = load_medmnist("retinamnist", REAL_DATA, "val")
    assert grey.items.shape == (120, 1, 28, 28)
    luma = (colour.items * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, True)
    assert torch.allclose(grey.items, luma)
    rgb = load_medmnist("breastmnist", REAL_DATA, "val", channels=3)
    assert rgb.items.shape == (78, 3, 28, 28) and torch.equal(rgb.items[:, 0], rgb.items[:, 2])
    big = load_medmnist("breastmnist", REAL_DATA, "val", image_size=32)
    assert big.items.shape == (78, 1, 32, 32)


@needs_medmnist
def test_registered_in_build():
    config = config_from_dict({"data": {"dataset": "retinamnist", "root": str(REAL_DATA),
                                        "channels": 3}})
    test = load_split(config, "test")
    assert test.items.shape == (400, 3, 28, 28) and test.split == "test"
    config = config_from_dict({"data": {"dataset": "breastmnist", "root": str(REAL_DATA)}})
    assert load_split(config, "test").items.shape == (156, 1, 28, 28)


@needs_medmnist
def test_local_copy_is_accepted_without_fetching(tmp_path, monkeypatch):
    # an unreachable URL: any attempt to download would fail the test
    monkeypatch.setitem(medmnist.MEDMNIST_URLS, "breastmnist", "http://127.0.0.1:9/none.npz")
    (tmp_path / "medmnist").mkdir()
    (tmp_path / "medmnist" / "breastmnist.npz").symlink_to(
        REAL_DATA / "medmnist" / "breastmnist.npz")
    assert download_dataset("breastmnist", str(tmp_path)) == tmp_path / "medmnist"
    from click.testing import CliRunner

    from attnmeta.cli import main

    outcome = CliRunner().invoke(main, ["download", "breastmnist", "--data-root", str(tmp_path)])
    assert outcome.exit_code == 0 and f"{tmp_path / 'medmnist'}" in outcome.output


def test_wrong_md5_is_refused(tmp_path, monkeypatch):
    monkeypatch.setitem(medmnist.MEDMNIST_URLS, "breastmnist", "http://127.0.0.1:9/none.npz")
    fake = tmp_path / "medmnist" / "breastmnist.npz"
    fake.parent.mkdir()
    np.savez(fake, train_images=np.zeros((546, 28, 28), np.uint8))
    actual = hashlib.md5(fake.read_bytes()).hexdigest()
    with pytest.raises(ValueError) as excinfo:
        download_dataset("breastmnist", str(tmp_path))
    assert f"has md5 {actual}, expected {SOURCE_MD5['breastmnist']}" in one_line(excinfo)
    with pytest.raises(ValueError) as excinfo:
        load_medmnist("breastmnist", tmp_path, "train")
    assert str(fake) in one_line(excinfo) and "not the official breastmnist.npz" in str(
        excinfo.value)
    one_line_error(["download", "breastmnist", "--data-root", tmp_path], "md5", actual)
    assert hashlib.md5(fake.read_bytes()).hexdigest() == actual  # never overwritten


def test_download_checks_the_md5(local_server, tmp_path, monkeypatch):
    payload = b"not really an npz\n" * 100
    (local_server.folder / "retinamnist.npz").write_bytes(payload)
    monkeypatch.setitem(medmnist.MEDMNIST_URLS, "retinamnist",
                        local_server.url_of("retinamnist.npz") + "?download=1")  # as Zenodo's
    # the official MD5: the fake bytes are refused and nothing is written
    with pytest.raises(ValueError) as excinfo:
        download_medmnist(tmp_path / "root", ("retinamnist",))
    assert f"expected {SOURCE_MD5['retinamnist']}" in one_line(excinfo)
    assert not (tmp_path / "root" / "medmnist" / "retinamnist.npz").exists()
    # with the fake bytes' MD5 pinned the same path fetches them, from the pinned URL only
    monkeypatch.setitem(medmnist.MEDMNIST_MD5, "retinamnist", hashlib.md5(payload).hexdigest())
    folder = download_dataset("retinamnist", str(tmp_path / "root"))
    assert (folder / "retinamnist.npz").read_bytes() == payload
    assert not (folder / "breastmnist.npz").exists()  # one set at a time
    assert local_server.requests == ["/retinamnist.npz?download=1"] * 2


def test_missing_file_and_bad_arguments(tmp_path):
    with pytest.raises(FileNotFoundError) as excinfo:
        load_medmnist("breastmnist", tmp_path, "test")
    assert "attnmeta download breastmnist" in one_line(excinfo)
    with pytest.raises(ValueError, match="name='pathmnist': expected one of"):
        load_medmnist("pathmnist", tmp_path, "test")
    with pytest.raises(ValueError, match="split='dev'"):
        load_medmnist("breastmnist", tmp_path, "dev")


def test_download_medmnist_names_both_sets(tmp_path, monkeypatch):
    """``attnmeta download medmnist`` fetches BreastMNIST and RetinaMNIST (the group name)."""
    from attnmeta.runs import build

    fetched = []
    monkeypatch.setitem(build.DOWNLOAD_GROUPS, "medmnist",
                        lambda root: fetched.append(root) or tmp_path)
    assert build.download_dataset("medmnist", str(tmp_path)) == tmp_path and fetched
    with pytest.raises(ValueError, match="'medmnist'"):
        build.download_dataset("medmnistt", str(tmp_path))
