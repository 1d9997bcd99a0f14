"""Omniglot loading: locating, structure checks, decode + cache, split protocols, episodes.

Most tests build a tiny synthetic Omniglot (a few alphabets of 15x15 1-bit PNGs) in tmp_path.
Each drawing's ink pattern is a known function of its (set, alphabet, character, drawing), and
decoding at image_size=15 involves no resampling, so loaded pixels can be checked exactly.
One test reads the real data when a local copy is present.
"""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from attnmeta.tasks import FewShotEpisodes
from attnmeta.tasks import omniglot, omniglot_files
from attnmeta.tasks.data_root import DATA_ROOT_ENV_VAR
from attnmeta.tasks.omniglot import (OMNIGLOT_MD5, download_omniglot,
                                     find_omniglot_dir, load_omniglot, load_omniglot_set,
                                     omniglot_episodes)

PNG_SIZE = 15
# insertion order deliberately unsorted: the loader must sort alphabets itself
BACKGROUND = {"Beta": 2, "Alpha": 3}
EVALUATION = {"Gamma": 2, "Delta": 1}
# sorted pooled order: background Alpha c01..c03, Beta c01..c02;
# then evaluation Delta c01, Gamma c01..c02
POOLED = ["Alpha/character01", "Alpha/character02", "Alpha/character03", "Beta/character01",
          "Beta/character02", "Delta/character01", "Gamma/character01", "Gamma/character02"]
SET_OF = {name: ("background" if name[0] in "AB" else "evaluation") for name in POOLED}
TINY = dict(expected_characters=None, num_train_characters=5, num_val_characters=2)


# --------------------------------------------------------------------------- synthetic data


def ink_mask(set_name: str, character: str, drawing: int) -> np.ndarray:
    """The strokes of a synthetic drawing: bool [15, 15], an L plus two identifying dots.

    The L in the top-left makes every rotation distinct; the dots encode the drawing's identity.
    """
    ink = np.zeros((PNG_SIZE, PNG_SIZE), dtype=bool)
    ink[2:12, 2] = True
    ink[11, 2:9] = True
    rng = np.random.default_rng(zlib.crc32(f"{set_name}/{character}/{drawing}".encode()))
    for _ in range(2):
        ink[rng.integers(2, 9), rng.integers(5, 11)] = True
    return ink


def png_bytes(ink: np.ndarray) -> bytes:
    """A 1-bit PNG in Omniglot's convention: black (0) strokes on white (1)."""
    buffer = io.BytesIO()
    Image.fromarray(~ink).save(buffer, format="PNG")
    assert Image.open(io.BytesIO(buffer.getvalue())).mode == "1"
    return buffer.getvalue()


def set_members(set_name: str, alphabets: dict[str, int], top: str | None = None
                ) -> dict[str, bytes]:
    """Zip member name -> PNG bytes, in the upstream layout and naming."""
    top = f"images_{set_name}" if top is None else top
    members, character_id = {}, 1
    for alphabet, num_characters in alphabets.items():
        for c in range(1, num_characters + 1):
            character = f"{alphabet}/character{c:02d}"
            for d in range(1, 21):
                name = f"{top}/{character}/{character_id:04d}_{d:02d}.png"
                members[name] = png_bytes(ink_mask(set_name, character, d))
            character_id += 1
    return members


