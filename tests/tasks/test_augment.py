"""Flip-and-crop augmentation of training episodes: exact flips, boxes of the stated size,
and the same augmented episode for the same (seed, episode index) wherever it is built;
the affine distortions against exact pixel moves and quarter turns."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader

from attnmeta.tasks import FewShotEpisodes, collate_episodes
from attnmeta.tasks.augment import (AugmentedEpisodes, affine_matrices,
                                    augment_seed, flip_crop, horizontal_flip, random_affine,
                                    random_boxes, resized_crop, shift_images)


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


def warp(x: torch.Tensor, degrees: float = 0.0, shear=(0.0, 0.0), scale=(1.0, 1.0),
         shift=(0.0, 0.0)) -> torch.Tensor:
    """``x`` through one affine map of :func:`affine_matrices`, as random_affine samples."""
    double = torch.float64
    theta = affine_matrices(torch.tensor([degrees], dtype=double),
                            torch.tensor([shear], dtype=double),
                            torch.tensor([scale], dtype=double),
                            torch.tensor([shift], dtype=double))
    grid = torch.nn.functional.affine_grid(theta, list(x.shape), align_corners=False)
    return torch.nn.functional.grid_sample(x, grid, mode="bilinear", padding_mode="zeros",
                                           align_corners=False)


def test_affine_identity_pixel_shifts_and_quarter_turns_are_exact():
    x = images(1, 1, 12).double()
    assert torch.allclose(warp(x), x, atol=1e-12)
    # a shift of one twelfth of the side is one pixel: shift_images' move, zeros coming in
    moved = warp(x, shift=(1 / 12, 2 / 12))
    assert torch.allclose(moved, shift_images(x, torch.tensor([[2, 1]])), atol=1e-12)
    # pixel centres land on pixel centres under a quarter turn of a square image
    turned = warp(x, degrees=90.0)
    assert torch.allclose(turned, torch.rot90(x, k=-1, dims=(2, 3)), atol=1e-9)


def test_affine_scale_grows_the_stroke_by_its_factor():
    x = torch.zeros(1, 1, 40, 40, dtype=torch.float64)
    x[..., 16:24, 16:24] = 1.0                     # an 8x8 square in the middle
    grown = warp(x, scale=(1.25, 1.25))
    assert abs(float(grown.sum()) - 64 * 1.25 ** 2) < 1.0   # area x 1.5625, bilinear edges
    wide = warp(x, scale=(1.25, 1.0))
    assert float(wide.sum(dim=2).amax()) == 8.0    # the columns keep their height
    assert abs(float(wide.sum()) - 64 * 1.25) < 1.0


def test_random_affine_is_drawn_from_the_generator_alone_and_keeps_the_range():
    x = images(5, 1, 28)
    first = random_affine(x, torch.Generator().manual_seed(3))
    again = random_affine(x, torch.Generator().manual_seed(3))
    other = random_affine(x, torch.Generator().manual_seed(4))
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert first.shape == x.shape and float(first.min()) >= 0.0 and float(first.max()) <= 1.0
