"""A data set that exists nowhere else, registered with one line, trained and evaluated
through the command line; what it offers is read from its entry's declarations."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from click.testing import CliRunner
from torch import Tensor

from attnmeta.cli import main
from attnmeta.errors import ConfigError
from attnmeta.runs.config import config_from_dict
from attnmeta.tasks.registry import DATASETS, DatasetEntry, register_dataset
from attnmeta.tasks.splits import ImageSplit


@dataclass
class Stripes(ImageSplit):
    """Tiny synthetic images: class ``c`` is a bright row ``c`` plus noise; each class
    belongs to alphabet ``c % 2``."""

    images: Tensor
    labels: Tensor
    class_names: list[str]
    split: str = ""

    @property
    def class_alphabets(self) -> list[str]:
        return [f"group{c % 2}" for c in range(len(self.class_names))]


def stripes(config: Any, split: str, tokenizer: object) -> Stripes:
    first = {"train": 0, "val": 8, "test": 12}[split]
    generator = torch.Generator().manual_seed(first)
    images, labels = [], []
    for label, row in enumerate(range(first, first + (8 if split == "train" else 4))):
        for _ in range(6):
            image = 0.1 * torch.rand(1, 16, 16, generator=generator)
            image[0, row] += 1.0
            images.append(image)
            labels.append(label)
    names = [f"row{row}" for row in range(first, first + len(set(labels)))]
    return Stripes(torch.stack(images), torch.tensor(labels), names, split=split)


def config_values(dataset: str, within: str = "none") -> dict:
    shape = {"n_way": 2, "k_shot": 1, "q_query": 2, "within": within}
    return {"name": "stripes", "seed": 1,
            "data": {"dataset": dataset, "image_size": 16, "train": shape, "test": shape},
            "model": {"hidden": 8, "norm": "running"}, "learner": {"name": "protonet"},
            "train": {"steps": 2, "meta_batch": 2, "log_every": 1, "checkpoint_every": 2},
            "eval": {"episodes": 4}}


@pytest.fixture
def registered():
    register_dataset("stripes", DatasetEntry(stripes, alphabets=lambda data: True))
    register_dataset("plain_stripes", DatasetEntry(stripes))
    yield
    DATASETS.pop("stripes")
    DATASETS.pop("plain_stripes")


def test_a_new_data_set_trains_and_evaluates_through_the_cli(tmp_path: Path, registered):
    path = tmp_path / "stripes.yaml"
    path.write_text(yaml.safe_dump(config_values("stripes", within="alphabet")))
    runner = CliRunner()
    outcome = runner.invoke(main, ["train", str(path), "--out", str(tmp_path / "run")])
    assert outcome.exit_code == 0, outcome.output
    outcome = runner.invoke(main, ["eval", str(tmp_path / "run")])
    assert outcome.exit_code == 0, outcome.output


def test_alphabets_are_read_from_the_entry_not_the_name(registered):
    assert config_from_dict(config_values("stripes", within="alphabet")).data.train.within \
        == "alphabet"
    with pytest.raises(ConfigError, match="within' is 'alphabet': expected 'none' unless "
                                          "data.dataset declares alphabets"):
        config_from_dict(config_values("plain_stripes", within="alphabet"))
