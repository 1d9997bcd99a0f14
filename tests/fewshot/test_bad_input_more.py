"""Issue 29's bad input on the command line and in the library (items 13-15, and the same
kinds of input no list named): each refusal one line starting ``Error:`` that names the
value and what was expected, each oddity read anyway one ``Warning:`` line, and nothing
the user had is lost."""

from __future__ import annotations

import errno
import io
import json
import os
import re
import shutil
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from attnmeta.cli import main
from attnmeta.fewshot import FewShotClassifier
from attnmeta.fewshot.inputs import InputError, Preprocessing, read_support
from attnmeta.fewshot.model_folder import MODEL_MARKER, RECORD, field_digests
from attnmeta.fewshot.uploads import UploadStore, image_queries, image_support, text_support
from attnmeta.runs.episodic import train_run
from attnmeta.tasks.image_folder import load_image, load_image_folder
from support import make_image_folder, one_line_error, tiny_config, write_config


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("images"))


def trained(root: Path, images: Path, learner: str = "protonet") -> Path:
    config = tiny_config(images, learner, steps=2)
    config.model.norm = "running" if learner == "protonet" else "batch"
    config.train.eval_every = 0
    run = root / f"run-{learner}"
    train_run(config, run, progress=False, will_evaluate=False)
    return run


@pytest.fixture(scope="module")
def run(tmp_path_factory, images) -> Path:
    return trained(tmp_path_factory.mktemp("runs"), images)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, run, images) -> Path:
    folder = tmp_path_factory.mktemp("models") / "model"
    invoke("adapt", run, "--support", images / "test", "--out", folder, "--no-progress")
    return folder


def invoke(*args) -> CliRunner:
    outcome = CliRunner().invoke(main, [str(a) for a in args])
    assert outcome.exit_code == 0, outcome.output
    return outcome


def warning_lines(outcome) -> list[str]:
    lines = outcome.stderr.strip().splitlines()
    assert all(line.startswith("Warning: ") for line in lines), outcome.stderr
    return lines


def three_classes(images: Path, folder: Path) -> Path:
    for name in ("class_00", "class_01", "class_02"):
        shutil.copytree(images / "test" / name, folder / name)
    return folder


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


class Upload:
    """What the server hands uploads.py: a name, a size and a binary file."""

    def __init__(self, filename: str, data: bytes) -> None:
        self.filename, self.size, self.file = filename, len(data), io.BytesIO(data)


@contextmanager
def upload_store():
    store = UploadStore()
    try:
        yield store
    finally:
        store.close()


