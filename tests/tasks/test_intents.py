"""attnmeta.tasks.intents: the intent data sets by name, with plain arguments."""

from __future__ import annotations

import pytest
import torch

from attnmeta.tasks.banking77 import load_banking77
from attnmeta.tasks.clinc150 import load_clinc150
from attnmeta.tasks.intents import (load_intent_texts, load_intent_tokens,
                                    load_out_of_scope_tokens, meta_train_texts)
from attnmeta.tasks.registry import DATASETS
from attnmeta.bpe import train_tokenizer
from intent_files import write_banking77, write_clinc150


def test_intent_data_sets_by_name_with_plain_arguments(tmp_path):
    write_clinc150(tmp_path, domains=2, intents=7, per_intent=6)
    texts = load_intent_texts("clinc150", tmp_path, "test")
    assert texts.texts == load_clinc150(tmp_path, "test").texts and texts.split == "test"
    tokenizer = train_tokenizer(meta_train_texts("clinc150", tmp_path), 300)
    assert meta_train_texts("clinc150", tmp_path) == load_clinc150(tmp_path, "train").texts
    tokens = load_intent_tokens("clinc150", tmp_path, "test", tokenizer, 6)
    assert tokens.token_ids.shape == (36, 6) and tokens.token_ids.dtype == torch.int64
    assert torch.equal(tokens.labels, texts.labels) and tokens.split == "test"
    out_of_scope = load_out_of_scope_tokens("clinc150", tmp_path, "test", tokenizer, 6)
    assert out_of_scope.shape == (5, 6) and out_of_scope.dtype == torch.int64
    with pytest.raises(ValueError, match=r"data.dataset='banking77' has no out-of-scope"):
        load_out_of_scope_tokens("banking77", tmp_path, "test", tokenizer, 6)


def test_the_registry_declares_which_data_sets_are_sentences_and_which_have_out_of_scope():
    texts = {name for name, entry in DATASETS.items() if entry.text}
    out_of_scope = {name for name, entry in DATASETS.items() if entry.out_of_scope is not None}
    assert {"clinc150", "banking77", "sentences"} <= texts
    assert not {"omniglot", "emoji", "image_folder", "breastmnist", "retinamnist"} & texts
    assert "clinc150" in out_of_scope and not {"banking77", "sentences"} & out_of_scope
    assert out_of_scope <= texts


def test_unknown_text_dataset_and_split_are_named(tmp_path):
    tokenizer = train_tokenizer(["a b c"] * 3, 300)
    with pytest.raises(ValueError, match=r"data.dataset='snips': expected one of"):
        load_intent_tokens("snips", None, "train", tokenizer, 8)
    with pytest.raises(ValueError, match=r"split='dev': expected one of"):
        load_intent_tokens("clinc150", None, "dev", tokenizer, 8)


def test_tokens_are_the_tokenizers_encoding_of_each_text_row_by_row(tmp_path):
    names = [f"intent_{i:02d}" for i in range(30)]
    train = "text,category\n" + "".join(f"{name.replace('_', ' ')} please,{name}\n"
                                        for name in names)
    write_banking77(tmp_path, train, categories=names)
    texts = load_intent_texts("banking77", tmp_path, "val")
    assert texts.texts == load_banking77(tmp_path, "val").texts and len(texts) == 10
    tokenizer = train_tokenizer(meta_train_texts("banking77", tmp_path), 300)
    tokens = load_intent_tokens("banking77", tmp_path, "val", tokenizer, 5)
    for row, text in zip(tokens.token_ids.tolist(), texts.texts):
        ids = tokenizer.encode(text)[:5]
        assert row == ids + [tokenizer.pad_id] * (5 - len(ids))
    assert tokens.texts == texts.texts and tokens.class_names == texts.class_names


def test_out_of_scope_tokens_encode_the_upstream_split(tmp_path):
    write_clinc150(tmp_path)
    tokenizer = train_tokenizer(meta_train_texts("clinc150", tmp_path), 300)
    val = load_out_of_scope_tokens("clinc150", tmp_path, "val", tokenizer, 7)
    assert torch.equal(val, tokenizer.encode_batch(["sing to me"] * 3, 7))
    with pytest.raises(ValueError, match=r"split='oos_val': expected one of"):
        load_out_of_scope_tokens("clinc150", tmp_path, "oos_val", tokenizer, 7)
