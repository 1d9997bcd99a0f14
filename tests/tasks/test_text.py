"""CLINC150 and BANKING77 loaders, their class splits, and the BPE tokenizer."""

from __future__ import annotations

import ast
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import attnmeta.tasks
from attnmeta.tasks import FewShotEpisodes, LabelledSplit, check_episode_shape
from attnmeta.tasks.banking77 import (banking77_class_split, load_banking77,
                                      read_banking77_csv)
from attnmeta.tasks.clinc150 import (clinc150_class_split, load_clinc150,
                                     load_clinc150_out_of_scope, read_clinc150)
from attnmeta.tasks.intents import (INTENT_DATASETS, load_intent_texts, load_intent_tokens,
                                    load_out_of_scope_tokens, meta_train_texts)
from attnmeta.tasks.text import TEXT_DATASETS, TEXT_SPLITS, ordered_by_digest
from attnmeta.tokenizer import TextTokenizer, train_tokenizer
from support import REAL_DATA, needs_real_data



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
    val = load_intent_tokens("clinc150", str(REAL_DATA), "val", tokenizer, 8)
    assert val.token_ids.shape == (3000, 8) and val.items is val.token_ids
    assert isinstance(val, LabelledSplit) and val.split == "val"
    with pytest.raises(ValueError, match=r"n_way=25 exceeds the 20 classes"):
        FewShotEpisodes(val.token_ids, val.labels.tolist(), n_way=25)
    with pytest.raises(ValueError, match=r"k_shot \+ q_query = 100 \+ 51 = 151 exceeds the 150"):
        FewShotEpisodes(val.token_ids, val.labels.tolist(), k_shot=100, q_query=51)
    # the same shapes, refused before any episode is built, naming the config keys
    with pytest.raises(ValueError) as error:
        check_episode_shape(val, 25, 1, 15, "data.test")
    assert str(error.value) == ("data.test: n_way=25 but the val split has 20 classes: "
                                "expected n_way <= 20")
    with pytest.raises(ValueError, match=r"^data.test: k_shot \+ q_query = 151 but class "
                                         r"'\w+' has 150 examples: expected at most 150$"):
        check_episode_shape(val, 5, 100, 51, "data.test")
    check_episode_shape(val, 20, 100, 50, "data.test")


def test_intent_data_sets_by_name_with_plain_arguments(tmp_path):
    write_clinc150(tmp_path, domains=2, intents=7, per_intent=6)
    assert INTENT_DATASETS == TEXT_DATASETS == ("clinc150", "banking77")
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


def test_unknown_text_dataset_and_split_are_named(tmp_path):
    tokenizer = train_tokenizer(["a b c"] * 3, 300)
    with pytest.raises(ValueError, match=r"data.dataset='snips': expected one of"):
        load_intent_tokens("snips", None, "train", tokenizer, 8)
    with pytest.raises(ValueError, match=r"split='dev': expected one of"):
        load_intent_tokens("clinc150", None, "dev", tokenizer, 8)


def test_text_helpers_import_no_loader_and_no_task_module_imports_runs():
    """tasks.text is what the loaders share: importing it pulls in neither loader (no
    cycle), and nothing under tasks/ needs the run layer."""
    code = (
        "import sys, pkgutil, importlib, attnmeta.tasks.text, attnmeta.tasks as t\n"
        "assert not {'attnmeta.tasks.clinc150', 'attnmeta.tasks.banking77'} & set(sys.modules)\n"
        "for m in pkgutil.iter_modules(t.__path__): importlib.import_module(t.__name__ + '.' + m.name)\n"
        "print(sorted(m for m in sys.modules if m.startswith('attnmeta.runs')))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
    for path in Path(attnmeta.tasks.__file__).parent.glob("*.py"):  # TYPE_CHECKING ones too
        imported = [node.module if isinstance(node, ast.ImportFrom) else alias.name
                    for node in ast.walk(ast.parse(path.read_text()))
                    if isinstance(node, (ast.Import, ast.ImportFrom))
                    for alias in node.names]
        assert not [m for m in imported if m and m.startswith("attnmeta.runs")], path


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


@pytest.mark.parametrize("dataset", ["clinc150", "banking77"])
def test_download_text_data_set_from_a_local_mirror(dataset, tmp_path, local_server,
                                                    monkeypatch):
    from attnmeta.tasks import banking77, clinc150

    module = {"clinc150": clinc150, "banking77": banking77}[dataset]
    files = getattr(module, f"{dataset.upper()}_FILES")
    if dataset == "clinc150":
        upstream = write_clinc150(tmp_path / "upstream")  # a mirror of the pinned files
    else:
        upstream = write_banking77(tmp_path / "upstream", "text,category\nwhere is it,fee\n",
                                   "text,category\n\"a, b\",card_arrival\n")
    for name in files:
        (local_server.folder / name).write_bytes((upstream / name).read_bytes())
    monkeypatch.setattr(module, f"{dataset.upper()}_URLS",
                        {name: local_server.url_of(name) for name in files})
    monkeypatch.setattr(module, f"{dataset.upper()}_SHA256", {
        name: hashlib.sha256((upstream / name).read_bytes()).hexdigest() for name in files})
    download = getattr(module, f"download_{dataset}")
    folder = download(tmp_path / "root")
    assert folder == tmp_path / "root" / dataset
    assert sorted(p.name for p in folder.iterdir()) == sorted(files)
    assert all((folder / n).read_bytes() == (upstream / n).read_bytes() for n in files)
    assert len(local_server.requests) == len(files)
    assert download(tmp_path / "root") == folder  # kept: checksums match, nothing fetched
    assert len(local_server.requests) == len(files)
    # a changed local file is refused and left as it is
    first = folder / files[0]
    first.write_text("edited by hand")
    with pytest.raises(ValueError, match=rf"{first.name} has sha256 [0-9a-f]{{64}}, expected "
                                         r"[0-9a-f]{64}: .*left untouched"):
        download(tmp_path / "root")
    assert first.read_text() == "edited by hand"


def test_pinned_text_checksums_match_the_shared_copies():
    """The pinned upstream SHA-256s are the ones of the shared data (when present)."""
    from attnmeta.tasks import banking77, clinc150
    from attnmeta.files import file_digest

    for folder, pinned in ((REAL_DATA / "clinc150", clinc150.CLINC150_SHA256),
                           (REAL_DATA / "banking77", banking77.BANKING77_SHA256)):
        if not folder.is_dir():
            pytest.skip(f"{folder} not found (set ATTNMETA_DATA)")
        for name, digest in pinned.items():
            assert file_digest(folder / name, "sha256") == digest, folder / name
