"""Spatial tokens: each backbone's last map before pooling, row-major, and the wrapper that
flattens them into per-example features."""

from __future__ import annotations

import pytest
import torch

from attnmeta.models.capabilities import has_features, has_spatial_tokens
from attnmeta.models.conv4 import Conv4
from attnmeta.models.efficientnet_lite import EfficientNetLite
from attnmeta.models.resnet12 import ResNet12
from attnmeta.models.spatial import SpatialTokens, grid_positions, unflatten_tokens
from attnmeta.models.vit import VisionTransformer


def images(n: int, channels: int, side: int) -> torch.Tensor:
    return torch.randn(n, channels, side, side, generator=torch.Generator().manual_seed(0))


def test_conv4_tokens_are_the_last_map_before_its_pool():
    torch.manual_seed(0)
    model = Conv4(1, 0, hidden=8, image_size=28, norm="running").eval()
    x = images(2, 1, 28)
    tokens = model.token_map(x)
    assert has_spatial_tokens(model)
    assert model.token_grid(28) == (3, 3) and tokens.shape == (2, 9, 8)  # blocks 14, 7, 3, 1
    # the last pool (2×2, floored) of the 3×3 map keeps its top-left 2×2: the features
    grid = tokens.reshape(2, 3, 3, 8)
    torch.testing.assert_close(model(x), grid[:, :2, :2].amax(dim=(1, 2)))
    assert Conv4(1, 0, 8, 84).token_grid(84) == (10, 10)


def test_conv4_token_block_hands_over_an_earlier_map_before_its_pool():
    torch.manual_seed(0)
    model = Conv4(1, 0, hidden=8, image_size=28, norm="running", token_block=3).eval()
    last = Conv4(1, 0, hidden=8, image_size=28, norm="running").eval()
    last.load_state_dict(model.state_dict())  # same weights: the block is not a weight
    x = images(2, 1, 28)
    tokens = model.token_map(x)
    assert model.token_grid(28) == (7, 7) and tokens.shape == (2, 49, 8)
    # naive: blocks 1 and 2 whole, then block 3's conv, norm and ReLU, no pool
    conv, norm, _pool, _relu = model.features[2]
    expected = torch.relu(norm(conv(model.features[1](model.features[0](x)))))
    torch.testing.assert_close(tokens, expected.flatten(2).transpose(1, 2))
    # block 4 of that map is the default tokens; the pooled features do not change
    conv4, norm4, _, _ = model.features[3]
    pooled = model.features[2][2](expected)
    torch.testing.assert_close(last.token_map(x),
                               torch.relu(norm4(conv4(pooled))).flatten(2).transpose(1, 2))
    torch.testing.assert_close(model(x), last(x))
    assert repr(model) != repr(last)  # what the feature cache keys on besides the weights
    with pytest.raises(ValueError, match=r"^token_block=5: expected 1\.\.4"):
        Conv4(1, 0, 8, 28, token_block=5)


def test_resnet12_tokens_average_to_its_features():
    torch.manual_seed(0)
    model = ResNet12(3, 0, hidden=2, norm="running").eval()
    x = images(2, 3, 32)
    tokens = model.token_map(x)
    assert has_spatial_tokens(model)
    assert model.token_grid(32) == (2, 2) and tokens.shape == (2, 4, model.token_dim)
    torch.testing.assert_close(model(x), tokens.mean(1))


def test_vit_tokens_are_its_patches_without_the_class_token():
    torch.manual_seed(0)
    model = VisionTransformer(1, 0, d_model=8, image_size=16, patch_size=4, depth=1,
                              n_heads=2).eval()
    x = images(2, 1, 16)
    tokens = model.token_map(x)
    assert has_spatial_tokens(model)
    assert model.token_grid(16) == (4, 4) and tokens.shape == (2, 16, 8)
    from attnmeta.models.vit import patchify
    states, _ = model.encoder.states(patchify(x, 4))
    torch.testing.assert_close(model(x), model.encoder.norm(states[:, 0]))
    torch.testing.assert_close(tokens, model.encoder.norm(states[:, 1:]))


def test_efficientnet_lite_tokens_are_its_feature_map():
    torch.manual_seed(0)
    model = EfficientNetLite().eval()
    x = images(1, 3, 64).clamp(0, 1)
    tokens = model.token_map(x)
    assert has_spatial_tokens(model)
    assert model.token_grid(64) == (2, 2) and model.token_grid(224) == (7, 7)
    assert tokens.shape == (1, 4, 1280)
    torch.testing.assert_close(model(x), tokens.mean(1))


def test_spatial_tokens_flatten_the_token_map():
    torch.manual_seed(0)
    backbone = Conv4(1, 0, hidden=8, image_size=28, norm="running").eval()
    wrapper = SpatialTokens(backbone, 28)
    assert has_features(wrapper) and not has_spatial_tokens(wrapper)
    assert wrapper.grid == (3, 3) and wrapper.token_dim == 8 and wrapper.feature_dim == 72
    x = images(3, 1, 28)
    z = wrapper(x)
    assert z.shape == (3, 72)
    torch.testing.assert_close(unflatten_tokens(z, 9, 8), backbone.token_map(x))


def test_unflatten_tokens_checks_the_width():
    z = torch.arange(24.0).reshape(2, 12)
    assert unflatten_tokens(z, 4, 3)[1, 2].tolist() == [18.0, 19.0, 20.0]
    with pytest.raises(ValueError, match="expected 5 tokens"):
        unflatten_tokens(z, 5, 3)


def test_grid_positions_are_row_major_in_the_unit_square():
    positions = grid_positions(2, 3)
    assert positions.tolist() == [[0, 0], [0, 0.5], [0, 1], [1, 0], [1, 0.5], [1, 1]]
    assert grid_positions(1, 1).tolist() == [[0.0, 0.0]]
