"""Flip-and-crop augmentation of training episodes: exact flips, boxes of the stated size,
and the same augmented episode for the same (seed, episode index) wherever it is built."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader

from attnmeta.tasks import FewShotEpisodes, collate_episodes
from attnmeta.tasks.augment import (AugmentedEpisodes, augment_seed, flip_crop, horizontal_flip,
                                    random_boxes, resized_crop)


def images(count: int = 6, channels: int = 3, side: int = 20) -> torch.Tensor:
    return torch.rand(count, channels, side, side, generator=torch.Generator().manual_seed(1))


def episodes(seed: int = 7) -> FewShotEpisodes:
    x = images(40, 3, 16)
    return FewShotEpisodes(x, (torch.arange(40) % 4).tolist(), n_way=3, k_shot=2, q_query=3,
                           num_episodes=10, seed=seed)


def test_flip_is_torch_flip_where_asked_and_the_image_elsewhere():
    x = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).reshape(2, 3, 4, 5)
    flipped = horizontal_flip(x, torch.tensor([True, False]))
    assert torch.equal(flipped[0], torch.flip(x[0], dims=[-1]))
    assert torch.equal(flipped[1], x[1])
    assert flipped[0, 0, 0].tolist() == [4.0, 3.0, 2.0, 1.0, 0.0]


def test_a_whole_image_box_is_the_image_and_a_half_box_is_upsampled():
    x = images(2, 3, 8)
    assert torch.equal(resized_crop(x, torch.tensor([[0, 0, 8, 8], [0, 0, 8, 8]])), x)
    # the left half, stretched to the full width: each column read twice
    halves = resized_crop(x, torch.tensor([[0, 0, 8, 4], [0, 4, 8, 4]]))
    assert halves.shape == x.shape
    assert torch.allclose(halves[0, :, :, 0], x[0, :, :, 0])
    assert torch.allclose(halves[1, :, :, -1], x[1, :, :, -1])


def test_boxes_cover_80_to_100_percent_within_the_image():
    boxes = random_boxes(2000, 84, 60, torch.Generator().manual_seed(0))
    top, left, height, width = boxes.T
    assert (top >= 0).all() and (left >= 0).all()
    assert (top + height <= 84).all() and (left + width <= 60).all()
    area = (height * width).double() / (84 * 60)
    assert area.max() <= 1.0 and area.min() >= 0.79  # 0.8, but for rounding to pixels
    assert area.mean() > 0.85 and (height < 84).float().mean() > 0.5  # not all whole images


def test_same_generator_same_augmentation_and_values_stay_in_range():
    x = images()
    first = flip_crop(x, torch.Generator().manual_seed(3))
    again = flip_crop(x, torch.Generator().manual_seed(3))
    other = flip_crop(x, torch.Generator().manual_seed(4))
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert first.shape == x.shape and first.min() >= 0 and first.max() <= 1


def test_episode_i_is_augmented_by_seed_and_i_alone_in_any_order_and_worker():
    plain = episodes()
    augmented = AugmentedEpisodes(plain, seed=5)
    episode = augmented[3]
    assert torch.equal(episode.support_y, plain[3].support_y)
    assert torch.equal(episode.query_y, plain[3].query_y)
    assert episode.support_x.shape == plain[3].support_x.shape
    assert not torch.equal(episode.support_x, plain[3].support_x)
    # the same tensors again, after other episodes, from a fresh wrapper, through workers
    augmented[0], augmented[9]
    assert torch.equal(AugmentedEpisodes(episodes(), seed=5)[3].query_x, episode.query_x)
    loader = DataLoader(augmented, batch_size=2, collate_fn=collate_episodes, num_workers=2)
    batches = list(loader)
    assert torch.equal(batches[1].support_x[1], episode.support_x)
    # another base seed or index: other draws
    assert not torch.equal(AugmentedEpisodes(plain, seed=6)[3].support_x, episode.support_x)
    assert augment_seed(5, 3) != augment_seed(5, 4) != augment_seed(6, 3)
