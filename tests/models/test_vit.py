"""The vision / sequence transformer backbones: patches, shapes, attention, padding."""

from __future__ import annotations

import pytest
import torch

from attnmeta.models import SequenceTransformer, VisionTransformer
from attnmeta.models.vit import patchify


def test_patchify_matches_a_naive_crop_loop():
    images = torch.randn(2, 3, 8, 12)
    patches = patchify(images, 4)
    assert patches.shape == (2, 6, 3 * 16)
    expected = torch.stack([
        torch.stack([images[n, :, 4 * r:4 * r + 4, 4 * c:4 * c + 4].reshape(-1)
                     for r in range(2) for c in range(3)])
        for n in range(2)])
    torch.testing.assert_close(patches, expected, rtol=0, atol=0)
    with pytest.raises(ValueError, match="not divisible by patch_size=5"):
        patchify(images, 5)


def test_vit_shapes_and_attention_weights_are_distributions():
    torch.manual_seed(0)
    model = VisionTransformer(in_channels=1, out_dim=5, d_model=16, image_size=28,
                              patch_size=7, depth=2, n_heads=4)
    x = torch.randn(3, 1, 28, 28)
    logits, weights = model(x, need_weights=True)
    assert logits.shape == (3, 5) and len(weights) == 2
    assert weights[-1].shape == (3, 4, 17, 17)  # [CLS] + 16 patches
    torch.testing.assert_close(weights[-1].sum(-1), torch.ones(3, 4, 17))
    torch.testing.assert_close(logits, model(x))  # the weights path computes the same output
    features = VisionTransformer(out_dim=0, d_model=16, depth=1)(x)
    assert features.shape == (3, 16)


def test_vit_prediction_depends_on_patch_positions():
    """Position embeddings: swapping two patches changes the output (a bag of patches
    would not notice)."""
    torch.manual_seed(0)
    model = SequenceTransformer(in_dim=4, out_dim=2, d_model=8, depth=1, n_heads=2,
                                max_length=3).double()
    x = torch.randn(1, 3, 4, dtype=torch.float64)
    swapped = x[:, [1, 0, 2]]
    assert not torch.allclose(model(x), model(swapped))
    with pytest.raises(ValueError, match="sequence length 4 exceeds max_length=3"):
        model(torch.randn(1, 4, 4, dtype=torch.float64))
