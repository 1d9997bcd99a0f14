"""attnmeta.models.tokens: padded token batches trimmed, masked and pooled."""

from __future__ import annotations

import torch

from attnmeta import kernels
from attnmeta.models.tokens import masked_mean, token_mask, trim_padding

PAD = 0
IDS = torch.tensor([[5, 6, 7, 0, 0, 0], [8, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0]])


def test_trim_padding_cuts_to_the_longest_sentence():
    assert trim_padding(IDS, PAD).tolist() == [[5, 6, 7], [8, 0, 0], [0, 0, 0]]
    assert trim_padding(torch.zeros(2, 4, dtype=torch.long), PAD).shape == (2, 1)
    assert trim_padding(IDS, pad_id=9).shape == IDS.shape  # no padding of that id


def test_trim_padding_keeps_the_whole_length_under_vmap_and_export():
    with kernels.differentiable(export=True):
        assert torch.equal(trim_padding(IDS, PAD), IDS)
    lengths = torch.vmap(lambda row: torch.tensor(trim_padding(row[None], PAD).shape[-1]))(IDS)
    assert lengths.tolist() == [6, 6, 6]


def test_token_mask_marks_real_tokens_and_keeps_position_0_of_an_empty_sentence():
    assert token_mask(IDS, PAD).int().tolist() == [[1, 1, 1, 0, 0, 0], [1, 0, 0, 0, 0, 0],
                                                   [1, 0, 0, 0, 0, 0]]


def test_masked_mean_averages_only_the_masked_positions():
    states = torch.arange(24.0).reshape(2, 3, 4)
    mask = torch.tensor([[True, False, True], [False, False, False]])
    pooled = masked_mean(states, mask)
    torch.testing.assert_close(pooled[0], (states[0, 0] + states[0, 2]) / 2)
    torch.testing.assert_close(pooled[1], torch.zeros(4))  # nothing masked: zero, not NaN
