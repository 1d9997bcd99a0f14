"""attnmeta.runs.schema: the rules between keys (``cross_problems``, ``selection_rule``), a
run's plain name, and which data sections have alphabets."""

from __future__ import annotations

from pathlib import Path

import pytest

from attnmeta.errors import ConfigError
from attnmeta.runs.config import config_from_dict, load_config
from attnmeta.runs.schema import (PLAIN_NAME, DataConfig, TrainConfig, has_alphabets,
                                  selection_rule)


@pytest.mark.parametrize("values, message", [
    ({"model": {"backbone": "vit", "hidden": 10, "heads": 4}},
     "config key 'model.heads' is 4: expected a divisor of model.hidden (10)"),
    ({"model": {"backbone": "vit", "patch_size": 5}},
     "config key 'model.patch_size' is 5: expected a divisor of data.image_size (28) for the "
     "vit backbone"),
    ({"model": {"freeze": True}},
     "config key 'model.freeze' is True: expected false without model.init"),
    ({"model": {"init": "runs/p", "pretrained_path": "w.pth"}},
     "config key 'model.pretrained_path' is 'w.pth': expected null with model.init"),
    ({"data": {"background": "small1"}},
     "config key 'data.background' is 'small1': expected 'full' unless data.protocol='lake'"),
    ({"model": {"token_block": 5}},
     "config key 'model.token_block' is 5: expected 0 (its last map) or 1..4 for "
     "model.backbone='conv4'"),
    ({"model": {"backbone": "resnet12", "token_block": 2}},
     "config key 'model.token_block' is 2: expected 0 for model.backbone='resnet12' (it hands "
     "over its last map only; a block is chosen with model.backbone='conv4')"),
])
def test_a_broken_rule_between_keys_names_the_key_and_what_it_expects(values, message):
    with pytest.raises(ConfigError) as error:
        config_from_dict(values)
    assert str(error.value).startswith(message), str(error.value)


def test_select_best_needs_an_in_training_evaluation():
    assert selection_rule(TrainConfig(select="best", eval_every=5))[0]
    assert selection_rule(TrainConfig())[0]  # last
    ok, key, value, expected = selection_rule(TrainConfig(select="best"))
    assert (ok, key, value) == (False, "train.select", "best")
    assert expected.startswith("'last' unless train.eval_every > 0")


def test_a_plain_name_is_one_path_component_and_alphabets_are_omniglots_lake_split():
    assert all(PLAIN_NAME.fullmatch(name) for name in ("run", "tiny-feat_5w1s.v2", "A" * 128))
    assert not any(PLAIN_NAME.fullmatch(name) for name in ("", ".hidden", "a/b", "../x",
                                                          "A" * 129, "-x"))
    assert has_alphabets(DataConfig(dataset="omniglot", protocol="lake"))
    assert not has_alphabets(DataConfig(dataset="omniglot"))  # vinyals: rotated classes
    assert not has_alphabets(DataConfig(dataset="image_folder", protocol="lake"))
    assert not has_alphabets(DataConfig(dataset="nonesuch"))


def test_omniglot_background_is_a_lake_key_with_three_choices():
    for background in ("small1", "small2"):
        config = config_from_dict({"data": {"dataset": "omniglot", "protocol": "lake",
                                            "background": background}})
        assert config.data.background == background
    assert DataConfig().background == "full"
    with pytest.raises(ConfigError) as error:
        config_from_dict({"data": {"protocol": "lake", "background": "small3"}})
    assert str(error.value).startswith(
        "config key 'data.background' is 'small3': expected one of 'full', 'small1', 'small2'")
    shipped = Path(__file__).parents[2] / "configs" / "omniglot" / "pretrain_conv4_lake_small1.yaml"
    config = load_config(shipped)
    assert (config.kind, config.name) == ("pretrain", shipped.stem)
    assert (config.data.protocol, config.data.background) == ("lake", "small1")
