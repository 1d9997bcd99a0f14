"""One interface for every labelled split, and the episode-shape check made before training."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from attnmeta.tasks import FewShotEpisodes, LabelledImages, LabelledSplit, check_episode_shape
from attnmeta.tasks.omniglot import OmniglotSplit
from attnmeta.tasks.text import LabelledTexts, LabelledTokens


def images_split(per_class: list[int], split: str = "test") -> LabelledImages:
    """``len(per_class)`` classes ``c00, c01, ...`` with that many ``[1, 4, 4]`` images each."""
    labels = torch.repeat_interleave(torch.arange(len(per_class)), torch.tensor(per_class))
    return LabelledImages(torch.rand(len(labels), 1, 4, 4), labels,
                          [f"c{i:02d}" for i in range(len(per_class))], split)


def message(excinfo: pytest.ExceptionInfo) -> str:
    assert "\n" not in str(excinfo.value)
    return str(excinfo.value)


def test_every_split_type_is_a_labelled_split_and_keeps_its_old_names():
    images, labels = torch.rand(4, 1, 3, 3), torch.tensor([0, 0, 1, 1])
    token_ids = torch.zeros(4, 5, dtype=torch.int64)
    splits = [LabelledImages(images, labels, ["a", "b"]),
              OmniglotSplit(images, labels, ["a", "b"], "vinyals", "train"),
              LabelledTokens(token_ids, labels, ["a", "b"], ["w", "x", "y", "z"])]
    for split in splits:
        assert isinstance(split, LabelledSplit)
        assert split.items is (split.token_ids if isinstance(split, LabelledTokens)
                               else split.images)
        assert split.labels is labels and split.class_names == ["a", "b"]
    # sentences are not yet examples a model reads: no items, so not a LabelledSplit
    assert not isinstance(LabelledTexts(["w"], torch.tensor([0]), ["a"]), LabelledSplit)


def test_too_many_ways_names_the_key_the_split_and_the_limit():
    split = images_split([20] * 20, "test")
    with pytest.raises(ValueError) as excinfo:
        check_episode_shape(split, 30, 1, 15, "data.test")
    assert message(excinfo) == ("data.test: n_way=30 but the test split has 20 classes: "
                                "expected n_way <= 20")


def test_too_many_examples_per_class_names_the_smallest_class():
    split = images_split([25, 25, 20, 25], "train")
    with pytest.raises(ValueError) as excinfo:
        check_episode_shape(split, 2, 5, 20, "data.train")
    assert message(excinfo) == ("data.train: k_shot + q_query = 25 but class 'c02' has 20 "
                                "examples: expected at most 20")
    check_episode_shape(split, 4, 5, 15, "data.train")  # 20 fits everywhere


def test_split_name_comes_from_the_argument_or_the_split():
    split = images_split([3, 3], "")
    with pytest.raises(ValueError, match=r"^x: n_way=3 but the split has 2 classes"):
        check_episode_shape(split, 3, 1, 1, "x")
    with pytest.raises(ValueError, match=r"^x: n_way=3 but the val split has 2 classes"):
        check_episode_shape(split, 3, 1, 1, "x", split_name="val")
    with pytest.raises(ValueError, match=r"^x: n_way=2 but the split has 1 class: "):
        check_episode_shape(images_split([3]), 2, 1, 1, "x", split_name="")


@pytest.mark.parametrize("shape, key", [((0, 1, 1), "n_way"), ((2, 0, 1), "k_shot"),
                                        ((2, 1, -1), "q_query"), ((2.5, 1, 1), "n_way"),
                                        ((True, 1, 1), "n_way")])
def test_bad_shape_values_name_their_key(shape, key):
    with pytest.raises(ValueError, match=rf"^data.test.{key}=.*: expected an integer >= "):
        check_episode_shape(images_split([5, 5]), *shape, "data.test")


def test_inconsistent_labels_are_refused():
    split = images_split([2, 2])
    split.labels = torch.tensor([0, 1, 2, 1])
    with pytest.raises(ValueError, match=r"labels span 0..2: expected 0..1"):
        check_episode_shape(split, 2, 1, 1, "data.test")
    split.labels = torch.tensor([0, 1])
    with pytest.raises(ValueError, match=r"labels of shape \(2,\) for 4 examples"):
        check_episode_shape(split, 2, 1, 1, "data.test")


def test_check_agrees_with_what_the_sampler_accepts():
    """Refused exactly when FewShotEpisodes would refuse, so a run fails before step 1
    for the same shapes it would otherwise fail on later."""
    split = images_split([4, 6, 5, 7], "val")
    for n_way, k_shot, q_query in np.ndindex(6, 5, 5):
        if n_way < 1 or k_shot < 1:
            continue
        try:
            FewShotEpisodes(split.items, split.labels.tolist(), n_way, k_shot, q_query, 1)
            sampler_ok = True
        except ValueError:
            sampler_ok = False
        try:
            check_episode_shape(split, n_way, k_shot, q_query, "data.val")
            check_ok = True
        except ValueError:
            check_ok = False
        assert check_ok == sampler_ok, (n_way, k_shot, q_query)


def test_within_alphabet_needs_alphabets_and_one_large_enough():
    labels = torch.arange(5).repeat_interleave(2)
    split = OmniglotSplit(torch.rand(10, 1, 3, 3), labels,
                          ["A/c1", "A/c2", "A/c3", "B/c1", "B/c2"], "lake", "test")
    check_episode_shape(split, 3, 1, 1, "data.test", within="alphabet")
    check_episode_shape(split, 5, 1, 1, "data.test")  # across alphabets: all 5 classes
    with pytest.raises(ValueError) as excinfo:
        check_episode_shape(split, 4, 1, 1, "data.test", within="alphabet")
    assert message(excinfo) == ("data.test: n_way=4 with within='alphabet' but the largest "
                                "alphabet of the test split has 3 classes: expected n_way <= 3")
    # a split without alphabets never gets here from a config (its data set's entry declares
    # none, and the run layer refuses the key: tests/tasks/test_new_dataset.py); from code it
    # is a bug, and surfaces as one rather than as a user's error
    with pytest.raises(AttributeError, match="class_alphabets"):
        check_episode_shape(images_split([2, 2, 2]), 2, 1, 1, "data.test", within="alphabet")
