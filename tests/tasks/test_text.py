"""CLINC150 and BANKING77 loaders, their class splits, and the BPE tokenizer."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from attnmeta.runs.config import DataConfig
from attnmeta.tasks import FewShotEpisodes
from attnmeta.tasks.banking77 import (banking77_class_split, load_banking77,
                                      read_banking77_csv)
from attnmeta.tasks.clinc150 import (clinc150_class_split, load_clinc150,
                                     load_clinc150_out_of_scope, read_clinc150)
from attnmeta.tasks.text import TEXT_SPLITS, load_text_split, ordered_by_digest
from attnmeta.tokenizer import TextTokenizer, train_tokenizer

REAL_DATA = Path(os.environ.get("ATTNMETA_DATA") or
                 Path(__file__).resolve().parents[3] / "shared" / "data")
needs_real_data = pytest.mark.skipif(
    not ((REAL_DATA / "clinc150" / "data_full.json").is_file()
         and (REAL_DATA / "banking77" / "train.csv").is_file()),
    reason=f"CLINC150 / BANKING77 not found under {REAL_DATA} (set ATTNMETA_DATA)")


# --------------------------------------------------------------------------- fixtures


def write_clinc150(root: Path, domains: int = 2, intents: int = 7, per_intent: int = 6,
                   data: dict | None = None) -> Path:
    """root/clinc150 with `domains` x `intents` intents; utterances name their intent."""
    folder = root / "clinc150"
    folder.mkdir(parents=True)
    domain_map = {f"domain{d}": [f"d{d}_intent{i}" for i in range(intents)]
                  for d in range(domains)}
    if data is None:
        rows = [[f"please do {intent} number {n}", intent]
                for names in domain_map.values() for intent in names for n in range(per_intent)]
        data = {"train": rows[::3], "val": rows[1::3], "test": rows[2::3],
                "oos_train": [["what is love", "oos"]], "oos_val": [["sing to me", "oos"]] * 3,
                "oos_test": [[f"unrelated thing {n}", "oos"] for n in range(5)]}
    (folder / "data_full.json").write_text(json.dumps(data, indent=2))
    (folder / "domains.json").write_text(json.dumps(domain_map))
    return folder


def write_banking77(root: Path, train_csv: str, test_csv: str = "text,category\n",
                    categories: list[str] | None = None) -> Path:
    folder = root / "banking77"
    folder.mkdir(parents=True)
    (folder / "train.csv").write_text(train_csv)
    (folder / "test.csv").write_text(test_csv)
    (folder / "categories.json").write_text(json.dumps(categories or ["card_arrival", "fee"]))
    return folder


# --------------------------------------------------------------------------- CLINC150


def test_clinc150_split_is_stratified_over_domains_disjoint_and_complete(tmp_path):
    folder = write_clinc150(tmp_path, domains=3, intents=7)
    data = read_clinc150(folder)
    split = clinc150_class_split(data.domains)
    for domain, intents in data.domains.items():
        counts = {name: len(set(intents) & set(split[name])) for name in TEXT_SPLITS}
        assert counts == {"test": 3, "val": 2, "train": 2}, domain
    every = [intent for name in TEXT_SPLITS for intent in split[name]]
    assert sorted(every) == sorted(i for v in data.domains.values() for i in v)
    assert len(every) == len(set(every))  # no intent in two splits
    # the documented rule: per domain, SHA-256 order, first 3 test, next 2 val
    ordered = ordered_by_digest(data.domains["domain0"])
    assert set(ordered[:3]) <= set(split["test"]) and set(ordered[3:5]) <= set(split["val"])


def test_clinc150_loader_pools_upstream_splits_per_intent(tmp_path):
    write_clinc150(tmp_path, domains=2, intents=7, per_intent=6)
    test = load_clinc150(tmp_path, "test")
    assert len(test.class_names) == 6 and len(test) == 36
    assert torch.bincount(test.labels).tolist() == [6] * 6
    for text, label in zip(test.texts, test.labels.tolist()):
        assert f"do {test.class_names[label]} number" in text  # each text keeps its intent
    assert load_clinc150_out_of_scope(tmp_path, "test") == [f"unrelated thing {n}"
                                                            for n in range(5)]


@pytest.mark.parametrize("data, message", [
    ({"train": [["hi", "a"], ["only text"]], "val": [], "test": [], "oos_train": [],
      "oos_val": [], "oos_test": []}, "train[1]"),
    ({"train": [["", "a"]], "val": [], "test": [], "oos_train": [], "oos_val": [],
      "oos_test": []}, "train[0]"),
    ({"train": [["hi", "oos"]], "val": [], "test": [], "oos_train": [], "oos_val": [],
      "oos_test": []}, "an in-scope intent"),
    ({"train": [], "val": [], "test": [], "oos_train": [], "oos_val": [["x", "a"]],
      "oos_test": []}, "oos_val[0] has intent 'a'"),
    ({"train": "nope", "val": [], "test": [], "oos_train": [], "oos_val": [],
      "oos_test": []}, "key 'train' is str"),
])
def test_clinc150_malformed_rows_are_named(tmp_path, data, message):
    folder = write_clinc150(tmp_path, data=data)
    with pytest.raises(ValueError) as error:
        read_clinc150(folder)
    assert message in str(error.value) and "data_full.json" in str(error.value)
    assert "\n" not in str(error.value)


def test_clinc150_invalid_json_names_line_and_column(tmp_path):
    folder = write_clinc150(tmp_path)
    (folder / "data_full.json").write_text('{\n  "train": [\n    ["a", "b"],,\n  ]\n}')
    with pytest.raises(ValueError, match=r"data_full.json line 3 column 16: not valid JSON"):
        read_clinc150(folder)


def test_clinc150_intent_outside_domains_and_missing_files(tmp_path):
    folder = write_clinc150(tmp_path)
    (folder / "domains.json").write_text(json.dumps({"domain0": ["d0_intent0"]}))
    with pytest.raises(ValueError, match=r"are in no domain"):
        read_clinc150(folder)
    (folder / "domains.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"domains.json does not exist"):
        read_clinc150(folder)
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "absent")):
        load_clinc150(tmp_path / "absent", "train")


# --------------------------------------------------------------------------- BANKING77


def test_banking77_csv_quoted_commas_quotes_and_line_breaks(tmp_path):
    folder = write_banking77(tmp_path, (
        'text,category\n'
        'plain text,fee\n'
        '"Hi, my card, it has not arrived",card_arrival\n'
        '"He said ""why, though?""",fee\n'
        '"two\nlines",card_arrival\n'
        'last,fee\n'))
    rows = read_banking77_csv(folder / "train.csv", ["card_arrival", "fee"])
    assert rows == [("plain text", "fee"), ("Hi, my card, it has not arrived", "card_arrival"),
                    ('He said "why, though?"', "fee"), ("two\nlines", "card_arrival"),
                    ("last", "fee")]


