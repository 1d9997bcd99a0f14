"""attnmeta.fewshot.inputs: support sets and queries read from folders, CSVs and pairs, the
checks on class names, images as model inputs, and the words of progress lines."""

from __future__ import annotations

import os

import pytest
import torch

from attnmeta.fewshot.inputs import (Examples, InputError, Preprocessing, check_class_name,
                                     describe_path, duration_words, eta_seconds, image_tensor,
                                     images_to_tensor, named_path, progress_words,
                                     read_csv_rows, read_queries, read_support, shown_name)
from support import make_image_folder


def test_progress_words_say_the_share_and_the_time_left():
    assert progress_words(320, 1003, 7.0) == "320/1003 (31%), about 15 s left"
    assert progress_words(0, 10, 1.0) == "0/10 (0%)"
    assert progress_words(10, 10, 4.0) == "10/10 (100%)"
    assert duration_words(125) == "2 min 5 s" and duration_words(3780) == "1 h 3 min"



def test_the_same_sentence_in_two_classes_is_one_warning(caplog):
    pairs = [("book a flight", "travel"), ("play some jazz", "music"),
             ("book a flight ", "music"), ("play some jazz", "music")]
    with caplog.at_level("WARNING", logger="attnmeta"):
        read_support(pairs, "text")
    assert [r.getMessage() for r in caplog.records] == [
        "the same sentence 'book a flight' is in two classes, 'travel' and 'music': expected "
        "each example in one class (the model cannot tell them apart)"]



def test_eta_is_the_rate_so_far_times_what_is_left():
    assert eta_seconds(10, 40, 5.0) == pytest.approx(15.0)
    assert eta_seconds(0, 40, 5.0) is None and eta_seconds(5, 5, 3.0) == 0.0
    assert duration_words(59.4) == "59 s" and duration_words(60) == "1 min 0 s"
    assert progress_words(3, 0, 2.0) == "3 done, 2 s so far"


def test_preprocessing_round_trips_and_old_records_read_as_resize():
    values = Preprocessing("image", image_size=32, channels=3, inverted=True, fit="crop")
    assert Preprocessing.from_dict(values.to_dict()) == values
    old = values.to_dict()
    del old["fit"]
    assert Preprocessing.from_dict(old).fit == "resize"
    with pytest.raises(ValueError, match=r"modality='audio': expected 'image' or 'text'"):
        Preprocessing("audio")
    with pytest.raises(ValueError, match=r"max_length=True: expected the tokens"):
        Preprocessing("text", max_length=True)


def test_a_named_path_is_its_path_but_shown_by_its_name(tmp_path):
    path = tmp_path / "0003-cat.png"
    named = named_path(path, "cat.png")
    assert named == path and str(named) == str(path) and shown_name(named) == "cat.png"
    assert shown_name(path) == str(path)
    assert shown_name("caf\udce9.png") == "caf\ufffd.png"  # undecodable byte shown as U+FFFD


def test_describe_path_says_what_a_path_is(tmp_path):
    (tmp_path / "file").write_text("x")
    os.symlink(tmp_path / "missing", tmp_path / "dangling")
    os.symlink(tmp_path / "loop", tmp_path / "loop")
    assert describe_path(tmp_path) == "is a folder"
    assert describe_path(tmp_path / "file") == "is a file"
    assert describe_path(tmp_path / "nothing") == "does not exist"
    assert describe_path(tmp_path / "dangling") == \
        f"is a symbolic link to {tmp_path / 'missing'}, which does not exist"
    assert describe_path(tmp_path / "loop").startswith("is a symbolic link that loops")
    os.mkfifo(tmp_path / "pipe")
    assert describe_path(tmp_path / "pipe") == "is a named pipe (FIFO), not a file"


@pytest.mark.parametrize("label,expected", [("", "has no class name"),
                                            ("a\x00b", "holds a NUL character"),
                                            ("a\nb", "holds a line break"),
                                            ("a\tb", "holds a tab"),
                                            ("a\x07b", r"the control character U\+0007"),
                                            ("caf\udce9", "is not UTF-8 text")])
def test_class_names_must_be_one_printable_line(label, expected):
    with pytest.raises(InputError, match=expected):
        check_class_name(label, "here")
    assert check_class_name("café au lait", "here") == "café au lait"


def test_csv_rows_carry_their_line_numbers_and_refuse_bad_shapes(tmp_path):
    good = tmp_path / "good.csv"
    good.write_text("\ufeffText ,Label\r\nbook a flight,travel\r\n\r\n\"hi, there\",greet\r\n",
                    encoding="utf-8")
    assert read_csv_rows(good, ("text", "label")) == [
        (2, {"text": "book a flight", "label": "travel"}),
        (4, {"text": "hi, there", "label": "greet"})]
    cases = {"text;label\na;b\n": r"line 1: header 'text;label' lacks column 'text' "
                                  r"\(its cells are separated by ';', not commas\)",
             "text,label\na,b,c\n": r"line 2: 3 fields, expected 2",
             "text,label\na,\n": r"line 2: column 'label' is empty",
             "": r"is empty: expected a header line 'text,label'",
             "text,label\n\n": r"has a header but no rows"}
    for index, (content, message) in enumerate(cases.items()):
        path = tmp_path / f"bad{index}.csv"
        path.write_text(content)
        with pytest.raises(InputError, match=message):
            read_csv_rows(path, ("text", "label"))