def write_zip(path: Path, members: dict[str, bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    # stored, not deflated: a flipped byte then surfaces as a CRC error, as in a damaged file
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def write_folder(parent: Path, members: dict[str, bytes]) -> None:
    for name, data in members.items():
        (parent / name).parent.mkdir(parents=True, exist_ok=True)
        (parent / name).write_bytes(data)


def make_dataset(root: Path, as_zip: bool = True, sets: tuple[str, ...] = ("background",
                                                                          "evaluation")) -> Path:
    """``root/omniglot`` holding the tiny background and evaluation sets; returns that folder."""
    omniglot_dir = root / "omniglot"
    omniglot_dir.mkdir(parents=True, exist_ok=True)
    for set_name in sets:
        members = set_members(set_name, BACKGROUND if set_name == "background" else EVALUATION)
        if as_zip:
            write_zip(omniglot_dir / f"images_{set_name}.zip", members)
        else:
            write_folder(omniglot_dir, members)
    return omniglot_dir


def expected_image(class_name: str, drawing: int) -> np.ndarray:
    """float32 [15, 15] that class ``Alphabet/characterNN[/rotD]`` should hold for drawing d."""
    parts = class_name.split("/")
    character = "/".join(parts[:2])
    degrees = int(parts[2][3:]) if len(parts) == 3 else 0
    ink = ink_mask(SET_OF[character], character, drawing)
    return np.rot90(ink, degrees // 90).astype(np.float32)


def assert_split_pixels(split: omniglot.OmniglotSplit) -> None:
    """Every image is exactly the drawing its label and position say it is."""
    for label, name in enumerate(split.class_names):
        rows = torch.nonzero(split.labels == label).flatten()
        assert rows.tolist() == list(range(20 * label, 20 * label + 20))
        for d, row in enumerate(rows.tolist(), start=1):
            np.testing.assert_array_equal(split.images[row, 0].numpy(), expected_image(name, d))


@pytest.fixture
def tiny_root(tmp_path: Path) -> Path:
    make_dataset(tmp_path)
    return tmp_path


def one_line_error(excinfo: pytest.ExceptionInfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


# --------------------------------------------------------------------------- data root


def test_find_omniglot_dir_accepts_data_root_or_omniglot_folder(tiny_root, tmp_path):
    assert find_omniglot_dir(tiny_root) == tiny_root / "omniglot"
    assert find_omniglot_dir(tiny_root / "omniglot") == tiny_root / "omniglot"
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError) as excinfo:
        find_omniglot_dir(empty)
    assert f"no Omniglot data under {empty}: expected {empty}/omniglot/images_background.zip" \
        in one_line_error(excinfo)


def test_missing_set_is_named_with_both_accepted_forms(tmp_path):
    make_dataset(tmp_path, sets=("background",))
    # Lake's train split needs only the background set...
    assert load_omniglot(tmp_path, "train", "lake", expected_characters=None,
                         num_val_alphabets=1).num_classes == 3
    # ...Vinyals pools both, so the missing evaluation set is reported
    with pytest.raises(FileNotFoundError) as excinfo:
        load_omniglot(tmp_path, "train", **TINY)
    omniglot_dir = tmp_path / "omniglot"
    assert one_line_error(excinfo).startswith(
        f"Omniglot evaluation set not found: expected {omniglot_dir}/images_evaluation.zip or "
        f"an unpacked {omniglot_dir}/images_evaluation/ folder")


# --------------------------------------------------------------------------- download


def test_download_omniglot_from_a_local_mirror_then_load(tmp_path, local_server, monkeypatch):
    mirror = make_dataset(local_server.folder.parent / "mirror")  # zips as upstream serves them
    for name in ("background", "evaluation"):
        (local_server.folder / f"images_{name}.zip").write_bytes(
            (mirror / f"images_{name}.zip").read_bytes())
    monkeypatch.setattr(omniglot_files, "OMNIGLOT_URLS", {
        name: local_server.url_of(f"images_{name}.zip") for name in omniglot_files.OMNIGLOT_SETS})
    monkeypatch.setattr(omniglot_files, "OMNIGLOT_MD5", {
        name: hashlib.md5((mirror / f"images_{name}.zip").read_bytes()).hexdigest()
        for name in omniglot_files.DEFAULT_DOWNLOAD_SETS})  # the sets fetched by default
    folder = download_omniglot(tmp_path / "root")
    assert sorted(p.name for p in folder.iterdir()) == ["images_background.zip",
                                                       "images_evaluation.zip"]
    assert load_omniglot(tmp_path / "root", "train", cache_dir=tmp_path / "cache",
                         **TINY).num_classes == 3 * 4  # 5 Vinyals characters, 2 of them val
    assert download_omniglot(tmp_path / "root") == folder  # both kept: their md5s match
    assert len(local_server.requests) == 2


def test_download_omniglot_refuses_a_zip_that_is_not_upstream(tmp_path, local_server):
    """A re-zipped copy loads (structure is checked) but download_omniglot will not
    vouch for it, nor replace it."""
    omniglot_dir = make_dataset(tmp_path, sets=("background",))
    zip_path = omniglot_dir / "images_background.zip"
    before = zip_path.read_bytes()
    with pytest.raises(ValueError) as excinfo:
        download_omniglot(tmp_path, sets=["background"])
    assert one_line_error(excinfo) == (
        f"{zip_path} has md5 {hashlib.md5(before).hexdigest()}, expected "
        f"{OMNIGLOT_MD5['background']}: it is not the pinned upstream file and was left "
        f"untouched; move it away to download again")
    assert zip_path.read_bytes() == before
    assert load_omniglot_set(tmp_path, "background", expected_characters=None,
                             cache_dir=tmp_path / "cache").num_characters == 5


# --------------------------------------------------------------------------- bad archives


def test_not_a_zip_is_reported_with_the_fix(tmp_path):
    omniglot_dir = tmp_path / "omniglot"
    omniglot_dir.mkdir()
    (omniglot_dir / "images_background.zip").write_text("<html>404 Not Found</html>")
    with pytest.raises(ValueError) as excinfo:
        load_omniglot_set(tmp_path, "background", expected_characters=None)
    zip_path = omniglot_dir / "images_background.zip"
    assert one_line_error(excinfo) == (
        f"{zip_path} is not a valid zip archive (corrupt or truncated): delete it and download "
        f"again, or unpack a good copy to {omniglot_dir}/images_background/")


def test_truncated_zip_is_reported(tiny_root):
    zip_path = tiny_root / "omniglot" / "images_background.zip"
    data = zip_path.read_bytes()
    zip_path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError) as excinfo:
        load_omniglot_set(tiny_root, "background", expected_characters=None)
    assert one_line_error(excinfo).startswith(
        f"{zip_path} is not a valid zip archive (corrupt or truncated): delete it")


def test_damaged_member_is_reported_as_corrupt_zip(tiny_root):
    zip_path = tiny_root / "omniglot" / "images_background.zip"
    data = bytearray(zip_path.read_bytes())
    data[len(data) // 3] ^= 0xFF  # inside some stored PNG: the central directory still opens
    zip_path.write_bytes(bytes(data))
    with pytest.raises(ValueError) as excinfo:
        load_omniglot_set(tiny_root, "background", expected_characters=None)
    message = one_line_error(excinfo)
    assert message.startswith(f"{zip_path} is not a valid zip archive (corrupt or truncated) (")
    assert ".png: " in message and "delete it and download again" in message


def test_zip_without_top_folder_is_reported(tmp_path):
    members = set_members("background", BACKGROUND, top="omniglot/images_background")
    write_zip(tmp_path / "omniglot" / "images_background.zip", members)
    with pytest.raises(ValueError) as excinfo:
        load_omniglot_set(tmp_path, "background", expected_characters=None)
    assert one_line_error(excinfo) == (
        f"{tmp_path}/omniglot/images_background.zip has no images_background/ top folder: "
        f"expected images_background/<Alphabet>/<character>/<drawing>.png, found omniglot/")


def test_png_at_wrong_depth_is_reported(tmp_path):
    members = set_members("background", BACKGROUND)
    members["images_background/Alpha/stray.png"] = png_bytes(ink_mask("background", "x", 1))
    write_zip(tmp_path / "omniglot" / "images_background.zip", members)
    with pytest.raises(ValueError, match=r"images_background/Alpha/stray\.png is not at "
                                         r"images_background/<Alphabet>/<character>/<drawing>"):
        load_omniglot_set(tmp_path, "background", expected_characters=None)


def test_top_folder_without_alphabets_is_reported(tmp_path):
    write_zip(tmp_path / "omniglot" / "images_background.zip",
              {"images_background/README.txt": b"nothing here"})
    with pytest.raises(ValueError) as excinfo:
        load_omniglot_set(tmp_path, "background", expected_characters=None)
    assert "no alphabets found under images_background/: expected images_background/<Alphabet>/" \
        in one_line_error(excinfo)


@pytest.mark.parametrize("as_zip", [True, False], ids=["zip", "folder"])
def test_character_with_wrong_drawing_count_is_reported(tmp_path, as_zip):
    members = set_members("background", BACKGROUND)
    del members[next(name for name in members if "Beta/character02/" in name)]
    if as_zip:
        write_zip(tmp_path / "omniglot" / "images_background.zip", members)
        location = tmp_path / "omniglot" / "images_background.zip"
    else:
        write_folder(tmp_path / "omniglot", members)
        location = tmp_path / "omniglot" / "images_background"
    with pytest.raises(ValueError) as excinfo:
        load_omniglot_set(tmp_path, "background", expected_characters=None)
    assert one_line_error(excinfo) == (
        f"{location}: Beta/character02 has 19 drawings, expected 20")


def test_unreadable_png_is_reported(tmp_path):
    members = set_members("background", BACKGROUND)
    broken = next(name for name in members if "Alpha/character02/" in name)
    members[broken] = b"GIF89a definitely not a png"
    write_zip(tmp_path / "omniglot" / "images_background.zip", members)
    with pytest.raises(ValueError) as excinfo:
        load_omniglot_set(tmp_path, "background", expected_characters=None)
    assert one_line_error(excinfo).startswith(
        f"{tmp_path}/omniglot/images_background.zip: {broken} is not a readable PNG (")


def test_full_size_character_counts_are_checked_by_default(tiny_root):
    with pytest.raises(ValueError) as excinfo:
        load_omniglot_set(tiny_root, "background")
    assert one_line_error(excinfo) == (
        f"{tiny_root}/omniglot/images_background.zip has 5 characters in 2 alphabets, expected "
        f"964 for the full Omniglot background set (incomplete copy? pass "
        f"expected_characters=None to accept a partial set)")
    with pytest.raises(ValueError, match="has 3 characters in 2 alphabets, expected 4 "):
        load_omniglot_set(tiny_root, "evaluation", expected_characters={"evaluation": 4})
    assert load_omniglot_set(tiny_root, "evaluation",
                             expected_characters={"evaluation": 3}).num_characters == 3


@pytest.mark.parametrize(("kwargs", "message"), [
    (dict(split="validation"), "split='validation': expected one of 'train', 'val', 'test'"),
    (dict(protocol="omniglot"), "protocol='omniglot': expected one of 'vinyals', 'lake'"),
    (dict(image_size=0), "image_size=0: expected a positive integer"),
    (dict(image_size=28.0), "image_size=28.0: expected a positive integer"),
    (dict(protocol="lake", split="val", num_val_alphabets=2),
     "num_val_alphabets=2: expected 1..1 to leave training alphabets among the 2 background "
     "alphabets"),
    (dict(num_train_characters=8),
     "num_train_characters=8: expected 1..7 to leave test characters among the 8 found"),
    (dict(num_val_characters=5),
     "num_val_characters=5: expected 1..4 (val is carved from the 5 training characters, "
     "leaving some to train on)"),
    (dict(background="small1"),
     "background='small1': expected 'full' with protocol='vinyals' (the minimal background "
     "sets are for protocol='lake')"),
    (dict(protocol="lake", background="small3"),
     "background='small3': expected one of 'full', 'small1', 'small2'"),
])
def test_bad_arguments_are_reported(tiny_root, kwargs, message):
    arguments = {**TINY, **kwargs}
    with pytest.raises(ValueError) as excinfo:
        load_omniglot(tiny_root, **arguments)
    assert one_line_error(excinfo) == message


# --------------------------------------------------------------------------- decode and cache


def test_decoded_set_is_sorted_inverted_and_exact(tiny_root):
    data = load_omniglot_set(tiny_root, "background", image_size=PNG_SIZE,
                             expected_characters=None)
    assert data.character_names == POOLED[:5]
    assert data.alphabets == ["Alpha"] * 3 + ["Beta"] * 2
    assert data.images.dtype == np.uint8 and data.images.shape == (100, PNG_SIZE, PNG_SIZE)
    assert data.character_index.tolist() == np.repeat(np.arange(5), 20).tolist()
    for c, name in enumerate(POOLED[:5]):
        for d in range(1, 21):
            expected = ink_mask("background", name, d).astype(np.uint8) * 255  # strokes bright
            np.testing.assert_array_equal(data.images[20 * c + d - 1], expected)


def test_resized_images_are_in_unit_range_with_bright_strokes(tiny_root):
    split = load_omniglot(tiny_root, "test", **TINY)
    assert split.images.dtype == torch.float32 and split.images.shape == (240, 1, 28, 28)
    assert split.images.min() >= 0.0 and split.images.max() <= 1.0
    assert split.images.max() > 0.9  # strokes bright after inversion...
    assert split.images.mean() < 0.3  # ...on a dark background
    # bottom-right corner is far from any stroke in every (unrotated) drawing: exactly 0
    unrotated = split.images[split.labels % 4 == 0]
    assert torch.count_nonzero(unrotated[:, 0, -3:, -3:]) == 0


def test_second_load_reads_the_cache_without_decoding(tiny_root, monkeypatch):
    first = load_omniglot_set(tiny_root, "background", expected_characters=None)
    cache_file = tiny_root / "omniglot" / "cache" / "omniglot_background_28px.npz"
    assert cache_file.is_file()
    assert [p.name for p in cache_file.parent.iterdir()] == [cache_file.name]  # no temp files

    def no_decoding(png: bytes, image_size: int) -> np.ndarray:
        raise AssertionError("decoded a PNG although a valid cache exists")

    monkeypatch.setattr(omniglot, "_decode_drawing", no_decoding)
    second = load_omniglot_set(tiny_root, "background", expected_characters=None)
    np.testing.assert_array_equal(second.images, first.images)
    assert second.character_names == first.character_names
    # the cache is keyed by image size: another size must decode (and hits the guard)
    with pytest.raises(AssertionError, match="decoded a PNG"):
        load_omniglot_set(tiny_root, "background", image_size=20, expected_characters=None)


def test_cache_is_rebuilt_when_source_changes_or_cache_is_corrupt(tiny_root, monkeypatch):
    calls = []
    real_decode = omniglot._decode_drawing
    monkeypatch.setattr(omniglot, "_decode_drawing",
                        lambda png, size: calls.append(1) or real_decode(png, size))
    load_omniglot_set(tiny_root, "evaluation", image_size=PNG_SIZE, expected_characters=None)
    assert len(calls) == 60

    # same member names, one drawing changed: the cached pixels would be stale
    members = set_members("evaluation", EVALUATION)
    changed = next(name for name in members if "Delta/character01/" in name)
    members[changed] = png_bytes(np.ones((PNG_SIZE, PNG_SIZE), dtype=bool))
    write_zip(tiny_root / "omniglot" / "images_evaluation.zip", members)
    data = load_omniglot_set(tiny_root, "evaluation", image_size=PNG_SIZE,
                             expected_characters=None)
    assert len(calls) == 120
    assert (data.images[0] == 255).all()  # Delta/character01 drawing 01 is now all ink

    cache_file = tiny_root / "omniglot" / "cache" / f"omniglot_evaluation_{PNG_SIZE}px.npz"
    cache_file.write_bytes(cache_file.read_bytes()[:100])
    again = load_omniglot_set(tiny_root, "evaluation", image_size=PNG_SIZE,
                              expected_characters=None)
    assert len(calls) == 180
    np.testing.assert_array_equal(again.images, data.images)


def test_cache_dir_argument_and_fallback_when_data_folder_is_not_writable(tiny_root, tmp_path,
                                                                          monkeypatch):
    chosen = tmp_path / "my_cache"
    load_omniglot_set(tiny_root, "background", cache_dir=chosen, expected_characters=None)
    assert (chosen / "omniglot_background_28px.npz").is_file()
    assert not (tiny_root / "omniglot" / "cache").exists()

    # a file where the cache folder would go makes <omniglot>/cache unusable (works as root too,
    # unlike chmod)
    (tiny_root / "omniglot" / "cache").write_text("in the way")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    load_omniglot_set(tiny_root, "background", expected_characters=None)
    fallback = tmp_path / "home" / ".cache" / "attnmeta" / "omniglot_background_28px.npz"
    assert fallback.is_file()


def test_read_only_data_folder_gets_no_cache_folder_even_as_root(tiny_root, tmp_path,
                                                                 monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    omniglot_dir = tiny_root / "omniglot"
    omniglot_dir.chmod(0o555)  # how shared copies are marked; root could still write into it
    try:
        load_omniglot_set(tiny_root, "background", expected_characters=None)
        assert not (omniglot_dir / "cache").exists()
    finally:
        omniglot_dir.chmod(0o755)
    assert (tmp_path / "home" / ".cache" / "attnmeta" / "omniglot_background_28px.npz").is_file()


def test_unpacked_folders_load_the_same_as_zips(tmp_path):
    zipped = load_omniglot(make_dataset(tmp_path / "z").parent, "train", **TINY)
    unpacked = load_omniglot(make_dataset(tmp_path / "f", as_zip=False).parent, "train", **TINY)
    assert not list((tmp_path / "f" / "omniglot").glob("*.zip"))
    assert unpacked.class_names == zipped.class_names
    assert torch.equal(unpacked.images, zipped.images)
    assert torch.equal(unpacked.labels, zipped.labels)


# --------------------------------------------------------------------------- splits


def test_vinyals_splits_pool_sets_in_documented_order_with_rotations(tiny_root):
    train = load_omniglot(tiny_root, "train", image_size=PNG_SIZE, **TINY)
    val = load_omniglot(tiny_root, "val", image_size=PNG_SIZE, **TINY)
    test = load_omniglot(tiny_root, "test", image_size=PNG_SIZE, **TINY)
    def rotated(names: list[str]) -> list[str]:
        return [f"{n}/rot{d}" for n in names for d in (0, 90, 180, 270)]

    assert train.class_names == rotated(POOLED[:3])
    assert val.class_names == rotated(POOLED[3:5])  # last 2 of the 5 training characters
    assert test.class_names == rotated(POOLED[5:])
    for split, classes in ((train, 12), (val, 8), (test, 12)):
        assert split.num_classes == classes and len(split) == 20 * classes
        assert split.labels.dtype == torch.int64
        assert torch.equal(split.labels, torch.arange(classes).repeat_interleave(20))
        assert split.images.shape == (20 * classes, 1, PNG_SIZE, PNG_SIZE)
        assert_split_pixels(split)  # includes the rotation of each copy


def test_vinyals_test_split_can_straddle_both_sets(tiny_root):
    # 4 training characters: test starts inside background (Beta/character01) and runs on
    split = load_omniglot(tiny_root, "test", image_size=PNG_SIZE, rotations=False,
                          expected_characters=None, num_train_characters=4,
                          num_val_characters=1)
    assert split.class_names == POOLED[4:]
    assert_split_pixels(split)


def characters_of(split: omniglot.OmniglotSplit) -> set[str]:
    """``Alphabet/characterNN`` of every class, rotations folded together."""
    return {"/".join(name.split("/")[:2]) for name in split.class_names}


def test_vinyals_validation_split_shares_no_character_with_training(tiny_root):
    splits = {name: load_omniglot(tiny_root, name, image_size=PNG_SIZE, **TINY)
              for name in ("train", "val", "test")}
    train, val, test = (characters_of(splits[name]) for name in ("train", "val", "test"))
    assert train and val and test
    assert not train & val and not train & test and not val & test
    assert train | val | test == set(POOLED)


def test_lake_protocol_is_background_vs_evaluation_without_rotation(tiny_root):
    train = load_omniglot(tiny_root, "train", "lake", image_size=PNG_SIZE,
                          expected_characters=None, num_val_alphabets=1)
    val = load_omniglot(tiny_root, "val", "lake", image_size=PNG_SIZE,
                        expected_characters=None, num_val_alphabets=1)
    test = load_omniglot(tiny_root, "test", "lake", image_size=PNG_SIZE, expected_characters=None)
    # val: the last background alphabet by name (Beta); train: the others (Alpha)
    assert train.class_names == POOLED[:3] and val.class_names == POOLED[3:5]
    assert test.class_names == POOLED[5:]
    assert not set(train.class_alphabets) & set(val.class_alphabets)
    assert train.protocol == "lake" and test.split == "test" and val.split == "val"
    assert_split_pixels(train)
    assert_split_pixels(val)
    assert_split_pixels(test)
    rotated = load_omniglot(tiny_root, "test", "lake", rotations=True, expected_characters=None)
    assert rotated.num_classes == 4 * 3


# a minimal background set, as its own zip beside the full ones (unsorted on purpose)
SMALL = {"Lambda": 1, "Kappa": 2}


def test_lake_small_background_is_carved_from_its_own_set_holding_out_one_alphabet(tiny_root):
    write_zip(tiny_root / "omniglot" / "images_background_small1.zip",
              set_members("background_small1", SMALL))
    splits = {name: load_omniglot(tiny_root, name, "lake", image_size=PNG_SIZE,
                                  expected_characters=None, background="small1")
              for name in ("train", "val", "test")}
    # default for a small set: 1 alphabet held out, the last by name (Lambda)
    assert splits["train"].class_names == ["Kappa/character01", "Kappa/character02"]
    assert splits["val"].class_names == ["Lambda/character01"]
    assert not set(splits["train"].class_alphabets) & set(splits["val"].class_alphabets)
    assert splits["test"].class_names == POOLED[5:]  # still the evaluation set
    # the full background's default holds out 5 alphabets, too many for its 2
    with pytest.raises(ValueError, match=r"^num_val_alphabets=5: expected 1\.\.1 "):
        load_omniglot(tiny_root, "val", "lake", expected_characters=None)
    # small2 is another zip: absent here, and named as such
    with pytest.raises(FileNotFoundError, match="Omniglot background_small2 set not found"):
        load_omniglot(tiny_root, "train", "lake", expected_characters=None,
                      background="small2")


def test_config_background_key_reaches_the_loader(monkeypatch):
    from attnmeta.runs.config import config_from_dict

    calls = []
    monkeypatch.setattr(omniglot, "load_omniglot", lambda *args, **kwargs: calls.append(kwargs))
    config = config_from_dict({"data": {"dataset": "omniglot", "protocol": "lake",
                                        "background": "small2"}})
    omniglot._load(config, "val", None)
    assert calls == [dict(split="val", protocol="lake", image_size=28, background="small2",
                          rotations=None)]


@pytest.mark.parametrize("rotations, split, expected", [
    ("train", "train", True), ("train", "val", None), ("train", "test", None),
    ("protocol", "train", None)])
def test_config_rotations_key_rotates_only_the_training_split(monkeypatch, rotations, split,
                                                              expected):
    from attnmeta.runs.config import config_from_dict

    calls = []
    monkeypatch.setattr(omniglot, "load_omniglot", lambda *args, **kwargs: calls.append(kwargs))
    config = config_from_dict({"data": {"dataset": "omniglot", "protocol": "lake",
                                        "rotations": rotations}})
    omniglot._load(config, split, None)
    assert calls[0]["rotations"] is expected


def test_config_rotations_train_is_refused_with_vinyals():
    from attnmeta.runs.config import config_from_dict

    with pytest.raises(ValueError, match=r"data\.rotations.*'protocol' unless data\.protocol="):
        config_from_dict({"data": {"dataset": "omniglot", "rotations": "train"}})


def test_lake_rotated_training_classes_keep_their_alphabet(tiny_root):
    plain = load_omniglot(tiny_root, "train", "lake", expected_characters=None,
                          num_val_alphabets=1)
    rotated = load_omniglot(tiny_root, "train", "lake", expected_characters=None,
                            num_val_alphabets=1, rotations=True)
    assert rotated.num_classes == 4 * plain.num_classes
    # within-alphabet episodes group rotated classes with their character's alphabet
    assert rotated.class_alphabets == [a for a in plain.class_alphabets for _ in range(4)]
    first = rotated.images[rotated.labels == 1][0, 0]  # class 1: character 0 at 90 degrees
    assert torch.equal(first, torch.rot90(plain.images[plain.labels == 0][0, 0], 1, (-2, -1)))


def test_omniglot_episodes_draw_from_split_classes(tiny_root):
    split = load_omniglot(tiny_root, "train", **TINY)
    episodes = omniglot_episodes(split, n_way=3, k_shot=2, q_query=4, num_episodes=7, seed=5)
    assert isinstance(episodes, FewShotEpisodes) and len(episodes) == 7
    episode = episodes[6]
    assert episode.support_x.shape == (6, 1, 28, 28) and episode.query_x.shape == (12, 1, 28, 28)
    assert torch.equal(episode.query_y, torch.arange(3).repeat_interleave(4))
    support, query = episodes.episode_indices(6)
    for way in range(3):
        # support and query of one way come from one original class
        original = split.labels[np.concatenate([support[way], query[way]])]
        assert (original == original[0]).all()
    assert torch.equal(episode.support_x, split.images[support.reshape(-1)])
    assert torch.equal(episodes[6].query_x, episode.query_x)  # seeded: same episode again
    with pytest.raises(ValueError, match="exceeds the 20 examples"):
        omniglot_episodes(split, n_way=5, k_shot=5, q_query=16)


# --------------------------------------------------------------------------- real data


def real_data_root() -> Path | None:
    """``$ATTNMETA_DATA`` or ``<repo>/../shared/data``, if it holds an ``omniglot`` folder."""
    from_env = os.environ.get(DATA_ROOT_ENV_VAR)
    candidates = [Path(from_env)] if from_env else []
    candidates.append(Path(__file__).resolve().parents[2].parent / "shared" / "data")
    return next((c for c in candidates if (c / "omniglot").is_dir()), None)


@pytest.fixture(scope="session")
def real_vinyals(tmp_path_factory):
    root = real_data_root()
    if root is None:
        pytest.skip(f"real Omniglot not found: set {DATA_ROOT_ENV_VAR} to a folder holding "
                    f"omniglot/ (or provide <repo>/../shared/data/omniglot)")
    cache_dir = tmp_path_factory.mktemp("omniglot_cache")
    train = load_omniglot(root, "train", cache_dir=cache_dir)
    test = load_omniglot(root, "test", cache_dir=cache_dir)
    return root, cache_dir, train, test


def test_real_omniglot_vinyals_protocol(real_vinyals, monkeypatch):
    root, cache_dir, train, test = real_vinyals
    val = load_omniglot(root, "val", cache_dir=cache_dir)
    assert train.num_classes == 1100 * 4 and val.num_classes == 100 * 4
    assert test.num_classes == 423 * 4
    assert not characters_of(train) & characters_of(val)  # model selection is held out
    assert len(characters_of(train) | characters_of(val) | characters_of(test)) == 1623
    for split in (train, test):
        assert split.images.shape == (split.num_classes * 20, 1, 28, 28)
        assert split.images.dtype == torch.float32
        assert split.images.min() >= 0.0 and split.images.max() <= 1.0
        assert split.images.mean() < 0.5  # strokes bright on a dark background
        assert torch.equal(split.labels, torch.arange(split.num_classes).repeat_interleave(20))
    assert train.class_names[0] == "Alphabet_of_the_Magi/character01/rot0"
    # rotation classes of a character are its rot0 images turned by 90 degrees
    assert torch.equal(train.images[20:40], torch.rot90(train.images[:20], 1, dims=(-2, -1)))
    # a second load is served from the cache
    assert sorted(p.name for p in cache_dir.iterdir()) == [
        "omniglot_background_28px.npz", "omniglot_evaluation_28px.npz"]
    monkeypatch.setattr(omniglot, "_decode_drawing", lambda *a: pytest.fail("decoded again"))
    background = load_omniglot_set(root, "background", cache_dir=cache_dir)
    assert background.num_characters == 964 and len(set(background.alphabets)) == 30
    evaluation = load_omniglot_set(root, "evaluation", cache_dir=cache_dir)
    assert evaluation.num_characters == 659 and len(set(evaluation.alphabets)) == 20


def test_real_omniglot_lake_protocol_and_within_alphabet_episodes(real_vinyals):
    root, cache_dir, _, _ = real_vinyals
    train, val, test = (load_omniglot(root, name, "lake", cache_dir=cache_dir)
                        for name in ("train", "val", "test"))
    assert (train.num_classes, val.num_classes, test.num_classes) == (813, 151, 659)
    assert sorted(set(val.class_alphabets)) == [
        "Ojibwe_(Canadian_Aboriginal_Syllabics)", "Sanskrit", "Syriac_(Estrangelo)", "Tagalog",
        "Tifinagh"]
    background = set(train.class_alphabets) | set(val.class_alphabets)
    assert len(background) == 30 and not background & set(test.class_alphabets)
    episodes = FewShotEpisodes(test.images, test.labels.tolist(), n_way=20, k_shot=1,
                               q_query=1, num_episodes=50, seed=0,
                               class_groups=test.class_alphabets)
    for index in range(len(episodes)):
        support, query = episodes.episode_indices(index)
        classes = test.labels[support[:, 0]].tolist()
        alphabets = {test.class_alphabets[c] for c in classes}
        assert len(set(classes)) == 20 and len(alphabets) == 1  # one evaluation alphabet
        assert not alphabets & background and "rot" not in test.class_names[classes[0]]


@pytest.mark.parametrize(("background", "train_val", "val_alphabet"), [
    ("small1", (110, 26), "Latin"), ("small2", (139, 17), "Tagalog")])
def test_real_omniglot_lake_protocol_on_a_minimal_background_set(real_vinyals, background,
                                                                 train_val, val_alphabet):
    """Lake et al.'s 5-alphabet background sets: 4 alphabets train, the last validates."""
    root, cache_dir, _, _ = real_vinyals
    omniglot_dir = find_omniglot_dir(root)
    if not (omniglot_dir / f"images_background_{background}.zip").is_file() \
            and not (omniglot_dir / f"images_background_{background}").is_dir():
        pytest.skip(f"images_background_{background}.zip not in {omniglot_dir}")
    train, val, test = (load_omniglot(root, name, "lake", cache_dir=cache_dir,
                                      background=background)
                        for name in ("train", "val", "test"))
    assert (train.num_classes, val.num_classes) == train_val
    assert train.num_classes + val.num_classes == \
        omniglot_files.EXPECTED_CHARACTERS[f"background_{background}"]
    assert set(val.class_alphabets) == {val_alphabet}
    assert len(set(train.class_alphabets)) == 4
    assert not set(train.class_alphabets) & set(val.class_alphabets)
    assert test.num_classes == 659  # the evaluation set, whatever the background
    assert not (set(train.class_alphabets) | set(val.class_alphabets)) \
        & set(test.class_alphabets)
