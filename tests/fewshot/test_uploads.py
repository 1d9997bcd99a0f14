"""attnmeta.fewshot.uploads: the server's uploads checked, stored and read back, on
in-memory files (the HTTP scenarios are in test_serve.py and test_bad_input_more.py)."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

import pytest
from PIL import Image

from attnmeta.fewshot.inputs import InputError, read_csv_rows
from attnmeta.fewshot.uploads import (KEEP_MARKER, MAX_LABEL_CHARS, MAX_TEXT_CHARS,
                                      UploadStore, check_count, check_images, check_label,
                                      check_sentence, decoded_pixels, flag, image_queries,
                                      image_support, number, size_of, text_queries,
                                      text_support, write_texts)


@dataclass
class Upload:
    """An uploaded file as Starlette hands it over (``size`` None: not declared)."""

    filename: str | None
    data: bytes
    declared: bool = True

    def __post_init__(self) -> None:
        self.file = io.BytesIO(self.data)
        self.size = len(self.data) if self.declared else None


def png(width: int = 4, height: int = 3) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (width, height), 128).save(buffer, "PNG")
    return buffer.getvalue()


def test_a_jpeg_counts_the_pixels_libjpeg_decodes_for_the_model():
    buffer = io.BytesIO()
    Image.new("RGB", (2000, 1600), "white").save(buffer, "JPEG")
    with Image.open(io.BytesIO(buffer.getvalue())) as image:
        assert decoded_pixels(image, 16) == 250 * 200  # 1/8 scale: still >= 32 a side
    with Image.open(io.BytesIO(buffer.getvalue())) as image:
        assert decoded_pixels(image, 224) == 1000 * 800  # 1/2: 1/4 is under 448
    with Image.open(io.BytesIO(buffer.getvalue())) as image:
        assert decoded_pixels(image, None) == 2000 * 1600
    png = io.BytesIO()
    Image.new("L", (300, 200)).save(png, "PNG")
    with Image.open(png) as image:
        assert decoded_pixels(image, 16) == 300 * 200  # decoded whole



def test_a_keep_folder_needs_an_existing_parent(tmp_path):
    with pytest.raises(InputError, match=r"--keep .*typo/uploads: its folder .*typo does not"):
        UploadStore(tmp_path / "typo" / "uploads")
    assert not (tmp_path / "typo").exists()



def test_request_folders_are_numbered_new_and_removed_with_the_store():
    store = UploadStore()
    first, second = store.new_folder("adapt"), store.new_folder("adapt")
    (store.root / "predict-0001").mkdir()  # taken: the next predict folder is 0002
    assert (first.name, second.name, store.new_folder("predict").name) == \
        ("adapt-0001", "adapt-0002", "predict-0002")
    store.discard(first)
    assert [f.name for f in store.folders()] == ["adapt-0002", "predict-0001", "predict-0002"]
    store.close()
    assert not store.root.exists()


def test_a_keep_folder_keeps_every_request_and_is_claimed_with_a_marker(tmp_path):
    store = UploadStore(tmp_path / "kept")
    folder = store.new_folder("adapt")
    store.discard(folder)
    store.close()
    assert folder.is_dir() and (tmp_path / "kept" / KEEP_MARKER).is_file()
    assert UploadStore(tmp_path / "kept").new_folder("adapt").name == "adapt-0002"  # reused
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("my own")
    with pytest.raises(InputError, match=r"is not empty and was not made by attnmeta serve"):
        UploadStore(tmp_path / "mine")
    with pytest.raises(InputError, match=r"notes\.txt is a file: expected a folder"):
        UploadStore(tmp_path / "mine" / "notes.txt")


def test_counts_sizes_numbers_and_flags():
    check_count(3, 3, "images")
    with pytest.raises(InputError, match=r"^no images: expected at least one$"):
        check_count(0, 3, "images")
    with pytest.raises(InputError, match=r"^4 images: expected at most 3 in one request$"):
        check_count(4, 3, "images")
    assert size_of(Upload("a.png", b"12345", declared=False)) == 5
    assert number("3", int, "steps") == 3 and number("", int, "steps") is None
    assert number("0.5", float, "p") == 0.5
    with pytest.raises(InputError, match=r"^steps='x': expected an integer$"):
        number("x", int, "steps")
    assert [flag(v) for v in (True, "1", "on", "YES", "0", "off", None, False)] == \
        [True] * 4 + [False] * 4


def test_labels_and_sentences_are_stripped_and_bounded():
    assert check_label("  cat ", "image a.png") == "cat"
    with pytest.raises(InputError, match=r"^image a\.png has no class name"):
        check_label(" ", "image a.png")
    with pytest.raises(InputError, match=rf"expected at most {MAX_LABEL_CHARS}$"):
        check_label("x" * (MAX_LABEL_CHARS + 1), "example 0")
    assert check_sentence(" hi ", "text 0") == "hi"
    with pytest.raises(InputError, match=r"^text 0 is 3: expected a non-empty sentence$"):
        check_sentence(3, "text 0")
    with pytest.raises(InputError, match=rf"expected at most {MAX_TEXT_CHARS} per sentence"):
        check_sentence("x" * (MAX_TEXT_CHARS + 1), "text 0")


def test_check_images_reads_headers_and_counts_the_request_pixels():
    uploads = [Upload("dir/a.png", png(4, 3)), Upload("b.PNG", png(5, 5))]
    assert check_images(uploads) == ["a.png", "b.PNG"]
    assert uploads[0].file.tell() == 0  # rewound for storing
    with pytest.raises(InputError, match=r"^b\.PNG brings this request's images to 0\.0 million"):
        check_images([Upload("a.png", png(4, 3)), Upload("b.PNG", png(5, 5))], max_pixels=36)
    with pytest.raises(InputError, match=r"^notes\.txt is not an image file \(suffix \.txt\)"):
        check_images([Upload("notes.txt", b"hi")])
    with pytest.raises(InputError, match=r"^fake\.jpg is not an image PIL can read .*no JPG"):
        check_images([Upload("fake.jpg", b"not a jpeg")])


def test_image_support_stores_each_upload_under_its_sent_name(tmp_path):
    uploads = [Upload("a b.png", png()), Upload("a b.png", png(2, 2)), "a text field"]
    pairs = image_support(uploads, ["cat", 7, " dog "], tmp_path)
    assert [(p.name, p.shown, label) for p, label in pairs] == \
        [("0000-a_b.png", "a b.png", "cat"), ("0001-a_b.png", "a b.png", "dog")]
    assert pairs[1][0].read_bytes() == png(2, 2)
    with pytest.raises(InputError, match=r"^2 files but 1 labels"):
        image_support(uploads, ["cat"], tmp_path)
    (tmp_path / "q").mkdir()
    names, paths = image_queries([Upload("q.png", png())], tmp_path / "q")
    assert names == ["q.png"] and paths[0].read_bytes() == png()


def test_texts_round_trip_through_the_csv_the_library_reads(tmp_path):
    texts, labels = ['say "hi", then go', "line\nbreak"], ["greet", "other"]
    path = write_texts(tmp_path / "t.csv", texts, labels)
    assert [(r["text"], r["label"]) for _, r in read_csv_rows(path, ("text", "label"))] == \
        list(zip(texts, labels))
    with pytest.raises(FileExistsError):
        write_texts(path, texts)  # never written over


def test_text_support_from_json_examples_or_an_uploaded_csv(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    pairs = text_support([{"text": " book a flight ", "label": "travel"}], [], tmp_path / "a")
    assert pairs == [("book a flight", "travel")]
    with (tmp_path / "a" / "support.csv").open() as saved:
        assert list(csv.reader(saved)) == [["text", "label"], ["book a flight", "travel"]]
    upload = Upload("mine.csv", b"text,label\nplay jazz,music\n")
    assert text_support(None, [upload], tmp_path / "b") == [("play jazz", "music")]
    with pytest.raises(InputError, match=r"^example 0 is str: expected an object"):
        text_support(["hello"], [], tmp_path / "b")
    with pytest.raises(InputError, match=r"^no examples: expected JSON"):
        text_support(None, [], tmp_path / "b")


def test_text_queries_write_one_csv_and_one_per_sentence(tmp_path):
    names, whole, singles = text_queries([" a ", "b"], tmp_path, one_by_one=True)
    assert names == ["a", "b"]
    assert [r["text"] for _, r in read_csv_rows(whole, ("text",))] == ["a", "b"]
    assert [[r["text"] for _, r in read_csv_rows(s, ("text",))] for s in singles] == [["a"], ["b"]]
    with pytest.raises(InputError, match=r"^no texts: expected JSON"):
        text_queries("a", tmp_path, one_by_one=False)
