"""attnmeta.tasks.omniglot_files: where Omniglot's files are, the pinned download, the
cache folder, and what a complete copy holds (decoding is tested in test_omniglot.py)."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import pytest

from attnmeta.tasks import omniglot_files
from attnmeta.tasks.omniglot_files import (DRAWINGS_PER_CHARACTER, EXPECTED_CHARACTERS,
                                           OMNIGLOT_MD5, OMNIGLOT_URLS, default_cache_dir,
                                           download_omniglot, find_omniglot_dir)
from support import REAL_DATA

# alphabet -> characters, in a deliberately unsorted order
ALPHABETS = {"Beta": 2, "Alpha": 1}


def write_set_zip(path: Path, set_name: str = "background", drawings: int = 20,
                  alphabets: dict[str, int] = ALPHABETS) -> Path:
    """A zip in the upstream layout whose PNG members are placeholders (listing never
    decodes them), plus the macOS litter that re-zipped copies carry."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("__MACOSX/._images_background", b"fork")
        for alphabet, characters in alphabets.items():
            for c in range(characters, 0, -1):  # unsorted on purpose
                for d in range(drawings, 0, -1):
                    archive.writestr(f"images_{set_name}/{alphabet}/character{c:02d}/"
                                     f"{c:04d}_{d:02d}.png", b"png")
                archive.writestr(f"images_{set_name}/{alphabet}/character{c:02d}/.DS_Store", b"")
    return path


def test_download_omniglot_fetches_the_pinned_upstream_zips(tmp_path, monkeypatch):
    fetched = []
    monkeypatch.setattr(omniglot_files, "download_files",
                        lambda folder, urls, hashes: fetched.append((folder, urls, hashes))
                        or folder)
    assert download_omniglot(tmp_path) == tmp_path / "omniglot"
    upstream = "https://raw.githubusercontent.com/brendenlake/omniglot/master/python"
    assert fetched == [(tmp_path / "omniglot",
                        {"images_background.zip": f"{upstream}/images_background.zip",
                         "images_evaluation.zip": f"{upstream}/images_evaluation.zip"},
                        {"images_background.zip": "md5:68d2efa1b9178cc56df9314c21c6e718",
                         "images_evaluation.zip": "md5:6b91aef0f799c5bb55b94e3f2daec811"})]
    assert OMNIGLOT_URLS["background"].endswith("/python/images_background.zip")
    assert OMNIGLOT_MD5["background"] == "68d2efa1b9178cc56df9314c21c6e718"
    with pytest.raises(ValueError, match=r"set='small1': expected one of 'background', "):
        download_omniglot(tmp_path, sets=["small1"])
    assert len(fetched) == 1


def test_download_of_one_set_fetches_only_its_zip(tmp_path, monkeypatch):
    fetched = []
    monkeypatch.setattr(omniglot_files, "download_files",
                        lambda folder, urls, hashes: fetched.append((urls, hashes)) or folder)
    download_omniglot(tmp_path, sets=("evaluation",))
    assert fetched == [({"images_evaluation.zip": OMNIGLOT_URLS["evaluation"]},
                        {"images_evaluation.zip": f"md5:{OMNIGLOT_MD5['evaluation']}"})]


def test_omniglot_folder_is_the_data_roots_or_the_root_itself(tmp_path):
    write_set_zip(tmp_path / "root" / "omniglot" / "images_background.zip")
    assert find_omniglot_dir(tmp_path / "root") == tmp_path / "root" / "omniglot"
    assert find_omniglot_dir(tmp_path / "root" / "omniglot") == tmp_path / "root" / "omniglot"
    unpacked = tmp_path / "unpacked"
    (unpacked / "images_evaluation").mkdir(parents=True)  # an unpacked set counts too
    assert find_omniglot_dir(unpacked) == unpacked
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError) as error:
        find_omniglot_dir(empty)
    assert str(error.value) == (
        f"no Omniglot data under {empty}: expected {empty}/omniglot/images_background.zip "
        f"(or an unpacked images_background/ folder); `attnmeta download omniglot "
        f"--data-root {empty}` fetches it")


