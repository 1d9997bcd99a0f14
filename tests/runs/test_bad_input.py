"""Every bad input a new user's probe found, each answered by one ``Error:`` line that names
the value and what was expected, leaving the user's files as they were."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from PIL import Image
from safetensors.torch import load_file

from attnmeta.cli import main
from attnmeta.runs.folder import MARKER, RunFolder
from attnmeta.runs.episodic import train_run
from support import make_image_folder, one_line_error, tiny_config, write_config


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("images"))


@pytest.fixture
def config_file(tmp_path, data_root) -> Path:
    return write_config(tmp_path / "tiny.yaml", tiny_config(data_root, "protonet"))


def train_args(config_file: Path, out: Path, *extra: str) -> list[str]:
    return [str(a) for a in ("train", config_file, *extra, "--out", out, "--no-progress")]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


# 1-3: the run folder -------------------------------------------------------------------
def test_a_users_non_empty_folder_is_refused_and_left_as_it_was(tmp_path, config_file):
    theirs = tmp_path / "my-photos"
    theirs.mkdir()
    for name in ("config.yaml", "log.jsonl", "eval_test_5w1s.json", "tokenizer.json"):
        (theirs / name).write_text(f"the user's own {name}\n")
    before = snapshot(theirs)
    one_line_error(train_args(config_file, theirs), str(theirs), "not an attnmeta run")
    assert snapshot(theirs) == before


@pytest.mark.parametrize("name", ["../../x", "/abs/path", "a/b", ".hidden", ""])
def test_a_run_name_must_be_a_plain_name(config_file, name):
    one_line_error(["train", config_file, f"name={name!r}" if name else "name=''"],
                   "'name'", "plain name")


def test_a_second_run_on_a_locked_folder_names_the_holder(tmp_path, config_file):
    out = tmp_path / "run"
    with RunFolder.claim(out, "supervised"):
        line = one_line_error(train_args(config_file, out), "in use by another run")
        assert f"process {os.getpid()}" in line
    assert not (out / "checkpoints").exists()


# 4, 6: divergence and checks before the first step ------------------------------------
def test_divergence_without_a_nan_loss_stops_and_keeps_the_last_finite_checkpoint(
        tmp_path, config_file):
    out = tmp_path / "run"
    one_line_error(train_args(config_file, out, "train.optimizer=sgd", "train.lr=1e6",
                              "train.checkpoint_every=1", "train.eval_every=0",
                              "train.steps=20"),
                   "not finite after step", "learning rate")
    for weights in (out / "checkpoints").glob("*.safetensors"):
        assert all(np.isfinite(t.numpy()).all() for t in load_file(weights).values()), weights


@pytest.mark.parametrize("override, expected", [
    ("data.test.n_way=9", "data.test: n_way=9"),
    ("data.test.k_shot=6", "data.test"),
])
def test_test_episodes_are_checked_before_the_first_step(tmp_path, config_file, override,
                                                         expected):
    out = tmp_path / "run"
    out.mkdir()  # the user's empty folder: the run may use it, and leaves it as it was
    one_line_error(train_args(config_file, out, override), expected)
    assert not (out / "checkpoints").exists() and not (out / "config.yaml").exists()


def test_an_image_folder_without_a_test_split_is_refused_before_training(tmp_path, data_root):
    root = make_image_folder(tmp_path / "images")
    for image in (root / "test").rglob("*.png"):
        image.unlink()
    for folder in sorted((root / "test").iterdir()):
        folder.rmdir()
    (root / "test").rmdir()
    path = write_config(tmp_path / "c.yaml", tiny_config(root, "protonet"))
    one_line_error(train_args(path, tmp_path / "run"), str(root / "test"))
    assert not (tmp_path / "run").exists()


# 5: evaluating a run folder that cannot be written ----------------------------------------
def test_eval_prints_before_saving_and_a_failed_write_is_a_warning(tmp_path, config_file,
                                                                   monkeypatch):
    out = tmp_path / "run"
    assert CliRunner().invoke(main, train_args(config_file, out, "--no-eval")).exit_code == 0
    import attnmeta.runs.folder as folder

    def read_only(path, data):
        raise PermissionError(13, "Read-only file system", str(path))

    monkeypatch.setattr(folder, "atomic_write_bytes", read_only)
    outcome = CliRunner().invoke(main, ["eval", str(out), "--episodes", "4", "--no-progress"])
    assert outcome.exit_code == 0, outcome.output
    assert "accuracy" in outcome.stdout
    warnings = outcome.stderr.strip().splitlines()
    assert len(warnings) == 1 and warnings[0].startswith("Warning: could not write")


# 7: what used to end in a traceback -------------------------------------------------------
@pytest.mark.parametrize("override, key", [
    ("train.checkpoint_every=0", "train.checkpoint_every"),
    ("train.log_every=0", "train.log_every"), ("train.eval_every=-1", "train.eval_every"),
    ("train.lr_decay_every=-1", "train.lr_decay_every"),
    ("eval.episodes=0", "eval.episodes"), ("data.train.q_query=0", "data.train.q_query"),
    ("data.train.n_way=1", "data.train.n_way"), ("seed=-1", "'seed'"),
    ("train.meta_batch=0", "train.meta_batch"), ("train.steps=0", "train.steps"),
    ("train.steps=-5", "train.steps"), ("train.lr=.nan", "train.lr"),
    ("train.workers=0", "train.workers"), ("data.image_size=abc", "data.image_size"),
])
def test_a_value_out_of_range_names_its_key(tmp_path, config_file, override, key):
    one_line_error(train_args(config_file, tmp_path / "run", override), key, "expected")
    assert not (tmp_path / "run").exists()


def test_a_data_root_that_is_a_file(tmp_path, config_file):
    afile = tmp_path / "file.txt"
    afile.write_text("not a folder")
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({**yaml.safe_load(config_file.read_text()),
                                    "data": {"dataset": "omniglot"}}))
    one_line_error(train_args(path, tmp_path / "run", "--data-root", afile), str(afile))
    assert not (tmp_path / "run").exists()  # the folder it made is gone again


def test_a_config_path_that_is_a_folder_or_not_a_checkpoint(tmp_path, config_file):
    one_line_error(["train", tmp_path], str(tmp_path), "is a folder")
    one_line_error(["eval", config_file], str(config_file), "is not a checkpoint")


@pytest.mark.parametrize("content, expected", [
    (b"name: caf\xe9\n", "not UTF-8"), (b"", "is empty"), (b"[1, 2]", "holds a list"),
    (b"name: a\nname: b\n", "appears twice"), (b"train:\n  steps: 1\n  steps: 2\n", "twice"),
    (b"name: [unclosed\n", "not valid YAML"),
])
def test_a_bad_config_file(tmp_path, content, expected):
    path = tmp_path / "bad.yaml"
    path.write_bytes(content)
    one_line_error(["train", path, "--out", tmp_path / "run"], str(path), expected)


def test_a_huge_image_is_refused_in_one_line(tmp_path, monkeypatch):
    root = make_image_folder(tmp_path / "images")
    Image.new("L", (300, 300)).save(root / "train" / "class_00" / "huge.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 20_000)  # a 20000x20000 PNG, in small
    path = write_config(tmp_path / "c.yaml", tiny_config(root, "protonet"))
    one_line_error(train_args(path, tmp_path / "run"), "huge.png")


def trained_run(tmp_path: Path, config_file: Path) -> Path:
    out = tmp_path / "run"
    outcome = CliRunner().invoke(main, train_args(config_file, out, "--no-eval"))
    assert outcome.exit_code == 0, outcome.output
    return out


@pytest.mark.parametrize("damage, expected", [
    (lambda p: p.write_text("[]"), "expected"),
    (lambda p: p.write_bytes(b"\xff\xfe not json"), "expected"),
    (lambda p: p.write_text(json.dumps({k: v for k, v in json.loads(p.read_text()).items()
                                        if k != "rng"})), "rng"),
    (lambda p: p.write_text(json.dumps({k: v for k, v in json.loads(p.read_text()).items()
                                        if k != "config"})), "config"),
    (lambda p: p.write_text(json.dumps({**json.loads(p.read_text()), "step": 999})), "step"),
])
def test_a_damaged_checkpoint_given_by_name(tmp_path, config_file, damage, expected):
    newest = sorted((trained_run(tmp_path, config_file) / "checkpoints").glob("*.json"))[-1]
    damage(newest)
    one_line_error(["eval", newest, "--no-progress"], newest.name, expected)


def test_a_truncated_safetensors_file_with_a_matching_digest(tmp_path, config_file):
    import hashlib

    newest = sorted((trained_run(tmp_path, config_file) / "checkpoints").glob("*.json"))[-1]
    weights = newest.with_suffix(".safetensors")
    weights.write_bytes(weights.read_bytes()[:64])
    record = json.loads(newest.read_text())
    record["weights_sha256"] = hashlib.sha256(weights.read_bytes()).hexdigest()
    newest.write_text(json.dumps(record))
    one_line_error(["eval", newest, "--no-progress"], newest.name)


def test_a_corrupt_newest_checkpoint_falls_back_to_the_previous_one(tmp_path, config_file):
    out = trained_run(tmp_path, config_file)
    older, newest = sorted((out / "checkpoints").glob("*.json"))
    newest.write_text(newest.read_text()[:50])  # killed mid-copy, say
    outcome = CliRunner().invoke(main, ["eval", str(out), "--episodes", "4", "--no-progress"])
    assert outcome.exit_code == 0, outcome.output
    assert newest.name in outcome.stderr and outcome.stderr.startswith("Warning:")
    assert older.name in json.loads((out / "eval_test_3w1s.json").read_text())["checkpoint"]


def test_disk_full_while_checkpointing(tmp_path, config_file, monkeypatch):
    import errno

    import attnmeta.checkpoint as checkpoint

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint, "save_file", full)
    one_line_error(train_args(config_file, tmp_path / "run"), "No space left on device")
    assert not list((tmp_path / "run").rglob("*.tmp"))


def test_viz_into_a_path_that_cannot_be_a_folder(tmp_path, config_file):
    out = trained_run(tmp_path, config_file)
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    one_line_error(["viz", out, "--out", blocker / "maps"], "file.txt")


# 8: accepted silently before -----------------------------------------------------------------
def test_demo_steps_scale_must_be_positive(tmp_path):
    outcome = CliRunner().invoke(main, ["demo", "--steps-scale", "-1", "--out", str(tmp_path)])
    assert outcome.exit_code == 2 and "--steps-scale" in outcome.output


def test_resume_without_a_checkpoint(tmp_path, config_file):
    one_line_error(train_args(config_file, tmp_path / "run", "--resume"), "no checkpoint")


def test_colour_images_turned_grey_are_reported(tmp_path):
    root = make_image_folder(tmp_path / "images")
    Image.new("RGB", (12, 12), (200, 10, 10)).save(root / "train" / "class_00" / "red.png")
    path = write_config(tmp_path / "c.yaml", tiny_config(root, "protonet", steps=2))
    outcome = CliRunner().invoke(main, train_args(path, tmp_path / "run", "--no-eval"))
    assert outcome.exit_code == 0, outcome.output
    assert "RGB" in outcome.stderr and "grey" in outcome.stderr


# 9, 11: resuming -----------------------------------------------------------------------------
def test_stale_temporary_files_are_cleaned_up(tmp_path, data_root):
    config = tiny_config(data_root, "protonet", steps=3)
    train_run(config, tmp_path / "run", progress=False)
    stale = tmp_path / "run/checkpoints/.step_0000002.safetensors.abc123.tmp"
    stale.write_bytes(b"left by a killed process")
    config.train.steps = 6
    train_run(config, tmp_path / "run", resume=True, progress=False)
    assert not stale.exists()


KILLED = """
import os, signal, sys
sys.path.insert(0, {tests!r})
from pathlib import Path
from support import tiny_config
from attnmeta.runs.episodic import train_run