@pytest.mark.parametrize("csv_text, message", [
    ('text,category\nok,fee\n"a\nb",fee\nunquoted, comma,fee\n',
     "train.csv line 5: 3 fields"),  # the line count includes the quoted line break
    ("text,category\nok,fee\n,fee\n", "train.csv line 3: empty text"),
    ("text,category\nok,fees\n", "train.csv line 2: category 'fees' is not in categories"),
    ("sentence,label\nok,fee\n", "train.csv line 1: header is ['sentence', 'label']"),
    ('text,category\n"never closed,fee\n', "train.csv line"),
])
def test_banking77_malformed_rows_name_their_line(tmp_path, csv_text, message):
    folder = write_banking77(tmp_path, csv_text)
    with pytest.raises(ValueError) as error:
        read_banking77_csv(folder / "train.csv", ["card_arrival", "fee"])
    assert message in str(error.value) and "\n" not in str(error.value)


def test_banking77_split_is_disjoint_and_complete():
    names = [f"intent_{i:02d}" for i in range(40)]
    split = banking77_class_split(names)
    assert [len(split[name]) for name in ("test", "val", "train")] == [17, 10, 13]
    assert sorted(sum(split.values(), [])) == names
    assert split["test"] == sorted(ordered_by_digest(names)[:17])


# --------------------------------------------------------------------------- real data


