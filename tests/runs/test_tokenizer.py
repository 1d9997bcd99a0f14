"""attnmeta.runs.tokenizer: a text run's tokenizer, saved in its folder and read back from it
(never trained again on a resume)."""

from __future__ import annotations

import re

import pytest

from attnmeta.bpe import train_tokenizer
from attnmeta.runs.tokenizer import (TOKENIZER_FILE, load_run_tokenizer, make_tokenizer,
                                     run_tokenizer)
from support import tiny_config

SENTENCES = ["what is my account balance", "transfer money to my savings account",
             "what is the weather like today", "book a table for two tonight"] * 4


def test_a_saved_tokenizer_is_the_one_a_resume_and_an_evaluation_read(tmp_path):
    config = tiny_config(tmp_path)  # (not read: the tokenizer is given)
    made = train_tokenizer(SENTENCES, 300)
    assert run_tokenizer(config, tmp_path, resuming=False, save=True, made=made) is made
    assert (tmp_path / TOKENIZER_FILE).is_file()
    text = "transfer my balance tonight"
    for read in (load_run_tokenizer(tmp_path),
                 run_tokenizer(config, tmp_path, resuming=True, save=False)):
        assert read.encode(text) == made.encode(text) and read.vocab_size == made.vocab_size


def test_a_missing_tokenizer_file_is_refused_not_made_again(tmp_path):
    config = tiny_config(tmp_path)
    with pytest.raises(FileNotFoundError, match=f"^cannot resume {re.escape(str(tmp_path))}: .*"
                                                f"{TOKENIZER_FILE} does not exist"):
        run_tokenizer(config, tmp_path, resuming=True, save=False)
    with pytest.raises(FileNotFoundError, match=f"{TOKENIZER_FILE} does not exist: expected "
                                                "the tokenizer a text run saves"):
        load_run_tokenizer(tmp_path)
    with pytest.raises(ValueError, match="data.dataset='image_folder' holds images: expected "
                                         "a text data set"):
        make_tokenizer(config)
    assert not (tmp_path / TOKENIZER_FILE).exists()
