"""Image augmentation of meta-training episodes, in plain torch ops (no torchvision).

``affine``: each image is rotated, sheared, scaled and moved at random (:func:`random_affine`)
with the ranges of Koch, Zemel & Salakhutdinov's Siamese networks for Omniglot (ICML 2015
Deep Learning Workshop, section 4.1): rotation within ±10°, shear within ±0.3 per axis,
scale within [0.8, 1.2] per axis, translation within ±2 px at their 105 px (here a share
of the side: ±2/105), bilinear, the uncovered border zero (Omniglot's background).

``flip_crop``: each image is mirrored left-right with probability 1/2 and cut to a random
box of 80-100% of its area with aspect ratio in [3/4, 4/3] (:func:`random_boxes`), then
resized back to its size (bilinear): torchvision's ``RandomHorizontalFlip`` +
``RandomResizedCrop(scale=(0.8, 1.0))``, the augmentation of RFS (Tian et al., ECCV 2020)
with a milder scale. :class:`AugmentedEpisodes` draws episode ``i``'s from a generator of
``(seed, i)`` alone, as :class:`~attnmeta.tasks.FewShotEpisodes` draws its examples, so an
augmented episode is the same in any DataLoader worker and after a resume. Only training
episodes are augmented; evaluation reads the images as they are.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from attnmeta.tasks.episode import Episode

__all__ = ["AUGMENTATIONS", "affine_matrices", "random_affine", "horizontal_flip",
           "random_boxes", "resized_crop", "flip_crop",
           "augment_seed", "AugmentedEpisodes", "shift_images", "random_shifts"]

CROP_SCALE = (0.8, 1.0)          # the box's share of the image's area
CROP_RATIO = (3 / 4, 4 / 3)      # the box's width / height (torchvision's default)
_STREAM = 0xA06                  # keeps augmentation draws apart from the episode's picks
# Koch et al. 2015's ranges: degrees, shear, scale, translation as a share of the side
AFFINE_ROTATION, AFFINE_SHEAR, AFFINE_SCALE, AFFINE_SHIFT = 10.0, 0.3, (0.8, 1.2), 2 / 105


def affine_matrices(degrees: Tensor, shear: Tensor, scale: Tensor, shift: Tensor) -> Tensor:
    """``[B, 2, 3]`` maps from output to input coordinates in ``F.affine_grid``'s [-1, 1]
    frame, for per-image ``degrees [B]``, ``shear [B, 2]``, ``scale [B, 2]`` and ``shift
    [B, 2]`` (x, y; a share of the side): the image is scaled, sheared, rotated, then moved.
    All zeros and ones give the identity."""
    angle = torch.deg2rad(degrees)
    cos, sin = torch.cos(angle), torch.sin(angle)
    rotate = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)
    ones = torch.ones_like(shear[:, 0])
    sheared = torch.stack([torch.stack([ones, shear[:, 0]], -1),
                           torch.stack([shear[:, 1], ones], -1)], -2)
    forward = rotate @ sheared @ torch.diag_embed(scale)              # input -> output
    inverse = torch.linalg.inv(forward)                               # output -> input
    # a shift of s of the side is 2·s in the [-1, 1] frame
    offset = -(inverse @ (2 * shift)[..., None])
    return torch.cat([inverse, offset], dim=-1)


def random_affine(images: Tensor, generator: torch.Generator) -> Tensor:
    """``images [B, C, H, W]`` -> the same shape, each through its own random affine map
    (the module docstring's ranges); the draws come from ``generator`` only."""
    count = images.shape[0]
    draws = torch.rand(count, 7, generator=generator, dtype=torch.float64) * 2 - 1  # [-1, 1)
    low, high = AFFINE_SCALE
    matrices = affine_matrices(AFFINE_ROTATION * draws[:, 0], AFFINE_SHEAR * draws[:, 1:3],
                               (low + high) / 2 + (high - low) / 2 * draws[:, 3:5],
                               AFFINE_SHIFT * draws[:, 5:7])
    grid = F.affine_grid(matrices.to(images.dtype), list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros",
                         align_corners=False)


def horizontal_flip(images: Tensor, flip: Tensor) -> Tensor:
    """``images [B, C, H, W]`` with those where ``flip [B]`` (bool) is set mirrored
    left-right."""
    return torch.where(flip[:, None, None, None], images.flip(-1), images)


def random_boxes(count: int, height: int, width: int, generator: torch.Generator,
                 scale: tuple[float, float] = CROP_SCALE,
                 ratio: tuple[float, float] = CROP_RATIO) -> Tensor:
    """``[count, 4]`` int64 boxes ``(top, left, box_height, box_width)`` inside a
    ``height × width`` image, each of a uniform share of ``scale`` of its area and a
    log-uniform aspect ratio in ``ratio``; a box that would not fit keeps its area and
    spans the image's width (or height) instead (torchvision draws again)."""
    draws = torch.rand(count, 4, generator=generator, dtype=torch.float64)
    area = (scale[0] + (scale[1] - scale[0]) * draws[:, 0]) * height * width
    aspect = torch.exp(math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0]))
                       * draws[:, 1])
    box_h, box_w = torch.sqrt(area / aspect), torch.sqrt(area * aspect)
    # a box too wide (or too tall) for the image keeps its area at the image's full width
    box_h = torch.where(box_w > width, area / width, box_h)
    box_w = torch.where(box_h > height, area / height, box_w.clamp(max=width))
    box_h = box_h.round().clamp(1, height).long()
    box_w = box_w.round().clamp(1, width).long()
    top = (draws[:, 2] * (height - box_h + 1)).floor().long()
    left = (draws[:, 3] * (width - box_w + 1)).floor().long()
    return torch.stack([top, left, box_h, box_w], dim=1)