def kill_at_4(step):
    if step == 4:
        os.kill(os.getpid(), signal.SIGKILL)

config = tiny_config(Path({root!r}), {learner!r}, **{fields!r})
config.train.threads = 1  # the same arithmetic in this process and the test's
train_run(config, Path({out!r}), progress=False, on_step_end=kill_at_4)
"""


# a relational learner (CrossTransformers over Conv4's spatial tokens) resumes as exactly
RESUMED = {"protonet": {}, "maml": {},
           "cross_transformer": {"heads": 2, "key_dim": 8, "value_dim": 8}}


@pytest.mark.parametrize("learner", sorted(RESUMED))
def test_kill_9_then_resume_gives_bit_identical_weights(tmp_path, data_root, learner):
    fields = RESUMED[learner]
    out = tmp_path / "killed"
    script = KILLED.format(tests=str(Path(__file__).parents[1]), root=str(data_root),
                           learner=learner, fields=fields, out=str(out))
    killed = subprocess.run([sys.executable, "-c", script], env={**os.environ,
                                                                 "OMP_NUM_THREADS": "1"})
    assert killed.returncode == -signal.SIGKILL
    config = tiny_config(data_root, learner, **fields)
    config.train.threads = 1
    resumed = train_run(config, out, resume=True, progress=False)  # its lock died with it
    assert resumed.resumed_from == 3
    train_run(config, tmp_path / "straight", progress=False)
    final = "checkpoints/step_0000006.safetensors"
    straight, again = load_file(tmp_path / "straight" / final), load_file(out / final)
    assert straight.keys() == again.keys()
    assert all(np.array_equal(straight[k].numpy(), again[k].numpy()) for k in straight)


# 12: options -----------------------------------------------------------------------------------
def test_every_eval_and_viz_option_has_help():
    for command in ("eval", "viz", "train"):
        text = CliRunner().invoke(main, [command, "--help"]).output
        for option in ("--data-root",) + (("--split", "--n-way", "--k-shot", "--seed")
                                          if command == "eval" else ()):
            line = next(row for row in text.splitlines() if row.strip().startswith(option))
            assert len(line.split(maxsplit=2)) == 3, (command, line)


def test_data_root_is_refused_for_a_meta_rl_run(tmp_path):
    config = Path(__file__).parents[2] / "configs" / "rl" / "maml_bandit.yaml"
    one_line_error(["train", config, "--data-root", tmp_path, "--out", tmp_path / "rl"],
                   "--data-root", "meta-RL")
    assert not (tmp_path / "rl").exists()


def test_a_run_of_another_kind_is_refused(tmp_path, config_file):
    out = tmp_path / "run"
    out.mkdir()
    (out / MARKER).write_text(json.dumps({"kind": "rl"}))
    one_line_error(train_args(config_file, out), "rl run")


@pytest.mark.parametrize("learner, override, expected", [
    ("reptile", "learner.strategy=compiled",
     "config key 'learner.strategy' is 'compiled': expected one of ['loop', 'vmap'] for "
     "learner 'reptile'"),
    ("maml", "model.norm=running",
     "config key 'learner.strategy' is 'compiled': expected a model without buffers"),
    ("maml", "train.workers=2", "train.workers=2: expected 1 with learner.strategy: compiled"),
])
def test_a_compiled_strategy_it_cannot_take(tmp_path, data_root, learner, override, expected):
    config = write_config(tmp_path / "c.yaml", tiny_config(data_root, learner,
                                                           strategy="compiled"))
    out = tmp_path / "run"
    one_line_error(train_args(config, out, override), expected)
    assert not out.exists()


@pytest.mark.parametrize("learner, fields, expected", [
    ("protonet", {"head_init": "prototypes"},
     "config key 'learner.head_init' is 'prototypes': expected one of ['meta'] for learner "
     "'protonet'"),
    ("maml", {"head_init": "prototypes", "adapt_only": ["features."]},
     "config key 'learner.adapt_only' is ['features.']: expected it to include the head "
     "'head' that learner.head_init: prototypes sets"),
])
def test_a_head_init_it_cannot_take(tmp_path, data_root, learner, fields, expected):
    config = write_config(tmp_path / "c.yaml", tiny_config(data_root, learner, **fields))
    out = tmp_path / "run"
    one_line_error(train_args(config, out), expected)
    assert not out.exists()