def test_cache_goes_beside_writable_data_and_home_otherwise(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    writable = tmp_path / "writable"
    writable.mkdir()
    assert default_cache_dir(writable) == writable / "cache"
    assert (writable / "cache").is_dir()
    read_only = tmp_path / "read_only"
    read_only.mkdir()
    read_only.chmod(0o555)  # even root, who passes os.access, must not write here
    try:
        assert default_cache_dir(read_only) == tmp_path / "home" / ".cache" / "attnmeta"
        assert not (read_only / "cache").exists()
    finally:
        read_only.chmod(0o755)


def test_listing_sorts_characters_and_drawings_and_skips_litter(tmp_path):
    omniglot_dir = tmp_path / "omniglot"
    write_set_zip(omniglot_dir / "images_background.zip")
    listing = omniglot_files._list_set(omniglot_dir, "background")
    assert listing.is_zip and listing.location == omniglot_dir / "images_background.zip"
    assert [(a, c) for a, c, _ in listing.characters] == [
        ("Alpha", "character01"), ("Beta", "character01"), ("Beta", "character02")]
    first = listing.characters[0][2]
    assert first == [f"images_background/Alpha/character01/0001_{d:02d}.png"
                     for d in range(1, 21)]
    assert len(listing.stamps) == 3 * DRAWINGS_PER_CHARACTER  # one per PNG, none for litter
    omniglot_files._check_structure(listing, {"background": 3})
    # an unpacked folder wins over the zip, with the same characters
    with zipfile.ZipFile(omniglot_dir / "images_background.zip") as archive:
        archive.extractall(omniglot_dir)
    unpacked = omniglot_files._list_set(omniglot_dir, "background")
    assert not unpacked.is_zip
    assert [(a, c, [Path(p).name for p in d]) for a, c, d in unpacked.characters] == [
        (a, c, [Path(p).name for p in d]) for a, c, d in listing.characters]


def test_structure_check_names_the_short_character_and_the_incomplete_set(tmp_path):
    omniglot_dir = tmp_path / "omniglot"
    write_set_zip(omniglot_dir / "images_evaluation.zip", "evaluation", drawings=19)
    listing = omniglot_files._list_set(omniglot_dir, "evaluation")
    with pytest.raises(ValueError, match=r"Alpha/character01 has 19 drawings, expected 20"):
        omniglot_files._check_structure(listing, None)
    write_set_zip(omniglot_dir / "images_background.zip")
    listing = omniglot_files._list_set(omniglot_dir, "background")
    with pytest.raises(ValueError, match=r"has 3 characters in 2 alphabets, expected 964 for "
                                         r"the full Omniglot background set"):
        omniglot_files._check_structure(listing, EXPECTED_CHARACTERS)
    omniglot_files._check_structure(listing, None)  # a partial set, accepted when asked
    with pytest.raises(FileNotFoundError, match=r"Omniglot evaluation set not found"):
        omniglot_files._list_set(tmp_path, "evaluation")


def test_real_omniglot_holds_964_and_659_characters_in_30_and_20_alphabets():
    """Lake et al. (2015): 1623 characters of 50 alphabets, 20 drawings each."""
    omniglot_dir = REAL_DATA / "omniglot"
    if not (omniglot_dir / "images_background.zip").is_file():
        pytest.skip(f"{omniglot_dir} not found (set ATTNMETA_DATA)")
    assert EXPECTED_CHARACTERS == {"background": 964, "evaluation": 659,
                                   "background_small1": 136, "background_small2": 156}
    alphabets = {}
    for set_name in ("background", "evaluation"):
        listing = omniglot_files._list_set(omniglot_dir, set_name)
        omniglot_files._check_structure(listing, EXPECTED_CHARACTERS)
        alphabets[set_name] = {alphabet for alphabet, _, _ in listing.characters}
        assert len(listing.characters) == EXPECTED_CHARACTERS[set_name]
        assert all(len(d) == DRAWINGS_PER_CHARACTER for _, _, d in listing.characters)
    assert {k: len(v) for k, v in alphabets.items()} == {"background": 30, "evaluation": 20}
    assert not alphabets["background"] & alphabets["evaluation"]
    assert os.path.basename(str(find_omniglot_dir(REAL_DATA))) == "omniglot"
