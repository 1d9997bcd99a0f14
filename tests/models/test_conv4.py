"""attnmeta.models.conv4: the four-block convolutional backbone."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from attnmeta.models.conv4 import Conv4, conv_block


@pytest.mark.parametrize("image_size,side", [(28, 1), (84, 5), (16, 1), (32, 2)])
def test_feature_dim_follows_four_halvings_of_the_image(image_size, side):
    model = Conv4(in_channels=3, out_dim=0, hidden=4, image_size=image_size)
    assert model.feature_dim == 4 * side * side
    assert model(torch.randn(2, 3, image_size, image_size)).shape == (2, 4 * side * side)
    assert Conv4(3, 5, 4, image_size)(torch.randn(2, 3, image_size, image_size)).shape == (2, 5)


def test_a_running_block_is_conv_batch_norm_pool_relu_in_eval_mode():
    torch.manual_seed(0)
    block = conv_block(2, 3, norm="running").eval()
    with torch.no_grad():
        block[1].running_mean.uniform_(-1, 1)
        block[1].running_var.uniform_(0.5, 2)
    x = torch.randn(2, 2, 6, 6)
    conv, norm = block[0], block[1]
    expected = F.relu(F.max_pool2d(F.batch_norm(conv(x), norm.running_mean, norm.running_var,
                                                norm.weight, norm.bias, False, 0.0, norm.eps), 2))
    torch.testing.assert_close(block(x), expected)


def test_a_batch_block_normalises_with_the_batch_statistics_even_in_eval_mode():
    torch.manual_seed(0)
    block = conv_block(1, 2, norm="batch").eval()
    x = torch.randn(3, 1, 4, 4)
    y = block[0](x)
    normed = (y - y.mean((0, 2, 3), keepdim=True)) / torch.sqrt(
        y.var((0, 2, 3), unbiased=False, keepdim=True) + 1e-5)
    torch.testing.assert_close(block(x), F.relu(F.max_pool2d(normed, 2)), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match=r"norm='layer': expected 'batch'"):
        conv_block(1, 2, norm="layer")
    assert isinstance(Conv4(norm="running").features[0][1], nn.BatchNorm2d)