def resized_crop(images: Tensor, boxes: Tensor) -> Tensor:
    """``images [B, C, H, W]`` each cut to its box of ``boxes [B, 4]`` (see
    :func:`random_boxes`) and resized back to ``H × W`` (bilinear); a whole-image box
    returns the image unchanged."""
    height, width = images.shape[-2:]
    crops = [F.interpolate(image[None, :, top:top + box_h, left:left + box_w],
                           size=(height, width), mode="bilinear", align_corners=False)
             for image, (top, left, box_h, box_w) in zip(images, boxes.tolist())]
    return torch.cat(crops) if crops else images


def flip_crop(images: Tensor, generator: torch.Generator) -> Tensor:
    """``images [B, C, H, W]`` in [0, 1] -> the same shape, flipped and cropped at random
    (the module docstring); the draws come from ``generator`` only."""
    count, _, height, width = images.shape
    flip = torch.rand(count, generator=generator) < 0.5
    boxes = random_boxes(count, height, width, generator)
    return resized_crop(horizontal_flip(images, flip), boxes)


def shift_images(images: Tensor, offsets: Tensor) -> Tensor:
    """``images [B, C, H, W]`` moved by ``offsets [B, 2]`` (rows, columns) pixels each, the
    uncovered border filled with zeros (Omniglot's background)."""
    batch, _, height, width = images.shape
    pad = int(offsets.abs().max()) if offsets.numel() else 0
    if pad == 0:
        return images
    padded = F.pad(images, (pad, pad, pad, pad))
    rows = torch.arange(height)[None] + pad - offsets[:, :1]          # [B, H]
    cols = torch.arange(width)[None] + pad - offsets[:, 1:]           # [B, W]
    picked = padded[torch.arange(batch)[:, None, None], :, rows[:, :, None], cols[:, None, :]]
    return picked.permute(0, 3, 1, 2).contiguous()                    # [B, H, W, C] -> BCHW


def random_shifts(max_shift: int) -> Callable[[Tensor, torch.Generator], Tensor]:
    """``(images [B, C, H, W], generator) -> images`` each moved by up to ``max_shift``
    pixels in both directions (drawn from the generator)."""
    def shift(images: Tensor, generator: torch.Generator) -> Tensor:
        offsets = torch.randint(-max_shift, max_shift + 1, (images.shape[0], 2),
                                generator=generator)
        return shift_images(images, offsets)
    return shift


# data.augment -> the function; "none" is no wrapper at all
AUGMENTATIONS: dict[str, Callable[[Tensor, torch.Generator], Tensor]] = {
    "flip_crop": flip_crop, "affine": random_affine}


def augment_seed(seed: int, index: int) -> int:
    """The 63-bit seed of episode ``index``'s augmentation draws under base ``seed``."""
    sequence = np.random.SeedSequence(entropy=seed, spawn_key=(_STREAM, index))
    return int(sequence.generate_state(2, np.uint64)[0] >> np.uint64(1))


class AugmentedEpisodes(Dataset):
    """``episodes`` (a data set of :class:`Episode`) with every support and query image
    through ``augment(images [B, C, H, W], generator)``; episode ``i``'s generator is seeded
    by ``(seed, i)``. Labels and the episode's examples are unchanged."""

    def __init__(self, episodes: Dataset, seed: int,
                 augment: Callable[[Tensor, torch.Generator], Tensor] = flip_crop) -> None:
        self.episodes, self.seed, self.augment = episodes, seed, augment

    def __len__(self) -> int:
        return len(self.episodes)

    def __getitem__(self, index: int) -> Episode:
        episode = self.episodes[index]
        if episode.support_x.dim() != 4:
            raise ValueError(f"episode inputs of shape {list(episode.support_x.shape)}: "
                             "expected images [N, C, H, W] to augment")
        generator = torch.Generator().manual_seed(augment_seed(self.seed, index))
        images = self.augment(torch.cat([episode.support_x, episode.query_x]), generator)
        count = episode.support_x.shape[0]
        return Episode(images[:count], episode.support_y, images[count:], episode.query_y)
