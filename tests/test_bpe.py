"""The byte-level BPE sentence tokenizer (attnmeta.bpe, to become attnmeta.bpe):
exact round trips, padding, deterministic training, the saved JSON, and its errors."""

from __future__ import annotations

import pytest
import torch

from attnmeta.bpe import (MIN_VOCAB_SIZE, PAD_TOKEN, TextTokenizer,
                                tokenizer_from_pretrained, train_tokenizer)

CORPUS = ["what is my account balance", "how do i freeze my card", "book a table for two",
          "what's the weather like tomorrow", "transfer $50 to my savings account"] * 4


@pytest.mark.parametrize("text", ["what is my balance", "Freeze my CARD, please!",
                                  "zebra quokka xylophone", "Café — naïve  façade 3:45pm",
                                  "emoji 🚀 and tabs\tok"])
def test_tokenizer_decode_inverts_encode_up_to_normalisation(text):
    tokenizer = train_tokenizer(CORPUS, 320)
    assert tokenizer.decode(tokenizer.encode(text)) == tokenizer.normalize(text)
    if text.isascii():
        assert tokenizer.normalize(text) == text.lower()


def test_tokenizer_save_load_and_padding(tmp_path):
    tokenizer = train_tokenizer(CORPUS, 320)
    assert tokenizer.pad_id == 0 and tokenizer.vocab_size <= 320
    tokenizer.save(tmp_path / "tokenizer.json")
    loaded = TextTokenizer.load(tmp_path / "tokenizer.json")
    batch = loaded.encode_batch(["my account", "what is the weather like tomorrow"], 4)
    assert batch.dtype == torch.int64 and batch.shape == (2, 4)
    assert batch[0].tolist()[len(loaded.encode("my account")):] == [0] * (
        4 - len(loaded.encode("my account")))
    assert batch[1].tolist() == tokenizer.encode("what is the weather like tomorrow")[:4]
    assert loaded.decode(batch[0].tolist()) == "my account"
    assert train_tokenizer(CORPUS, 320).to_json() == tokenizer.to_json()  # deterministic
    with pytest.raises(ValueError, match=r"vocab_size=100: expected at least 300"):
        train_tokenizer(CORPUS, 100)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"bad.json is not a readable tokenizers JSON"):
        TextTokenizer.load(tmp_path / "bad.json")


def test_tokenizer_learns_only_from_the_text_it_is_given():
    tokenizer = train_tokenizer(CORPUS, 400)
    assert len(tokenizer.encode(" balance")) == 1          # a frequent training word
    assert len(tokenizer.encode(" quokka")) > 2            # never seen: split into pieces
    assert tokenizer.token_strings(tokenizer.encode("balances")) == ["balance", "##s"]


def test_ids_are_padding_then_the_256_bytes_then_merges():
    """The documented layout: id 0 is [PAD], ids 1..256 the byte symbols, then merges."""
    from tokenizers import pre_tokenizers

    tokenizer = train_tokenizer(CORPUS, 320)
    inner = tokenizer.tokenizer
    assert MIN_VOCAB_SIZE == 300 and inner.id_to_token(0) == PAD_TOKEN == "[PAD]"
    assert {inner.id_to_token(i) for i in range(1, 257)} == set(
        pre_tokenizers.ByteLevel.alphabet())
    assert tokenizer.vocab_size == 320  # the corpus has more than 63 merges to learn
    merged = inner.id_to_token(257)
    assert len(merged) == 2 and inner.token_to_id(merged[0]) <= 256  # a pair of bytes


def test_encode_batch_cuts_each_row_and_pads_the_rest():
    tokenizer = train_tokenizer(CORPUS, 320)
    texts = ["a", "transfer $50 to my savings account", ""]
    batch = tokenizer.encode_batch(texts, 6)
    for row, text in zip(batch.tolist(), texts):
        ids = tokenizer.encode(text)
        assert row == (ids + [tokenizer.pad_id] * 6)[:6]
    assert tokenizer.encode("") == [] and batch[2].tolist() == [0] * 6
    assert tokenizer.encode("a") == tokenizer.encode("a")  # padding was switched back on
    with pytest.raises(ValueError, match=r"max_length=0: expected at least 1 token"):
        tokenizer.encode_batch(texts, 0)


def test_json_round_trip_is_exact_and_keeps_the_padding_token():
    tokenizer = train_tokenizer(CORPUS, 320)
    again = TextTokenizer.from_json(tokenizer.to_json())
    assert again.to_json() == tokenizer.to_json()
    assert (again.pad_token, again.pad_id) == (PAD_TOKEN, 0)
    text = "how do i freeze my savings account"
    assert again.encode(text) == tokenizer.encode(text)
    assert again.token_strings(again.encode(text)) == tokenizer.token_strings(
        tokenizer.encode(text))


def test_a_tokenizer_without_its_padding_token_is_refused():
    tokenizer = train_tokenizer(CORPUS, 320)
    with pytest.raises(ValueError, match=r"tokenizer has no padding token '<pad>'"):
        TextTokenizer(tokenizer.tokenizer, "<pad>")


def test_missing_files_and_folders_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"tokenizer file .*absent.json does not exist"):
        TextTokenizer.load(tmp_path / "absent.json")
    with pytest.raises(FileNotFoundError, match=r"model.hf_path=.*nowhere.* is not a folder"):
        tokenizer_from_pretrained(tmp_path / "nowhere")
