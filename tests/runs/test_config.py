"""attnmeta.runs.config: reading a YAML config, key=value overrides and checking every key."""

from __future__ import annotations

import pytest

from attnmeta.errors import ConfigError
from attnmeta.runs.config import apply_overrides, config_from_dict, flatten, read_yaml


def test_a_key_twice_an_empty_file_or_a_list_is_a_config_error(tmp_path):
    twice = tmp_path / "twice.yaml"
    twice.write_text("name: a\nname: b\n")
    with pytest.raises(ConfigError, match=r"key 'name' appears twice \(line 2\)"):
        read_yaml(twice)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(ConfigError, match="is empty"):
        read_yaml(empty)
    listed = tmp_path / "list.yaml"
    listed.write_text("- a\n")
    with pytest.raises(ConfigError, match="holds a list"):
        read_yaml(listed)


def test_overrides_set_nested_keys_parsed_as_yaml():
    values = apply_overrides({"train": {"steps": 5}}, ["train.steps=100", "data.root=/x"])
    assert flatten(values) == {"train.steps": 100, "data.root": "/x"}
    with pytest.raises(ConfigError, match="expected key=value"):
        apply_overrides({}, ["train.steps"])
    with pytest.raises(ConfigError, match="'train' is not a section"):
        apply_overrides({"train": 3}, ["train.steps=1"])


def test_an_unknown_key_is_named_with_its_section():
    with pytest.raises(ConfigError, match=r"unknown config key 'train.stepz'"):
        config_from_dict({"name": "a", "train": {"stepz": 1}})
