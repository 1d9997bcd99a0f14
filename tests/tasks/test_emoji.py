"""The cross-style emoji benchmark: class split, images, cross-style episodes (real data,
skipped where absent), and the download's unpacking (a fake package from a local server)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

import pytest
import torch
from PIL import Image

from attnmeta.runs.build import DATASETS, load_split, make_episodes
from attnmeta.runs.config import config_from_dict
from attnmeta.tasks import LabelledSplit
from attnmeta.tasks import emoji as emoji_module
from attnmeta.tasks.data_root import DATA_ROOT_ENV_VAR
from attnmeta.tasks.emoji import (EMOJI_SPLITS, SKIN_TONES, cross_style_episodes, download_emoji,
                                  emoji_class_split, emoji_subcategory_split, find_emoji_dir,
                                  load_emoji, read_emoji)

REAL_DATA = Path(os.environ.get(DATA_ROOT_ENV_VAR) or
                 Path(__file__).resolve().parents[3] / "shared" / "data")
needs_emoji = pytest.mark.skipif(
    not (REAL_DATA / "emoji" / "emoji.json").is_file(),
    reason=f"emoji data (emoji.json, google/, twitter/) not found under {REAL_DATA}/emoji "
           f"(set {DATA_ROOT_ENV_VAR})")

# the fixed class split of emoji-data 16.0.0 (module docstring); changes only with the rule
CLASSES = {"train": 1215, "val": 287, "test": 404}
SUBCATEGORIES = {"train": 61, "val": 17, "test": 20}
VARIANT_CLASSES = {"train": 123, "val": 100, "test": 100}


def one_line(excinfo: pytest.ExceptionInfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


@pytest.fixture(scope="module")
def test_splits():
    """The test classes in each style, with tone variants (each PNG decoded once)."""
    return {style: load_emoji(REAL_DATA, "test", style, variants=True)
            for style in ("google", "twitter")}


# --------------------------------------------------------------------------- class split


@needs_emoji
def test_class_split_is_fixed_disjoint_and_by_subcategory():
    classes, listed = read_emoji(find_emoji_dir(REAL_DATA))
    assert listed == 1911 and len(classes) == 1906
    # no skin-tone class: the Component swatches are gone, variants are never classes
    assert all(c.category != "Component" for c in classes)
    assert not {"skin-tone-2", "skin-tone-3", "skin-tone-4", "skin-tone-5", "skin-tone-6"} & {
        c.name for c in classes}
    assert all(c.tones[0] == "" and c.tones[1:] in ((), SKIN_TONES) for c in classes)
    split = emoji_class_split(classes)
    assert {name: len(names) for name, names in split.items()} == CLASSES
    named = [set(split[name]) for name in EMOJI_SPLITS]
    assert not (named[0] & named[1] or named[0] & named[2] or named[1] & named[2])
    assert set().union(*named) == {c.name for c in classes}
    subcategories = emoji_subcategory_split(classes)
    assert {name: len(subs) for name, subs in subcategories.items()} == SUBCATEGORIES
    owner = {sub: name for name, subs in subcategories.items() for sub in subs}
    assert len(owner) == 98  # every subcategory in exactly one split
    assert all(c.name in split[owner[c.subcategory]] for c in classes)
    assert owner["country-flag"] == "train" and owner["face-smiling"] == "test"
    variants = {name: sum(len(c.images) == 6 for c in classes if c.name in split[name])
                for name in EMOJI_SPLITS}
    assert variants == VARIANT_CLASSES
    assert split == emoji_class_split(list(reversed(classes)))  # order of emoji.json is moot


# --------------------------------------------------------------------------- images


@needs_emoji
def test_test_split_images(test_splits):
    google = test_splits["google"]
    assert isinstance(google, LabelledSplit) and google.split == "test"
    assert google.num_classes == 404 and google.items.shape == (904, 3, 64, 64)
    assert google.items.dtype == torch.float32
    assert 0.0 <= float(google.items.min()) and float(google.items.max()) <= 1.0
    assert google.class_names == sorted(google.class_names)
    assert len(google.class_categories) == len(google.class_subcategories) == 404
    counts = google.images_per_class
    assert set(counts.tolist()) == {1, 6} and int((counts == 6).sum()) == 100
    # a class's rows: base first, then the five tones in modifier order
    index = google.class_names.index("thumbsup") if "thumbsup" in google.class_names else \
        int(torch.nonzero(counts == 6)[0])
    rows = torch.nonzero(google.labels == index).flatten().tolist()
    assert [google.tones[r] for r in rows] == ["", *SKIN_TONES]
    assert set(google.item_styles) == {"google"}
    twitter = test_splits["twitter"]
    assert twitter.class_names == google.class_names
    assert torch.equal(twitter.labels, google.labels) and twitter.tones == google.tones
    assert not torch.equal(twitter.items, google.items)  # another drawing of each
    plain = load_emoji(REAL_DATA, "test", "google")
    assert plain.items.shape == (404, 3, 64, 64) and set(plain.tones) == {""}
    assert torch.equal(plain.labels, torch.arange(404))
    assert torch.equal(plain.items, google.items[[google.tones[i] == "" for i in range(904)]])


@needs_emoji
def test_transparent_background_is_white(test_splits):
    folder = find_emoji_dir(REAL_DATA)
    classes = {c.name: c for c in read_emoji(folder)[0]}
    for style, split in test_splits.items():
        label = split.class_names.index("grinning")
        with Image.open(folder / style / classes["grinning"].images[0]) as image:
            # stored RGBA, LA, or palette with a transparent index (some Twitter PNGs)
            assert image.convert("RGBA").getpixel((0, 0))[3] == 0  # transparent
        row = int(torch.nonzero(split.labels == label)[0])
        assert split.items[row, :, 0, 0].tolist() == [1.0, 1.0, 1.0]
        assert split.items[row].min() < 0.5  # and the face is drawn
    small = load_emoji(REAL_DATA, "test", "twitter", 28, channels=1)
    assert small.items.shape == (404, 1, 28, 28)
    assert small.items[small.class_names.index("grinning"), 0, 0, 0] == 1.0


@needs_emoji
def test_both_styles_through_the_registry():
    config = config_from_dict({"data": {"dataset": "emoji", "root": str(REAL_DATA),
                                        "channels": 3, "image_size": 28,
                                        "test": {"n_way": 5, "k_shot": 1, "q_query": 1}}})
    assert DATASETS["emoji"].channels == 3
    val = load_split(config, "val")
    assert val.items.shape == (2 * 287, 3, 28, 28)
    assert val.item_styles[:4] == ["google", "twitter", "google", "twitter"]
    # each class has two images, one per style: 1-shot 1-query support and query differ
    episodes = make_episodes(val, config.data.test, 3, 0)
    support, query = episodes.episode_indices(0)
    assert all(val.item_styles[s] != val.item_styles[q]
               for s, q in zip(support.ravel(), query.ravel()))


# --------------------------------------------------------------------------- episodes


@needs_emoji
def test_cross_style_episodes(test_splits):
    google, twitter = test_splits["google"], test_splits["twitter"]
    one = cross_style_episodes(google, twitter, n_way=5, k_shot=1, q_query=1,
                               num_episodes=4, seed=3)
    again = cross_style_episodes(google, twitter, n_way=5, k_shot=1, q_query=1,
                                 num_episodes=4, seed=3)
    other = cross_style_episodes(google, twitter, n_way=5, k_shot=1, q_query=1,
                                 num_episodes=4, seed=4)
    episodes = list(one)
    assert len(episodes) == 4 and len(one.classes) == 404  # 1-shot: every class
    for a, b in zip(episodes, again):
        assert all(torch.equal(getattr(a, f), getattr(b, f))
                   for f in ("support_x", "support_y", "query_x", "query_y"))
    assert not torch.equal(episodes[0].support_x, other[0].support_x)
    first = episodes[0]
    assert first.support_x.shape == (5, 3, 64, 64) and first.query_x.shape == (5, 3, 64, 64)
    assert first.support_y.tolist() == first.query_y.tolist() == [0, 1, 2, 3, 4]
    classes, support, query = one.episode_indices(0)
    # 1-shot: the base image in Google's style; the query, the base image in Twitter's
    assert [google.tones[r] for r in support.ravel()] == [""] * 5
    assert [twitter.tones[r] for r in query.ravel()] == [""] * 5
    assert google.labels[support.ravel()].tolist() == classes.tolist()
    assert twitter.labels[query.ravel()].tolist() == classes.tolist()
    assert torch.equal(first.support_x, google.items[support.ravel()])
    assert torch.equal(first.query_x, twitter.items[query.ravel()])
    for c in range(5):  # support and query of a class are two different drawings
        assert not torch.equal(first.support_x[c], first.query_x[c])


@needs_emoji
def test_cross_style_five_shot_uses_tone_variants(test_splits):
    google, twitter = test_splits["google"], test_splits["twitter"]
    episodes = cross_style_episodes(twitter, google, n_way=5, k_shot=5, q_query=3,
                                    num_episodes=3, seed=0)
    assert len(episodes.classes) == 100  # only the classes with tone variants
    classes, support, query = episodes.episode_indices(1)
    assert support.shape == (5, 5) and query.shape == (5, 3)
    for c, rows in zip(classes, support):
        assert twitter.tones[rows[0]] == "" and len(set(rows.tolist())) == 5
        assert set(twitter.labels[rows].tolist()) == {c}
        assert all(twitter.tones[r] in SKIN_TONES for r in rows[1:])
    for c, rows in zip(classes, query):
        assert google.tones[rows[0]] == "" and set(google.labels[rows].tolist()) == {c}
    episode = episodes[1]
    assert episode.support_x.shape == (25, 3, 64, 64) and episode.query_x.shape == (15, 3, 64, 64)
    assert episode.support_y.tolist() == [i for i in range(5) for _ in range(5)]


@needs_emoji
def test_cross_style_refusals(test_splits):
    google, twitter = test_splits["google"], test_splits["twitter"]
    with pytest.raises(ValueError) as excinfo:
        cross_style_episodes(google, google, 5, 1, 1, 2, 0)
    assert "both 'google'" in one_line(excinfo)
    plain = load_emoji(REAL_DATA, "test", "twitter")
    with pytest.raises(ValueError) as excinfo:
        cross_style_episodes(google, plain, n_way=5, k_shot=1, q_query=2)
    assert "only 0 classes" in one_line(excinfo) and "variants=True" in str(excinfo.value)
    with pytest.raises(ValueError) as excinfo:
        cross_style_episodes(google, twitter, n_way=101, k_shot=5, q_query=1)
    assert "n_way=101 but only 100 classes" in one_line(excinfo)


# --------------------------------------------------------------------------- tiny copies


def tiny_emoji_json() -> list[dict]:
    """Two emoji, one with tones, plus a Component swatch."""
    tones = {tone: {"image": f"1f44d-{tone.lower()}.png"} for tone in SKIN_TONES}
    return [{"name": "THUMBS UP SIGN", "short_name": "+1", "image": "1f44d.png",
             "category": "People & Body", "subcategory": "hand-fingers-closed",
             "skin_variations": tones},
            {"name": "GRINNING FACE", "short_name": "grinning", "image": "1f600.png",
             "category": "Smileys & Emotion", "subcategory": "face-smiling"},
            {"name": "EMOJI MODIFIER FITZPATRICK TYPE-1-2", "short_name": "skin-tone-2",
             "image": "1f3fb.png", "category": "Component", "subcategory": "skin-tone"}]


def png(colour: tuple[int, int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGBA", (64, 64), colour).save(out, format="PNG")
    return out.getvalue()


def tarball(style: str, listing: bytes) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as archive:
        members = {"package/emoji.json": listing, "package/LICENSE": b"MIT\n"}
        for entry in tiny_emoji_json():
            for image in [entry["image"]] + [v["image"] for v in
                                             entry.get("skin_variations", {}).values()]:
                members[f"package/img/{style}/64/{image}"] = png((200, 0, 0, 255))
        members[f"package/img/{style}/32/1f600.png"] = b"not taken"
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return out.getvalue()


def test_download_unpacks_the_packages(local_server, tmp_path, monkeypatch):
    listing = json.dumps(tiny_emoji_json()).encode()
    for style in ("google", "twitter"):
        name = f"emoji-datasource-{style}-16.0.0.tgz"
        data = tarball(style, listing)
        (local_server.folder / name).write_bytes(data)
        monkeypatch.setitem(emoji_module.EMOJI_URLS, style, local_server.url_of(name))
        monkeypatch.setitem(emoji_module.EMOJI_SHA256, style, hashlib.sha256(data).hexdigest())
    monkeypatch.setattr(emoji_module, "EMOJI_JSON_SHA256", hashlib.sha256(listing).hexdigest())
    folder = download_emoji(tmp_path)
    assert folder == tmp_path / "emoji"
    assert sorted(p.name for p in (folder / "google").iterdir()) == sorted(
        ["1f44d.png", "1f600.png", "1f3fb.png"] + [f"1f44d-{t.lower()}.png" for t in SKIN_TONES])
    assert (folder / "emoji.json").read_bytes() == listing
    assert (folder / "LICENSE.txt").read_text() == "MIT\n"
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # no partial folder
    # a second call fetches nothing and keeps what is there
    requests = list(local_server.requests)
    download_emoji(tmp_path)
    assert local_server.requests == requests
    # the tiny copy loads: 2 classes (the swatch is left out), tones as extra examples
    train = load_emoji(tmp_path, "train", "google", 16, variants=True)
    test = load_emoji(tmp_path, "test", "twitter", 16, variants=True)
    assert sorted(train.class_names + test.class_names) == ["+1", "grinning"]
    assert len(train) + len(test) == 7
    assert train.items[0, :, 0, 0].tolist() == pytest.approx([200 / 255, 0.0, 0.0])
    # a changed emoji.json is refused, not replaced
    (folder / "emoji.json").write_text("[]")
    with pytest.raises(ValueError) as excinfo:
        download_emoji(tmp_path)
    assert "emoji.json has sha256" in one_line(excinfo)


def test_tiny_copy_errors(tmp_path):
    folder = tmp_path / "emoji"
    folder.mkdir()
    with pytest.raises(FileNotFoundError) as excinfo:
        load_emoji(tmp_path / "nowhere", "test")
    (folder / "emoji.json").write_text(json.dumps(tiny_emoji_json()))
    with pytest.raises(FileNotFoundError) as excinfo:
        load_emoji(tmp_path, "test", "google")
    assert "google" in one_line(excinfo)
    broken = tiny_emoji_json()
    del broken[0]["skin_variations"]["1F3FD"]
    (folder / "emoji.json").write_text(json.dumps(broken) + " ")
    with pytest.raises(ValueError) as excinfo:
        load_emoji(tmp_path, "test", "google")
    assert "no skin variation 1F3FD" in one_line(excinfo)
    with pytest.raises(ValueError, match="style='apple'"):
        load_emoji(tmp_path, "test", "apple")
