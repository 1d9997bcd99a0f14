"""attnmeta.tasks.banking77: the CSV reader, the digest-ordered class split, loading, the
pinned download, and the real data set's published sizes."""

from __future__ import annotations

import pytest

from attnmeta.tasks import banking77
from attnmeta.tasks.banking77 import (banking77_class_split, find_banking77_dir,
                                      load_banking77, read_banking77_categories,
                                      read_banking77_csv)
from attnmeta.tasks.registry import DATASETS
from attnmeta.tasks.text import TEXT_SPLITS, ordered_by_digest
from intent_files import (check_download_from_a_local_mirror, check_pinned_checksums,
                          write_banking77)
from support import REAL_DATA, needs_real_data


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


def test_banking77_split_needs_more_than_27_intents():
    with pytest.raises(ValueError, match=r"27 intents: expected more than 27 \(17 test, 10 val"):
        banking77_class_split([f"intent_{i}" for i in range(27)])
    assert banking77_class_split([f"intent_{i}" for i in range(28)])["train"] == sorted(
        ordered_by_digest([f"intent_{i}" for i in range(28)])[27:])


@pytest.mark.parametrize("text, message", [
    ("{}", "expected a JSON list of intent names"),
    ('["a", ""]', "expected a JSON list of intent names"),
    ('["a", "b", "a"]', "intent names repeat"),
    ('["a",\n "b",]', "categories.json line 2 column 6: not valid JSON"),
])
def test_banking77_bad_categories_are_named(tmp_path, text, message):
    path = tmp_path / "categories.json"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        read_banking77_categories(path)


def test_banking77_loader_pools_train_then_test_rows_of_a_class_split(tmp_path):
    names = [f"intent_{i:02d}" for i in range(30)]
    train = "text,category\n" + "".join(f'"{name}, train {n}",{name}\n' for name in names
                                        for n in range(2))
    test = "text,category\n" + "".join(f"{name} test,{name}\n" for name in names)
    folder = write_banking77(tmp_path, train, test, categories=names)
    assert find_banking77_dir(tmp_path) == folder and find_banking77_dir(folder) == folder
    split = banking77_class_split(names)
    for name in TEXT_SPLITS:
        loaded = load_banking77(tmp_path, name)
        assert loaded.class_names == split[name] and loaded.split == name
        assert len(loaded) == 3 * len(split[name])
        expected = [f"{c}, train {n}" for c in names if c in split[name] for n in range(2)] + \
                   [f"{c} test" for c in names if c in split[name]]
        assert loaded.texts == expected  # upstream train rows, then test rows, in file order
        for text, label in zip(loaded.texts, loaded.labels.tolist()):
            assert text.startswith(loaded.class_names[label])


def test_banking77_intent_without_rows_and_missing_folder_are_named(tmp_path):
    names = [f"intent_{i:02d}" for i in range(30)]
    train = "text,category\n" + "".join(f"{name} row,{name}\n" for name in names[1:])
    write_banking77(tmp_path, train, categories=names)
    with pytest.raises(ValueError, match=r"intents \['intent_00'\] of categories.json have no "
                                         r"row"):
        load_banking77(tmp_path, "train")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match=r"no BANKING77 data under .*empty"):
        load_banking77(empty, "train")


def test_banking77_registers_its_loader_and_has_no_out_of_scope_queries():
    entry = DATASETS["banking77"]
    assert entry.text and entry.texts is load_banking77 and entry.out_of_scope is None
    assert entry.download is banking77.download_banking77
    assert banking77.BANKING77_FILES == ("train.csv", "test.csv", "categories.json")


def test_download_banking77_from_a_local_mirror(tmp_path, local_server, monkeypatch):
    upstream = write_banking77(tmp_path / "upstream", "text,category\nwhere is it,fee\n",
                               "text,category\n\"a, b\",card_arrival\n")
    check_download_from_a_local_mirror(banking77, "banking77", upstream, tmp_path, local_server,
                                       monkeypatch)


def test_pinned_banking77_checksums_match_the_shared_copy():
    """The pinned upstream SHA-256s are the ones of the shared data (when present)."""
    check_pinned_checksums(REAL_DATA / "banking77", banking77.BANKING77_SHA256)


@needs_real_data
def test_real_banking77_keeps_quoted_commas_and_splits_50_10_17():
    splits = {name: load_banking77(REAL_DATA, name) for name in TEXT_SPLITS}
    assert [len(splits[n].class_names) for n in ("train", "val", "test")] == [50, 10, 17]
    assert sum(len(s) for s in splits.values()) == 10003 + 3080
    every = [c for s in splits.values() for c in s.class_names]
    assert len(every) == len(set(every)) == 77
    texts = [t for s in splits.values() for t in s.texts]
    assert sum("," in t for t in texts) > 100  # quoted commas stayed inside the texts
