"""Token-level attention pictures of text episodes (attnmeta.viz.text)."""

from __future__ import annotations

import pytest
import torch

from attnmeta.learners import MatchingNet, ProtoNet
from attnmeta.models.text import TextTransformer
from attnmeta.tasks.text import LabelledTexts, tokenize_split
from attnmeta.bpe import train_tokenizer
from attnmeta.viz.text import learner_encoder, text_attention, write_text_attention_maps

INTENTS = {
    "balance": ["what is my balance", "how much money do i have", "show my account balance",
                "balance please"],
    "freeze": ["freeze my card", "block my card now", "i lost my card, freeze it",
               "stop my card"],
    "weather": ["will it rain today", "what is the weather", "is it sunny outside",
                "weather forecast please"],
}


@pytest.fixture(scope="module")
def episode_data():
    texts = [t for examples in INTENTS.values() for t in examples]
    labels = torch.tensor([c for c, examples in enumerate(INTENTS.values()) for _ in examples])
    tokenizer = train_tokenizer(texts * 3, 320)
    split = tokenize_split(LabelledTexts(texts, labels, list(INTENTS)), tokenizer, 12)
    torch.manual_seed(0)
    encoder = TextTransformer(tokenizer.vocab_size, 0, d_model=16, depth=2, n_heads=2,
                              max_length=12)
    return split, tokenizer, encoder


def test_matching_attention_is_the_learners_own_and_token_maps_fit_the_sentences(episode_data):
    split, tokenizer, encoder = episode_data
    learner = MatchingNet(encoder).eval()
    support, query = split.token_ids[[0, 4, 8]], split.token_ids[[1, 5]]
    attention = text_attention(learner, support, torch.tensor([0, 1, 2]), query, 1)
    expected = learner.attention(support[None], query[None])[0][1]
    torch.testing.assert_close(attention.sentence_weights, expected)
    assert attention.learner_attention and attention.best_support == int(expected.argmax())
    query_length = len(tokenizer.token_strings(query[1].tolist()))
    best_length = len(tokenizer.token_strings(support[attention.best_support].tolist()))
    assert attention.query_attention.shape == (query_length, query_length)
    torch.testing.assert_close(attention.query_attention.sum(-1), torch.ones(query_length))
    assert attention.token_similarity.shape == (query_length, best_length)
    assert attention.support_attention.shape == (best_length, best_length)


def test_protonet_has_no_sentence_attention_so_similarity_is_shown(episode_data):
    split, _, encoder = episode_data
    attention = text_attention(ProtoNet(encoder), split.token_ids[[0, 4, 8]],
                               torch.tensor([0, 1, 2]), split.token_ids[[2]], 0)
    assert not attention.learner_attention
    assert attention.sentence_weights.shape == (3,)
    assert torch.all(attention.sentence_weights.abs() <= 1 + 1e-6)  # cosine similarities


def test_write_text_attention_maps_draws_one_png_per_query(tmp_path, episode_data):
    split, tokenizer, encoder = episode_data
    paths = write_text_attention_maps(MatchingNet(encoder), split, 3, 1, 2, 0, tmp_path,
                                      tokenizer, queries=2)
    assert [p.name for p in paths] == ["attention_text_q0.png", "attention_text_q1.png"]
    assert all(p.stat().st_size > 10_000 for p in paths)


def test_a_learner_without_a_text_encoder_is_refused():
    with pytest.raises(ValueError, match=r"ProtoNet has no text encoder to draw"):
        learner_encoder(ProtoNet(torch.nn.Linear(2, 2)))


def test_a_run_with_a_tokenizer_is_drawn_as_text(tmp_path, episode_data):
    from types import SimpleNamespace

    from attnmeta.viz import write_run_attention_maps

    split, tokenizer, encoder = episode_data
    shape = SimpleNamespace(n_way=2, k_shot=1, q_query=1)
    run = SimpleNamespace(learner=MatchingNet(encoder), tokenizer=tokenizer,
                          config=SimpleNamespace(data=SimpleNamespace(test=shape)),
                          split=lambda name: split)
    paths = write_run_attention_maps(run, "test", 0, tmp_path)
    assert [p.name for p in paths] == ["attention_text_q0.png", "attention_text_q1.png"]
