"""attnmeta.tasks.clinc150: reading the upstream files, the stratified class split, the
out-of-scope utterances, the pinned download, and the real data set's published sizes."""

from __future__ import annotations

import json

import pytest
import torch

from attnmeta.tasks import clinc150
from attnmeta.tasks.clinc150 import (clinc150_class_split, find_clinc150_dir, load_clinc150,
                                     load_clinc150_out_of_scope, read_clinc150)
from attnmeta.tasks.registry import DATASETS
from attnmeta.tasks.text import TEXT_SPLITS, ordered_by_digest
from intent_files import (check_download_from_a_local_mirror, check_pinned_checksums,
                          write_clinc150)
from support import REAL_DATA, needs_real_data


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


def test_clinc150_folder_is_the_data_root_or_the_data_set_folder(tmp_path):
    folder = write_clinc150(tmp_path)
    assert find_clinc150_dir(tmp_path) == folder
    assert find_clinc150_dir(folder) == folder  # holds data_full.json itself
    assert load_clinc150(folder, "val").texts == load_clinc150(tmp_path, "val").texts
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match=r"no CLINC150 data under .*empty.*"
                                                r"`attnmeta download clinc150"):
        find_clinc150_dir(empty)


def test_clinc150_rereads_a_file_that_changed(tmp_path):
    """The parse is cached until a file changes: an edit is seen on the next read."""
    folder = write_clinc150(tmp_path)
    assert load_clinc150_out_of_scope(folder, "val") == ["sing to me"] * 3
    data = json.loads((folder / "data_full.json").read_text())
    data["oos_val"] = [["a changed question", "oos"]]
    (folder / "data_full.json").write_text(json.dumps(data))
    assert load_clinc150_out_of_scope(folder, "val") == ["a changed question"]


def test_clinc150_refuses_small_domains_and_unknown_splits(tmp_path):
    with pytest.raises(ValueError, match=r"domain 'tiny' has 5 intents: expected at least 6"):
        clinc150_class_split({"tiny": [f"i{n}" for n in range(5)]})
    split = clinc150_class_split({"smallest": [f"i{n}" for n in range(6)]})
    assert [len(split[name]) for name in ("test", "val", "train")] == [3, 2, 1]
    write_clinc150(tmp_path)
    with pytest.raises(ValueError, match=r"split='dev': expected one of 'train', 'val', 'test'"):
        load_clinc150_out_of_scope(tmp_path, "dev")
    with pytest.raises(ValueError, match=r"split='dev'"):
        load_clinc150(tmp_path, "dev")


def test_clinc150_registers_its_loaders():
    entry = DATASETS["clinc150"]
    assert entry.text and entry.texts is load_clinc150
    assert entry.out_of_scope is load_clinc150_out_of_scope
    assert entry.download is clinc150.download_clinc150


def test_download_clinc150_from_a_local_mirror(tmp_path, local_server, monkeypatch):
    upstream = write_clinc150(tmp_path / "upstream")  # a mirror of the pinned files
    check_download_from_a_local_mirror(clinc150, "clinc150", upstream, tmp_path, local_server,
                                       monkeypatch)


def test_pinned_clinc150_checksums_match_the_shared_copy():
    """The pinned upstream SHA-256s are the ones of the shared data (when present)."""
    check_pinned_checksums(REAL_DATA / "clinc150", clinc150.CLINC150_SHA256)


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