def test_support_from_a_folder_a_csv_and_pairs(tmp_path):
    root = make_image_folder(tmp_path / "images", classes=2, per_class=2)
    folder = read_support(root / "train", "image")
    assert folder.labels == ["class_00"] * 2 + ["class_01"] * 2
    assert [p.name for p in folder.items] == ["0.png", "1.png"] * 2
    csv_file = tmp_path / "texts.csv"
    csv_file.write_text("text,label\nbook a flight,travel\nplay jazz,music\n")
    assert read_support(csv_file, "text") == Examples(["book a flight", "play jazz"],
                                                      ["book a flight", "play jazz"],
                                                      ["travel", "music"])
    pairs = read_support([(torch.zeros(1, 4, 4), "a"), (torch.ones(1, 4, 4), 2)], "image")
    assert pairs.names == ["item 0", "item 1"] and pairs.labels == ["a", "2"]


@pytest.mark.parametrize("support,message", [
    ([("x", "a"), ("y", "a")], r"has one class \('a'\): expected at least 2 classes"),
    ([], r"has no examples"),
    ([("x", "a"), "y"], r"support item 1 is str: expected an \(item, label\) pair")])
def test_a_support_set_needs_two_classes_of_pairs(support, message):
    with pytest.raises(InputError, match=message):
        read_support(support, "text")


def test_a_text_model_refuses_a_support_folder_and_a_missing_path(tmp_path):
    with pytest.raises(InputError, match=r"is a folder, but the model reads text"):
        read_support(tmp_path, "text")
    with pytest.raises(InputError, match=r"nothing does not exist: expected a folder"):
        read_support(tmp_path / "nothing", "image")


def test_text_queries_are_sentences_or_files_of_them(tmp_path):
    lines = tmp_path / "q.txt"
    lines.write_text("first one\n\n  second one  \n")
    table = tmp_path / "q.csv"
    table.write_text("text\nthird one\n")
    found = read_queries(["  hello  ", lines, str(table)], "text")
    assert found.items == ["hello", "first one", "second one", "third one"]
    assert found.labels == []
    with pytest.raises(InputError, match=r"query is a tensor \(an image\?\)"):
        read_queries([torch.zeros(1, 2, 2)], "text")
    with pytest.raises(InputError, match="no queries: expected at least one"):
        read_queries([], "text")


def test_image_queries_search_folders_and_refuse_text_files(tmp_path):
    root = make_image_folder(tmp_path / "images", classes=2, per_class=2)
    found = read_queries([root / "test", torch.zeros(1, 3, 3)], "image")
    assert len(found.items) == 5 and found.names[-1] == "item 4"
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(InputError, match=r"notes\.txt is a text file, but the model reads images"):
        read_queries([tmp_path / "notes.txt"], "image")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match=r"query folder .*empty holds no images"):
        read_queries([tmp_path / "empty"], "image")


def test_a_tensor_image_is_converted_to_the_models_channels_and_size():
    rgb = torch.stack([torch.full((4, 4), 0.2), torch.full((4, 4), 0.4), torch.full((4, 4), 0.9)])
    grey, changed = image_tensor(rgb, Preprocessing("image", image_size=4, channels=1))
    assert changed == "RGB" and grey.shape == (1, 4, 4)
    torch.testing.assert_close(grey, torch.full((1, 4, 4), 0.5))  # the channels' mean
    small, changed = image_tensor(torch.ones(8, 8) * 2, Preprocessing("image", image_size=4))
    assert changed is None and small.shape == (1, 4, 4) and float(small.max()) == 1.0  # clamped
    padded, _ = image_tensor(torch.zeros(1, 2, 4), Preprocessing("image", image_size=4, fit="pad"))
    assert padded[0, :, 0].tolist() == [1.0, 0.0, 0.0, 1.0]  # white above and below
    with pytest.raises(InputError, match=r"image tensor of shape \[2, 4, 4\]: expected"):
        image_tensor(torch.zeros(2, 4, 4), Preprocessing("image", image_size=4))


def test_images_to_tensor_stacks_each_image_as_image_tensor_reads_it(tmp_path, caplog):
    root = make_image_folder(tmp_path / "images", classes=1, per_class=3, size=12)
    files = sorted((root / "train" / "class_00").glob("*.png"))
    preprocessing = Preprocessing("image", image_size=12, channels=3)
    with caplog.at_level("WARNING", logger="attnmeta"):
        batch = images_to_tensor(files, preprocessing)
    for row, path in zip(batch, files):
        torch.testing.assert_close(row, image_tensor(path, preprocessing)[0])
    assert [r.getMessage() for r in caplog.records] == [
        "converted 3 of 3 images to RGB: the model reads 3 channels"]
