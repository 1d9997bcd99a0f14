"""The transformer text encoder (padding, attention weights, MAML); the HF backbone is in
test_hf.py."""

from __future__ import annotations

import pytest
import torch

from attnmeta.learners import MAML, ProtoNet
from attnmeta.models.text import TextTransformer, trim_padding
from attnmeta.tasks.episode import Episode

VOCAB = 50


def sentences() -> torch.Tensor:
    """Three sentences of 7, 3 and 5 tokens, padded with 0 to 9 columns."""
    ids = torch.zeros(3, 9, dtype=torch.int64)
    for row, length in enumerate((7, 3, 5)):
        ids[row, :length] = torch.randint(1, VOCAB, (length,), generator=torch.Generator()
                                          .manual_seed(row))
    return ids


def encoder(out_dim: int = 0, **kwargs) -> TextTransformer:
    torch.manual_seed(0)
    return TextTransformer(VOCAB, out_dim, d_model=16, depth=2, n_heads=4, max_length=12,
                           **kwargs).eval()


def test_extra_padding_changes_no_output_at_all():
    model, ids = encoder(), sentences()
    padded = torch.cat([ids, torch.zeros(3, 3, dtype=torch.int64)], dim=1)
    assert torch.equal(model(ids), model(padded))
    assert model(ids).shape == (3, 16)


def test_key_padding_mask_makes_a_sentence_independent_of_its_batch():
    model, ids = encoder(), sentences()
    together = model(ids)
    for row, length in enumerate((7, 3, 5)):
        alone = model(ids[row:row + 1, :length])
        torch.testing.assert_close(together[row], alone[0], rtol=0, atol=1e-6)
    # the padding is what is ignored: the same positions filled with real tokens do matter
    filled = ids.clone()
    filled[1, 3:] = 7
    assert not torch.allclose(model(filled)[1], together[1], atol=1e-3)


def test_attention_weights_skip_padding():
    model, ids = encoder(), sentences()
    _, weights = model(ids, need_weights=True)
    assert len(weights) == 2 and weights[-1].shape == (3, 4, 7, 7)  # trimmed to 7 tokens
    short = weights[-1][1]                                              # 3 real tokens
    assert torch.all(short[:, :, 3:] == 0) and torch.all(short[:, 3:, :] == 0)
    torch.testing.assert_close(short[:, :3].sum(-1), torch.ones(4, 3))


def test_trim_padding_and_length_limit():
    ids = sentences()
    assert trim_padding(ids, 0).shape == (3, 7)
    with pytest.raises(ValueError, match=r"sentences of 13 tokens: expected at most "
                                         r"max_length=12"):
        encoder()(torch.ones(2, 13, dtype=torch.int64))


@pytest.mark.parametrize("strategy", ["loop", "vmap"])
def test_second_order_maml_adapts_the_text_encoder(strategy):
    model = encoder(out_dim=3)
    learner = MAML(model.train(), inner_lr=0.1, inner_steps=1, strategy=strategy)
    support = torch.randint(1, VOCAB, (2, 3, 6))
    support[..., 4:] = 0
    batch = Episode(support, torch.arange(3).repeat(2, 1), support.clone(),
                    torch.arange(3).repeat(2, 1))
    output = learner.training_step(batch)
    output.loss.backward()
    grad = model.token_embedding.weight.grad
    assert torch.isfinite(output.loss) and grad is not None and grad.abs().sum() > 0


def test_protonet_over_text_is_invariant_to_padding_width():
    learner = ProtoNet(encoder()).eval()
    ids = sentences()
    wide = torch.cat([ids, torch.zeros(3, 2, dtype=torch.int64)], dim=1)
    labels = torch.tensor([0, 1, 2])
    torch.testing.assert_close(learner.predict(ids, labels, ids),
                               learner.predict(wide, labels, wide), rtol=0, atol=0)