def png_bytes(seed: int, size: int = 12) -> bytes:
    pixels = (np.random.default_rng(seed).random((size, size)) * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


# 13: steps, repeated images, class names, hidden files ----------------------------------
def test_steps_are_refused_for_a_learner_that_adapts_without_them(tmp_path, run, images):
    out = tmp_path / "m"
    one_line_error(["adapt", run, "--support", images / "test", "--out", out, "--steps", "5"],
                   "steps=5", "Prototypical Networks", "takes no inner steps", "expected no steps")
    assert not out.exists()
    invoke("adapt", run, "--support", images / "test", "--out", out, "--steps", "0",
           "--no-progress")  # no steps is what it takes
    maml = trained(tmp_path, images, "maml")
    support = three_classes(images, tmp_path / "three")
    invoke("adapt", maml, "--support", support, "--out", tmp_path / "m2", "--steps", "3",
           "--no-progress")
    assert json.loads((tmp_path / "m2" / RECORD).read_text())["steps"] == 3


def test_steps_follow_the_declared_capability_not_the_learners_name(run, images,
                                                                     monkeypatch):
    model = FewShotClassifier.from_run(run)
    with pytest.raises(InputError, match="steps=2"):
        model.fit(images / "test", steps=2)
    monkeypatch.setattr(type(model.learner), "adapts_by_gradient", True)
    assert model.fit(images / "test", steps=2).steps == 2


def test_the_same_image_in_two_classes_is_one_warning(tmp_path, run, images):
    support = three_classes(images, tmp_path / "support")
    shutil.copy(support / "class_00" / "0.png", support / "class_01" / "copy.png")
    shutil.copy(support / "class_00" / "1.png", support / "class_02" / "again.png")
    outcome = invoke("adapt", run, "--support", support, "--out", tmp_path / "m",
                     "--no-progress")
    lines = warning_lines(outcome)
    assert len(lines) == 1, lines
    assert "same image is in two classes" in lines[0] and "(1 more such)" in lines[0]
    assert "class_00/0.png" in lines[0] and "class_01/copy.png" in lines[0]
    # names are not compared: the same name holding other pixels is no warning
    shutil.copytree(images / "test", tmp_path / "named", ignore=shutil.ignore_patterns("1*"))
    quiet = invoke("adapt", run, "--support", tmp_path / "named", "--out", tmp_path / "m2",
                   "--no-progress")
    assert quiet.stderr == ""


def test_class_names_with_nul_or_line_breaks_are_refused(tmp_path, run, images):
    support = three_classes(images, tmp_path / "support")
    (support / "class_02").rename(support / "two\nlines")
    one_line_error(["adapt", run, "--support", support, "--out", tmp_path / "m"],
                   r"class name 'two\nlines'", "line break", "expected a name on one line")
    assert not (tmp_path / "m").exists()
    files = sorted((images / "test" / "class_00").glob("*.png"))
    for label, what in (("a\x00b", "a NUL character"), ("a\rb", "a carriage return"),
                        ("a\u2028b", "U+2028"), ("  ", "has no class name")):
        with pytest.raises(InputError, match=re.escape(what)):
            read_support([(files[0], "fine"), (files[1], label)], "image")
    rows = tmp_path / "rows.csv"
    rows.write_text(f'image,label\n{files[0]},fine\n"{files[1]}","tab\there"\n')
    with pytest.raises(InputError, match=r"rows.csv line 3\) holds a tab"):
        read_support(rows, "image")
    # the server's labels are checked by the same read_support
    model = FewShotClassifier.from_run(run)
    with upload_store() as store:
        pairs = image_support([Upload("a.png", png_bytes(0)), Upload("b.png", png_bytes(1))],
                              ["cats", "dogs\nand more"], store.new_folder("adapt"))
        with pytest.raises(InputError, match=r"'dogs\\nand more' \(support item 1 \(b.png\)\)"):
            model.fit(pairs)


def test_names_that_are_not_utf8_refuse_a_class_and_read_a_file(tmp_path, run, images):
    support = three_classes(images, tmp_path / "support")
    try:
        os.rename(support / "class_02", os.fsencode(support) + b"/caf\xe9")
        shutil.copy(support / "class_00" / "0.png", os.fsencode(support) + b"/class_01/x\xff.png")
    except OSError:
        pytest.skip("this file system takes only UTF-8 names")
    one_line_error(["adapt", run, "--support", support, "--out", tmp_path / "m"],
                   r"class name 'caf\udce9'", "is not UTF-8 text", "expected a name in UTF-8")
    os.rename(os.fsencode(support) + b"/caf\xe9", support / "class_02")
    out = invoke("adapt", run, "--support", support, "--out", tmp_path / "m", "--no-progress")
    assert "to 3 classes from 19 examples" in out.stdout
    names = json.loads((tmp_path / "m" / RECORD).read_text())["support"]["names"]
    assert str(support / "class_01" / "x\ufffd.png") in names  # the file read, named as shown


def test_hidden_files_and_macos_metadata_are_skipped(tmp_path, run, images):
    support = three_classes(images, tmp_path / "support")
    for class_dir in list(support.iterdir()):
        (class_dir / "._0.png").write_bytes(b"\x00\x05\x16\x07AppleDouble")  # not a PNG
        (class_dir / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (support / "__MACOSX" / "class_00").mkdir(parents=True)
    (support / "__MACOSX" / "class_00" / "._0.png").write_bytes(b"\x00\x05\x16\x07")
    (support / ".hidden-class").mkdir()
    out = invoke("adapt", run, "--support", support, "--out", tmp_path / "m", "--no-progress")
    assert "to 3 classes from 18 examples" in out.stdout
    listed = invoke("predict", tmp_path / "m", support / "class_00", "--json").stdout
    assert len(listed.splitlines()) == 6
    split = load_image_folder(support, None, 16)
    assert split.class_names == ["class_00", "class_01", "class_02"] and len(split.labels) == 18
    for picture in (support / "class_01").glob("[0-9].png"):
        picture.unlink()  # only ._0.png and .DS_Store are left
    one_line_error(["adapt", run, "--support", support, "--out", tmp_path / "m2"],
                   "class 'class_01'", "no usable example", "hidden ones are skipped")


# 14: messages ---------------------------------------------------------------------------
def test_a_damaged_upload_is_named_as_it_was_sent(tmp_path, run):
    model = FewShotClassifier.from_run(run)
    whole = png_bytes(2, size=64)
    uploads = [Upload("cat.png", png_bytes(0)), Upload("dog.png", png_bytes(1)),
               Upload("my holiday.png", whole[: len(whole) // 2])]
    with upload_store() as store:
        folder = store.new_folder("adapt")
        pairs = image_support(uploads, ["cat", "dog", "dog"], folder)
        with pytest.raises(InputError) as refused:
            model.fit(pairs)
        message = str(refused.value)
        assert "cannot read image my holiday.png" in message, message
        assert "expected a complete image file" in message
        assert str(store.root) not in message and "0002-" not in message
        model.fit(pairs[:2])
        names, batch = image_queries([Upload("query.png", whole[:200])],
                                     store.new_folder("predict"))
        with pytest.raises(InputError, match="cannot read image query.png") as refused:
            model.logits(batch)
        assert str(store.root) not in str(refused.value)
        csv = Upload("sentences.csv", b"text,label\nhello\n")
        with pytest.raises(InputError, match="CSV file sentences.csv line 2") as refused:
            text_support(None, [csv], store.new_folder("adapt"))
        assert str(store.root) not in str(refused.value)


def full_disk(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_full_disk_during_adapt_names_the_folder_and_keeps_what_was_there(
        tmp_path, run, images, monkeypatch):
    import attnmeta.fewshot.classifier as classifier

    out = tmp_path / "m"
    args = ["adapt", run, "--support", images / "test", "--no-progress", "--out", out]
    with monkeypatch.context() as patch:
        patch.setattr(classifier, "atomic_write_bytes", full_disk)
        one_line_error(args, f"cannot save the adapted model in {out}", "No space left",
                       "expected free space", "is as it was")
    assert sorted(os.listdir(tmp_path)) == []  # no folder, no marker, no staging folder
    invoke(*args)  # the next run is not told a model is there
    before = snapshot(out)
    with monkeypatch.context() as patch:
        patch.setattr(classifier, "atomic_write_bytes", full_disk)
        one_line_error([*args, "--force"], "No space left", f"{out} is as it was")
    assert snapshot(out) == before and sorted(os.listdir(tmp_path)) == ["m"]
    FewShotClassifier.load(out)
    empty = tmp_path / "empty"
    empty.mkdir()
    with monkeypatch.context() as patch:
        patch.setattr(classifier, "atomic_write_bytes", full_disk)
        one_line_error([*args[:-1], empty], "No space left")
    assert empty.is_dir() and list(empty.iterdir()) == []


def test_a_save_cut_short_is_no_model_to_protect(tmp_path, run, images):
    """A folder holding only the marker (a library save() that a full disk stopped)."""
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / MODEL_MARKER).write_text("attnmeta adapted model\n")
    FewShotClassifier.from_run(run).fit(images / "test").save(folder)
    FewShotClassifier.load(folder)


def test_image_size_0_names_the_key(tmp_path, images, model_dir):
    config = write_config(tmp_path / "tiny.yaml", tiny_config(images))
    one_line_error(["train", config, "data.image_size=0", "--out", tmp_path / "run"],
                   "'data.image_size' is 0")
    edited = tmp_path / "edited"
    shutil.copytree(model_dir, edited)
    record = json.loads((edited / RECORD).read_text())
    record["preprocessing"]["image_size"] = 0
    record["sha256"] = field_digests({k: v for k, v in record.items() if k != "sha256"})
    (edited / RECORD).write_text(json.dumps(record))
    one_line_error(["predict", edited, images / "val" / "class_00" / "0.png"],
                   str(edited), RECORD, "'preprocessing'", "image_size=0")
    with pytest.raises(ValueError, match="image_size=0: expected the side"):
        Preprocessing("image", image_size=0)
    with pytest.raises(ValueError, match="image_size=0"):
        load_image(images / "val" / "class_00" / "0.png", 0, 1)
    with pytest.raises(ValueError, match="image_size=0"):
        load_image_folder(images, "val", image_size=0)
    with pytest.raises(ValueError, match="max_length=0"):
        Preprocessing("text", max_length=0)


def test_a_path_that_is_no_regular_file_says_what_it_is(tmp_path, run, model_dir):
    if Path("/dev/zero").exists():
        one_line_error(["predict", model_dir, "/dev/zero"],
                       "query /dev/zero is a character device, not a file",
                       "expected an image file")
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    one_line_error(["predict", model_dir, fifo], "is a named pipe (FIFO)")
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    one_line_error(["predict", model_dir, loop], "is a symbolic link that loops")
    one_line_error(["adapt", run, "--support", loop, "--out", tmp_path / "m"],
                   f"support {loop} is a symbolic link that loops",
                   "expected a folder of classes")
    broken = tmp_path / "broken.png"
    broken.symlink_to(tmp_path / "gone.png")
    one_line_error(["predict", model_dir, broken], "is a symbolic link to", "which does not exist")
    one_line_error(["predict", model_dir, tmp_path / "absent.png"], "does not exist")


def test_an_image_over_pils_limit_is_one_warning_line(tmp_path, model_dir, monkeypatch):
    picture = tmp_path / "wide.png"
    Image.new("L", (12, 12), 128).save(picture)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 144 pixels: between 1x and 2x
    outcome = invoke("predict", model_dir, picture)
    lines = warning_lines(outcome)
    assert len(lines) == 1 and str(picture) in lines[0] and "over PIL's limit" in lines[0]
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 70)  # over twice it: refused
    one_line_error(["predict", model_dir, picture], "wide.png is too large")


def test_adapt_re_adapts_a_saved_model_and_refuses_a_folder_of_neither_kind(
        tmp_path, model_dir, images):
    out = invoke("adapt", model_dir, "--support", three_classes(images, tmp_path / "three"),
                 "--out", tmp_path / "again", "--no-progress").stdout
    assert "to 3 classes from 18 examples" in out
    again = FewShotClassifier.load(tmp_path / "again")
    assert again.class_names == ["class_00", "class_01", "class_02"]
    assert again.source == FewShotClassifier.load(model_dir).source
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    one_line_error(["adapt", mine, "--support", images / "test", "--out", tmp_path / "m"],
                   f"'{mine}' is neither a saved model", "a saved model folder (attnmeta adapt "
                   "--out), a run folder (attnmeta train), or one of the encoders",
                   "efficientnet-lite0")
    assert (mine / "notes.txt").read_text() == "mine" and not (tmp_path / "m").exists()


# 15: where output goes -------------------------------------------------------------------
def test_outputs_need_an_existing_folder_and_are_checked_before_any_work(
        tmp_path, run, images, model_dir, monkeypatch):
    query = images / "val" / "class_00" / "0.png"
    typo = tmp_path / "typo" / "sub"
    one_line_error(["explain", model_dir, query, "--out", typo / "why.png"],
                   f"--out {typo / 'why.png'}: its folder {typo} does not exist",
                   "expected an existing folder")
    one_line_error(["export", model_dir, "--onnx", typo / "m.onnx"],
                   f"--onnx {typo / 'm.onnx'}: its folder {typo} does not exist")
    one_line_error(["adapt", run, "--support", images / "test", "--out", typo / "m"],
                   f"--out {typo / 'm'}: its folder {typo} does not exist")
    assert not (tmp_path / "typo").exists()

    def no_work(*args, **kwargs):
        raise AssertionError("the work started before the output was checked")

    monkeypatch.setattr(FewShotClassifier, "load", no_work)
    monkeypatch.setattr(FewShotClassifier, "from_run", no_work)
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    one_line_error(["explain", model_dir, query, "--out", a_file / "why.png"],
                   f"its folder {a_file} is a file")
    one_line_error(["export", model_dir, "--onnx", a_file / "m.onnx"], "is a file")
    one_line_error(["adapt", run, "--support", images / "test", "--out", a_file / "m"],
                   "is a file")
    assert a_file.read_text() == "mine"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes a read-only folder; the test "
                    "above checks the same refusal with a folder under a file")
def test_a_read_only_output_folder_is_refused_before_any_work(tmp_path, run, images,
                                                               model_dir):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        one_line_error(["explain", model_dir, images / "val" / "class_00" / "0.png", "--out",
                        locked / "why.png"], f"cannot write in {locked}")
        one_line_error(["export", model_dir, "--onnx", locked / "m.onnx"], "cannot write")
        one_line_error(["adapt", run, "--support", images / "test", "--out", locked / "m"],
                       "cannot write")
    finally:
        locked.chmod(0o755)
    assert list(locked.iterdir()) == []


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
def test_a_folder_no_one_can_write_is_refused_before_any_work_even_as_root(
        run, images, model_dir, monkeypatch):
    def no_work(*args, **kwargs):
        raise AssertionError("the work started before the output was checked")

    monkeypatch.setattr(FewShotClassifier, "load", no_work)
    monkeypatch.setattr(FewShotClassifier, "from_run", no_work)
    one_line_error(["explain", model_dir, images / "val" / "class_00" / "0.png", "--out",
                    "/proc/why.png"], "--out /proc/why.png: cannot write in /proc",
                   "expected a folder you can write")
    one_line_error(["export", model_dir, "--onnx", "/proc/m.onnx"], "cannot write in /proc")
    one_line_error(["adapt", run, "--support", images / "test", "--out", "/proc/m"],
                   "cannot write in /proc")


# the same kinds of input on what no list named --------------------------------------------
def test_other_image_formats_are_read_and_several_frames_are_one_warning(tmp_path, model_dir):
    rng = np.random.default_rng(0)
    colour = Image.fromarray((rng.random((20, 30, 3)) * 255).astype(np.uint8))
    frames = [Image.fromarray((rng.random((20, 30)) * 255).astype(np.uint8)) for _ in range(3)]
    plain = {"a.webp": {}, "a.gif": {}, "a.bmp": {}, "a.tiff": {}}
    for name, options in plain.items():
        colour.save(tmp_path / name, **options)
    colour.convert("CMYK").save(tmp_path / "cmyk.tiff")
    Image.fromarray((rng.random((20, 30)) * 65535).astype(np.uint16)).save(tmp_path / "16.tiff")
    records = [json.loads(line) for line in invoke(
        "predict", model_dir, *(tmp_path / n for n in [*plain, "cmyk.tiff", "16.tiff"]),
        "--json").stdout.splitlines()]
    assert len(records) == 6
    for name in ("anim.gif", "anim.png", "anim.webp", "pages.tiff"):
        frames[0].save(tmp_path / name, save_all=True, append_images=frames[1:], duration=100)
        lines = [line for line in warning_lines(invoke("predict", model_dir, tmp_path / name))
                 if "frames" in line]  # besides, a colour conversion may be noted
        assert len(lines) == 1 and f"{name} has 3 frames" in lines[0], lines
        assert "reads the first only" in lines[0]
    for name in [*plain, "anim.gif"]:
        data = (tmp_path / name).read_bytes()
        cut = tmp_path / f"cut-{name}"
        cut.write_bytes(data[: len(data) // 2])
        one_line_error(["predict", model_dir, cut], f"cannot read image {cut}", "expected")
    notes = tmp_path / "notes.png"
    notes.write_bytes(b"hello, not a picture")
    one_line_error(["predict", model_dir, notes],
                   "its contents are in no image format PIL reads", "expected an image file")


def test_hand_edited_csv_files_with_a_bom_crlf_or_other_separators(tmp_path, run, images):
    files = {name: sorted((images / "test" / name).glob("*.png"))[:2]
             for name in ("class_00", "class_01")}
    rows = "".join(f"{path},{name}\r\n" for name, paths in files.items() for path in paths)
    support = tmp_path / "support.csv"
    support.write_bytes(("\ufeffIMAGE , Label\r\n" + rows).encode("utf-8"))
    out = invoke("adapt", run, "--support", support, "--out", tmp_path / "m", "--no-progress")
    assert "to 2 classes from 4 examples" in out.stdout
    semicolons = tmp_path / "semicolons.csv"
    semicolons.write_text("image;label\n" + rows.replace(",", ";"))
    one_line_error(["adapt", run, "--support", semicolons, "--out", tmp_path / "m2"],
                   "separated by ';', not commas", "expected columns image,label")
    utf16 = tmp_path / "utf16.csv"
    utf16.write_bytes(("image,label\n" + rows).encode("utf-16"))
    one_line_error(["adapt", run, "--support", utf16, "--out", tmp_path / "m3"],
                   "is not UTF-8 text", "expected a UTF-8 CSV")


def test_symbolic_link_loops_inside_a_support_folder_are_harmless(tmp_path, run, images):
    support = three_classes(images, tmp_path / "support")
    (support / "class_00" / "up").symlink_to(support)
    (support / "class_01" / "loop.png").symlink_to(support / "class_01" / "loop.png")
    out = invoke("adapt", run, "--support", support, "--out", tmp_path / "m", "--no-progress")
    assert "to 3 classes from 18 examples" in out.stdout
    listed = invoke("predict", tmp_path / "m", support, "--json").stdout
    assert len(listed.splitlines()) == 18
