"""kill -9 in the middle of training a relational learner (CrossTransformers over Conv4's
spatial tokens), then ``--resume``: the final weights are bit-identical to a run never
interrupted (the pattern of test_bad_input.py's kill -9 test, on its tiny image folder)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file

from attnmeta.runs.episodic import train_run
from support import make_image_folder, tiny_config

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

RELATIONAL = {"cross_transformer": {"heads": 2, "key_dim": 8, "value_dim": 8}}


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("images"))


@pytest.mark.parametrize("learner", sorted(RELATIONAL))
def test_kill_9_then_resume_gives_bit_identical_weights(tmp_path, data_root, learner):
    fields = RELATIONAL[learner]
    out = tmp_path / "killed"
    script = KILLED.format(tests=str(Path(__file__).parents[1]), root=str(data_root),
                           learner=learner, fields=fields, out=str(out))
    killed = subprocess.run([sys.executable, "-c", script], env={**os.environ,
                                                                 "OMP_NUM_THREADS": "1"})
    assert killed.returncode == -signal.SIGKILL
    config = tiny_config(data_root, learner, **fields)
    config.train.threads = 1
    assert config.model.backbone == "conv4"
    resumed = train_run(config, out, resume=True, progress=False)  # its lock died with it
    assert resumed.resumed_from == 3
    train_run(config, tmp_path / "straight", progress=False)
    final = "checkpoints/step_0000006.safetensors"
    straight, again = load_file(tmp_path / "straight" / final), load_file(out / final)
    assert straight.keys() == again.keys()
    assert {"model/key.weight", "model/value.weight"} <= straight.keys()  # its own heads
    assert all(np.array_equal(straight[k].numpy(), again[k].numpy()) for k in straight)
