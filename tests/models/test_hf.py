"""attnmeta.models.hf: a Hugging Face encoder as a sentence encoder, offline (a tiny BERT
built from a config, or one saved to a local folder)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from attnmeta.errors import MissingDependencyError
from attnmeta.learners import ProtoNet
from attnmeta.models.hf import HFTextEncoder, _transformers, hf_text_encoder
from attnmeta.models.tokens import masked_mean
from test_text_encoder import VOCAB, sentences


def test_without_transformers_the_extra_is_named(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "transformers", None)  # import fails
    with pytest.raises(MissingDependencyError, match=r"pip install 'attnmeta\[hf\]'"):
        _transformers()


# --------------------------------------------------------------------------- Hugging Face

transformers = pytest.importorskip("transformers")


@pytest.fixture(autouse=False)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


def test_hf_tiny_bert_encodes_offline_with_gradients(offline):
    model = hf_text_encoder(VOCAB, max_length=12, out_dim=0, hidden=16, depth=1, heads=2)
    assert model.feature_dim == 16
    ids = sentences()
    out = model(ids)
    assert out.shape == (3, 16)
    loss = F.cross_entropy(ProtoNet(model).logits(ids[None], torch.tensor([[0, 1, 2]]),
                                                  ids[None])[0], torch.tensor([0, 1, 2]))
    loss.backward()
    assert model.model.embeddings.word_embeddings.weight.grad.abs().sum() > 0
    model.eval()
    padded = torch.cat([ids, torch.zeros(3, 2, dtype=torch.int64)], dim=1)
    assert torch.equal(model(ids), model(padded))
    _, weights = model(ids, need_weights=True)
    assert weights[0].shape == (3, 2, 7, 7)


def test_hf_local_pretrained_folder_loads_without_network(tmp_path, offline):
    from attnmeta.models.hf import tiny_bert
    from attnmeta.bpe import train_tokenizer

    tokenizer = train_tokenizer(["check my card balance", "book a table"] * 5, 300)
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tokenizer.tokenizer,
                                                pad_token="[PAD]")
    fast.save_pretrained(tmp_path)
    tiny_bert(tokenizer.vocab_size, 16, 1, 2, 12).save_pretrained(tmp_path)
    model = hf_text_encoder(4000, max_length=12, out_dim=4, hf_path=str(tmp_path))
    ids = tokenizer.encode_batch(["check my balance", "a table"], 12)
    assert model(ids).shape == (2, 4)
    with pytest.raises(ValueError, match=r"data.max_length=40 exceeds the 12 positions"):
        hf_text_encoder(4000, max_length=40, hf_path=str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"model.hf_path='/no/such/model' is not a "
                                                r"folder"):
        hf_text_encoder(4000, max_length=48, hf_path="/no/such/model")


def test_the_sentence_vector_is_the_masked_mean_of_the_last_states(offline):
    model = hf_text_encoder(VOCAB, max_length=12, out_dim=3, hidden=8, depth=1, heads=2).eval()
    assert isinstance(model, HFTextEncoder) and model.max_length == 12
    ids = sentences()
    states, keep, weights = model.token_states(ids)
    assert keep.sum(-1).tolist() == [7, 3, 5] and weights == [None]
    with torch.no_grad():
        torch.testing.assert_close(model(ids), model.head(masked_mean(states, keep)))