@needs_real_data
def test_real_clinc150_splits_match_the_documented_sizes_and_leak_no_intent():
    splits = {name: load_clinc150(REAL_DATA, name) for name in TEXT_SPLITS}
    classes = {name: set(split.class_names) for name, split in splits.items()}
    assert {name: len(c) for name, c in classes.items()} == {"train": 100, "val": 20, "test": 30}
    assert not (classes["train"] & classes["val"] or classes["train"] & classes["test"]
                or classes["val"] & classes["test"])
    domains = json.loads((REAL_DATA / "clinc150" / "domains.json").read_text())
    assert set().union(*classes.values()) == {i for v in domains.values() for i in v}
    for intents in domains.values():  # stratified: 10 / 2 / 3 of each domain's 15
        assert [len(set(intents) & classes[n]) for n in ("train", "val", "test")] == [10, 2, 3]
    for split in splits.values():
        assert torch.bincount(split.labels).tolist() == [150] * len(split.class_names)
    assert [len(load_clinc150_out_of_scope(REAL_DATA, n)) for n in TEXT_SPLITS] == [100, 100,
                                                                                      1000]


@needs_real_data
def test_real_banking77_keeps_quoted_commas_and_splits_50_10_17():
    splits = {name: load_banking77(REAL_DATA, name) for name in TEXT_SPLITS}
    assert [len(splits[n].class_names) for n in ("train", "val", "test")] == [50, 10, 17]
    assert sum(len(s) for s in splits.values()) == 10003 + 3080
    every = [c for s in splits.values() for c in s.class_names]
    assert len(every) == len(set(every)) == 77
    texts = [t for s in splits.values() for t in s.texts]
    assert sum("," in t for t in texts) > 100  # quoted commas stayed inside the texts


@needs_real_data
def test_episode_shapes_that_do_not_fit_a_split_are_refused():
    tokenizer = train_tokenizer(["a b c"] * 3, 300)
    data = DataConfig(dataset="clinc150", root=str(REAL_DATA), max_length=8)
    val = load_text_split(data, "val", tokenizer)
    assert val.token_ids.shape == (3000, 8)
    with pytest.raises(ValueError, match=r"n_way=25 exceeds the 20 classes"):
        FewShotEpisodes(val.token_ids, val.labels.tolist(), n_way=25)
    with pytest.raises(ValueError, match=r"k_shot \+ q_query = 100 \+ 51 = 151 exceeds the 150"):
        FewShotEpisodes(val.token_ids, val.labels.tolist(), k_shot=100, q_query=51)


def test_unknown_text_dataset_and_split_are_named(tmp_path):
    tokenizer = train_tokenizer(["a b c"] * 3, 300)
    with pytest.raises(ValueError, match=r"data.dataset='snips': expected one of"):
        load_text_split(DataConfig(dataset="snips"), "train", tokenizer)
    with pytest.raises(ValueError, match=r"split='dev': expected one of"):
        load_text_split(DataConfig(dataset="clinc150"), "dev", tokenizer)


# --------------------------------------------------------------------------- tokenizer


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


# --------------------------------------------------------------------------- download


def test_download_is_checksummed_and_atomic(tmp_path, monkeypatch):
    import hashlib

    from attnmeta.tasks import clinc150
    from attnmeta.tasks.text import download_verified

    source = tmp_path / "upstream.json"
    source.write_text('{"train": []}')
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    download_verified(source.as_uri(), tmp_path / "out" / "copy.json", digest)
    assert (tmp_path / "out" / "copy.json").read_bytes() == source.read_bytes()
    with pytest.raises(ValueError, match=r"has sha256 .* expected 0{64}.*was not written"):
        download_verified(source.as_uri(), tmp_path / "out" / "bad.json", "0" * 64)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["copy.json"]

    upstream = write_clinc150(tmp_path / "upstream")  # a mirror of the pinned upstream files
    monkeypatch.setattr(clinc150, "CLINC150_URLS",
                        {name: (upstream / name).as_uri() for name in clinc150.CLINC150_FILES})
    monkeypatch.setattr(clinc150, "CLINC150_SHA256", {
        name: hashlib.sha256((upstream / name).read_bytes()).hexdigest()
        for name in clinc150.CLINC150_FILES})
    folder = clinc150.download_clinc150(tmp_path / "root")
    assert folder == tmp_path / "root" / "clinc150"
    assert len(load_clinc150(tmp_path / "root", "train").class_names) == 4
