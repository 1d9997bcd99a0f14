"""The pretrain run kind, ``model.init`` / ``model.freeze``, and cached frozen features."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from attnmeta.cli import main
from attnmeta.runs.build import build_learner
from attnmeta.runs.config import config_from_dict, config_to_dict, load_config
from attnmeta.runs.features import load_init
from attnmeta.runs.folder import RunError
from attnmeta.runs.pretrain import class_batches, train_pretrain
from attnmeta.runs.episodic import evaluate_checkpoint, train_run
from attnmeta.tasks.augment import shift_images
from attnmeta.tasks.image_folder import load_image_folder
from support import (benchmark_module, make_image_folder, one_line_error, tiny_config,
                     write_config)

CONFIGS = Path(__file__).parents[2] / "configs" / "omniglot"


def tiny_pretrain(root: Path, steps: int = 6, **train) -> "object":
    return config_from_dict({
        "kind": "pretrain", "name": "tiny-pretrain", "seed": 3,
        "data": {"dataset": "image_folder", "root": str(root), "image_size": 16,
                 "test": {"n_way": 3, "k_shot": 1, "q_query": 2}},
        "model": {"hidden": 8, "norm": "running"},
        "train": {"steps": steps, "batch_size": 8, "lr": 0.01, "shift": 2, "log_every": 2,
                  "checkpoint_every": 3, "eval_every": 3, "eval_episodes": 4, **train},
        "eval": {"episodes": 8, "seed": 5},
    })


def frozen_config(root: Path, init: Path, learner: str = "feat", freeze: bool = True, **extra):
    config = tiny_config(root, learner, **extra)
    config.model.norm, config.model.init, config.model.freeze = "running", str(init), freeze
    return config_from_dict(config_to_dict(config))


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("images"))


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory, data_root) -> Path:
    out = tmp_path_factory.mktemp("pretrain") / "run"
    train_pretrain(tiny_pretrain(data_root), out, progress=False)
    return out


def weights(path: Path) -> dict:
    return load_file(sorted((path / "checkpoints").glob("step_*.safetensors"))[-1])


# ------------------------------------------------------------------------------ batches
def test_shift_images_moves_each_image_and_fills_zeros():
    images = torch.arange(2 * 5 * 5, dtype=torch.float32).reshape(2, 1, 5, 5) + 1
    shifted = shift_images(images, torch.tensor([[1, -2], [0, 0]]))
    expected = torch.zeros(5, 5)
    expected[1:, :3] = images[0, 0, :4, 2:]
    assert torch.equal(shifted[0, 0], expected) and torch.equal(shifted[1], images[1])


def test_batches_depend_only_on_the_seed_and_the_step(data_root):
    split = load_image_folder(data_root, "train", 16)
    from_start = list(class_batches(split, 8, 2, seed=3, start_step=0, steps=6))
    resumed = list(class_batches(split, 8, 2, seed=3, start_step=4, steps=6))
    for a, b in zip(from_start[4:], resumed):
        assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    unshifted = list(class_batches(split, 12, 0, seed=3, start_step=0, steps=3))  # 36 = 1 epoch
    order = torch.cat([batch.y for batch in unshifted])
    assert torch.equal(torch.bincount(order), torch.full((6,), 6))
    assert from_start[0].num_examples == 8 and from_start[0].slice(2, 5).x.shape[0] == 3


# ----------------------------------------------------------------------- the run kind
KILLED = """
import os, signal, sys
sys.path.insert(0, {tests!r})
from pathlib import Path
from test_pretrain import tiny_pretrain
from attnmeta.runs.pretrain import train_pretrain

def kill_at_4(step):
    if step == 4:
        os.kill(os.getpid(), signal.SIGKILL)

config = tiny_pretrain(Path({root!r}))
config.train.threads = 1
train_pretrain(config, Path({out!r}), progress=False, on_step_end=kill_at_4)
"""


def test_kill_9_then_resume_gives_bit_identical_weights(tmp_path, data_root):
    out = tmp_path / "killed"
    script = KILLED.format(tests=str(Path(__file__).parent), root=str(data_root), out=str(out))
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1]),
                                          os.environ.get("PYTHONPATH", "")])}
    killed = subprocess.run([sys.executable, "-c", script], env=env)
    assert killed.returncode == -signal.SIGKILL
    config = tiny_pretrain(data_root)
    config.train.threads = 1
    assert train_pretrain(config, out, resume=True, progress=False).resumed_from == 3
    train_pretrain(config, tmp_path / "straight", progress=False)
    straight, again = weights(tmp_path / "straight"), weights(out)
    assert straight.keys() == again.keys()
    assert all(np.array_equal(straight[k].numpy(), again[k].numpy()) for k in straight)


def test_pretrain_run_logs_evaluates_and_reports_like_an_episodic_run(tmp_path, data_root,
                                                                       pretrained):
    logged = [json.loads(line) for line in (pretrained / "log.jsonl").read_text().splitlines()]
    assert [row["step"] for row in logged if "loss" in row] == [2, 4, 6]
    assert [row["step"] for row in logged if "val_accuracy" in row] == [3, 6]
    result = evaluate_checkpoint(pretrained, save=False)
    assert result.learner == "pretrain (cosine prototypes)" and result.episodes == 8
    assert 0 <= result.accuracy <= 1 and result.step == 6
    episodic = tmp_path / "episodic"
    train_run(tiny_config(data_root, "protonet", steps=3), episodic, progress=False)
    assert set(evaluate_checkpoint(episodic, save=False).to_dict()) == set(result.to_dict())


def test_cli_trains_and_evaluates_a_pretrain_config(tmp_path, data_root):
    path = write_config(tmp_path / "pretrain.yaml", tiny_pretrain(data_root, steps=3))
    out = tmp_path / "cli"
    outcome = CliRunner().invoke(main, ["train", str(path), "--out", str(out), "--no-progress"])
    assert outcome.exit_code == 0, outcome.output
    assert "pretrain (cosine prototypes) 3-way 1-shot (test" in outcome.output
    outcome = CliRunner().invoke(main, ["eval", str(out), "--episodes", "4", "--no-progress"])
    assert outcome.exit_code == 0 and "4 episodes" in outcome.output, outcome.output
    assert json.loads((out / ".attnmeta-run").read_text())["kind"] == "pretrain"


def test_the_shipped_pretrain_and_frozen_configs(data_root):
    pretrain = load_config(CONFIGS / "pretrain_conv4.yaml")
    assert (pretrain.kind, pretrain.train.batch_size, pretrain.train.shift) == ("pretrain", 256, 2)
    assert (pretrain.data.protocol, pretrain.train.lr, pretrain.train.optimizer) == (
        "vinyals", 0.001, "adam")
    frozen = load_config(CONFIGS / "feat_frozen_20w1s.yaml")
    assert frozen.model.freeze and frozen.model.init == "runs/pretrain_conv4"
    learner = build_learner(frozen)
    assert learner.needs_head is False and not any(
        p.requires_grad for p in learner.frozen_encoder.parameters())


# ------------------------------------------------------------------ model.init / freeze
def test_a_fine_tuned_run_starts_from_the_pretrained_encoder(tmp_path, data_root, pretrained):
    config = frozen_config(data_root, pretrained, "maml", freeze=False)
    config.model.norm = "running"
    init = load_init(str(pretrained))
    learner = build_learner(config, init.state)
    own = learner.model.state_dict()
    assert all(torch.equal(own[k], v) for k, v in init.state.items())
    assert "head.weight" in own and "head.weight" not in init.state
    result = train_run(config, tmp_path / "tuned", progress=False)
    assert result.steps == 6
    record = json.loads(sorted((tmp_path / "tuned/checkpoints").glob("*.json"))[-1].read_text())
    assert record["inputs"] == {"init_checkpoint": init.checkpoint,
                                "init_encoder_sha256": init.sha256}
    assert not torch.equal(weights(tmp_path / "tuned")["model/model.features.0.0.weight"],
                           init.state["features.0.0.weight"])  # fine-tuned: it moved


def test_maml_over_a_vision_transformer_starts_from_a_pretrained_one(tmp_path, data_root):
    """The ViT's head is ``encoder.head``: fresh in the MAML model, absent from the
    pretrained encoder; every other weight comes from the pretrain run."""
    pretrain = tiny_pretrain(data_root, steps=2)
    pretrain.model.backbone, pretrain.model.patch_size, pretrain.model.depth = "vit", 4, 1
    train_pretrain(pretrain, tmp_path / "vit", progress=False)
    config = frozen_config(data_root, tmp_path / "vit", "maml", freeze=False)
    config.model.backbone, config.model.patch_size, config.model.depth = "vit", 4, 1
    init = load_init(str(tmp_path / "vit"))
    own = build_learner(config, init.state).model.state_dict()
    assert "encoder.head.weight" in own and "encoder.head.weight" not in init.state
    assert all(torch.equal(own[k], v) for k, v in init.state.items())


@pytest.mark.parametrize("learner, extra", [("feat", {}), ("matching", {"fce": True}),
                                            ("incontext", {}), ("fomaml", {})])
def test_a_frozen_run_trains_its_head_on_cached_features(tmp_path, data_root, pretrained,
                                                        learner, extra):
    config = frozen_config(data_root, pretrained, learner, **extra)
    out = tmp_path / "frozen"
    train_run(config, out, progress=False)
    init = load_init(str(pretrained))
    final = weights(out)
    for key, value in init.state.items():  # never trained
        assert torch.equal(final[f"model/frozen_encoder.{key}"], value), key
    result = evaluate_checkpoint(out, save=False)  # cached; the same on a second read
    assert result.accuracy == evaluate_checkpoint(out, save=False).accuracy
    cached = sorted(p.name for p in (out / "features").glob("*.safetensors"))
    assert {"train", "test"} <= {name.split("-")[0] for name in cached}
    assert all(init.sha256[:16] in name for name in cached)


def test_a_frozen_run_resumes_to_the_same_weights(tmp_path, data_root, pretrained):
    config = frozen_config(data_root, pretrained, "feat")
    train_run(config, tmp_path / "straight", progress=False)

    def stop(step: int) -> None:
        if step == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_run(config, tmp_path / "killed", progress=False, on_step_end=stop)
    train_run(config, tmp_path / "killed", resume=True, progress=False)
    straight, again = weights(tmp_path / "straight"), weights(tmp_path / "killed")
    assert all(np.array_equal(straight[k].numpy(), again[k].numpy()) for k in straight)


def test_a_resume_with_a_changed_init_is_refused(tmp_path, data_root):
    init_dir = tmp_path / "pretrain"
    train_pretrain(tiny_pretrain(data_root, steps=3), init_dir, progress=False)
    config = frozen_config(data_root, init_dir, "feat", steps=3)
    train_run(config, tmp_path / "run", progress=False)
    train_pretrain(tiny_pretrain(data_root, steps=6), init_dir, resume=True, progress=False)
    config.train.steps = 6
    with pytest.raises(RunError, match="other inputs.*init_checkpoint"):
        train_run(config, tmp_path / "run", resume=True, progress=False)


def test_the_paired_benchmark_scores_two_runs_on_the_same_episodes(tmp_path, data_root,
                                                                   pretrained, monkeypatch):
    paired = benchmark_module("paired", monkeypatch)
    frozen = tmp_path / "frozen"
    train_run(frozen_config(data_root, pretrained, "feat", steps=3), frozen, progress=False)
    (row,) = paired.compare(frozen, pretrained, 8, None, "cmd", settings=((3, 1, "none"),))
    # each accuracy is the run's own evaluation on those seeded episodes (the naive reference)
    alone = [evaluate_checkpoint(run, episodes=8, n_way=3, k_shot=1, seed=5, save=False).accuracy
             for run in (frozen, pretrained)]
    assert (row["first_accuracy"], row["second_accuracy"]) == pytest.approx(
        [100 * a for a in alone], abs=1e-9)
    assert row["difference"] == pytest.approx(row["first_accuracy"] - row["second_accuracy"])
    assert row["first_minutes"] > row["second_minutes"]  # the frozen run counts its pretraining
    # a run against itself: the same episodes, so every difference is 0 and so is its interval
    (same,) = paired.compare(pretrained, pretrained, 8, None, "cmd",
                             settings=((3, 1, "none"),))
    assert (same["difference"], same["difference_ci95"]) == (0.0, 0.0)
    assert same["verdict"].startswith("tie")
    # --one-to-one first: the same run, its first copy decided by the balanced assignment;
    # each row reaches on_row as soon as it is measured
    written = []
    (assigned,) = paired.compare(pretrained, pretrained, 8, None, "cmd",
                                 settings=((3, 1, "none"),), one_to_one="first",
                                 on_row=written.append)
    decided = evaluate_checkpoint(pretrained, episodes=8, n_way=3, k_shot=1, seed=5,
                                  save=False, one_to_one=True)
    assert written == [assigned] and assigned["first"] == f"{pretrained.name}:one-to-one"
    assert (assigned["first_accuracy"], assigned["second_accuracy"]) == pytest.approx(
        [100 * decided.accuracy, 100 * alone[1]], abs=1e-9)
    assert list(assigned["transductive"]) == [assigned["first"]]


def test_the_paired_benchmark_reads_an_end_to_end_run_as_its_encoders_prototypes(
        tmp_path, data_root, pretrained, monkeypatch):
    paired = benchmark_module("paired", monkeypatch)
    # a relational run fine-tuned from a pretrain run by a step too small to move a weight
    # past float32 round-off, and with batch norm of the batch (no running statistics to
    # update): its encoder's prototypes are the pretrain run's
    pretrain = tiny_pretrain(data_root)
    pretrain.model.norm = "batch"
    batch_norm = tmp_path / "pretrain"
    train_pretrain(pretrain, batch_norm, progress=False)
    config = frozen_config(data_root, batch_norm, "cross_transformer", freeze=False,
                           key_dim=8, value_dim=8)
    config.model.norm, config.train.lr = "batch", 1e-30
    tuned = tmp_path / "tuned"
    train_run(config, tuned, progress=False)
    (row,) = paired.compare(tuned, tuned, 8, None, "cmd", settings=((3, 1, "none"),),
                            second_as_prototypes=True)
    (reference,) = paired.compare(batch_norm, batch_norm, 8, None, "cmd",
                                  settings=((3, 1, "none"),))
    assert row["second"] == "tuned:prototypes"
    assert row["second_learner"] == "Prototypical Networks"
    assert row["second_accuracy"] == reference["first_accuracy"]
    frozen = tmp_path / "frozen"
    train_run(frozen_config(data_root, pretrained, "cross_transformer", steps=1, key_dim=8,
                            value_dim=8), frozen, progress=False)
    with pytest.raises(paired.InputError, match="expected a run whose encoder trained"):
        paired.compare(frozen, frozen, 8, None, "cmd", second_as_prototypes=True)


def test_the_paired_benchmark_refuses_bad_input_in_one_line_before_evaluating(
        tmp_path, data_root, pretrained, monkeypatch):
    paired = benchmark_module("paired", monkeypatch)
    out = tmp_path / "results"

    def error_of(*args) -> str:
        monkeypatch.setattr(sys, "argv", ["paired.py", *map(str, args), "--out", str(out)])
        with pytest.raises(SystemExit) as exit_:
            paired.main()
        (line,) = str(exit_.value.code).splitlines()
        assert line.startswith("Error: ")
        return line

    assert "--episodes 0: expected an integer >= 1" in error_of(pretrained, pretrained,
                                                                 "--episodes", "0")
    assert "--episodes -3" in error_of(pretrained, pretrained, "--episodes", "-3")
    assert "does not exist" in error_of(pretrained, tmp_path / "no-run")
    (tmp_path / "notes.txt").write_text("mine")
    monkeypatch.setattr(sys, "argv", ["paired.py", str(pretrained), str(pretrained),
                                      "--out", str(tmp_path / "notes.txt")])
    with pytest.raises(SystemExit, match="Error: --out .*notes.txt is a file: expected a folder"):
        paired.main()
    assert (tmp_path / "notes.txt").read_text() == "mine"
    other = tmp_path / "other"  # a pretraining on another image folder: other test classes
    train_pretrain(tiny_pretrain(make_image_folder(tmp_path / "images", classes=7)), other,
                   progress=False)
    assert "read different test splits" in error_of(pretrained, other, "--episodes", "2")
    assert not out.exists() or not any(out.iterdir())  # nothing written


# ------------------------------------------------------------------------ the cache
def test_a_frozen_run_reuses_the_features_of_a_run_beside_it(tmp_path, data_root, pretrained,
                                                            monkeypatch):
    import attnmeta.runs.features as features_module

    config = frozen_config(data_root, pretrained, "matching", fce=True)
    train_run(config, tmp_path / "first", progress=False)
    monkeypatch.setattr(features_module, "embed_items", lambda *a, **k: pytest.fail("embedded"))
    train_run(frozen_config(data_root, pretrained, "feat"), tmp_path / "second", progress=False)
    first, second = (sorted(p.name for p in (tmp_path / run / "features").glob("*"))
                     for run in ("first", "second"))
    assert first == second and first

# ------------------------------------------------------------------------ bad input
def pretrain_args(path: Path, out: Path, *extra: str) -> list[str]:
    return [str(a) for a in ("train", path, *extra, "--out", out, "--no-progress")]


@pytest.mark.parametrize("override, key", [
    ("train.batch_size=0", "train.batch_size"), ("train.shift=-1", "train.shift"),
    ("train.shift=16", "train.shift"), ("learner.classifier=svm", "learner.classifier"),
    ("learner.scale=0", "learner.scale"), ("eval.distance=l1", "eval.distance"),
    ("train.weight_decay=-1", "train.weight_decay"), ("train.steps=0", "train.steps"),
    ("train.backward_chunk=-1", "train.backward_chunk"), ("model.init=/x", "model.init"),
    ("model.freeze=true", "model.freeze"), ("train.meta_batch=2", "train.meta_batch"),
    ("data.dataset=nothing", "data.dataset"), ("kind=pretrained", "'kind'"),
    ("train.precision=float16", "train.precision"),
])
def test_a_bad_pretrain_value_names_its_key(tmp_path, data_root, override, key):
    path = write_config(tmp_path / "p.yaml", tiny_pretrain(data_root))
    one_line_error(pretrain_args(path, tmp_path / "run", override), key, "expected")
    assert not (tmp_path / "run").exists()


def test_bad_init_and_freeze_values_are_refused_in_one_line(tmp_path, data_root, pretrained):
    path = write_config(tmp_path / "c.yaml", frozen_config(data_root, pretrained))
    out = tmp_path / "run"
    one_line_error(pretrain_args(path, out, f"model.init={tmp_path / 'none'}"), "model.init",
                   "does not exist")
    episodic = tmp_path / "episodic"
    train_run(tiny_config(data_root, "protonet", steps=3), episodic, progress=False)
    one_line_error(pretrain_args(path, out, f"model.init={episodic}"), "model.init",
                   "episodic run", "expected a pretrain run")
    line = one_line_error(pretrain_args(path, out, "model.hidden=4"), "model.init",
                          "does not fit", "tiny-feat", "hidden=4")
    assert str(pretrained) in line
    one_line_error(pretrain_args(path, out, "model.init=null"), "model.freeze", "model.init")
    one_line_error(pretrain_args(path, out, "model.norm=batch"), "model.norm", "running")
    one_line_error(pretrain_args(path, out, "model.freeze=maybe"), "model.freeze", "true or false")
    one_line_error(pretrain_args(path, out, "model.init=3"), "model.init", "a string")
    # (a learner's section holds its own keys: protonet's is a config of its own)
    protonet = write_config(tmp_path / "p.yaml", frozen_config(data_root, pretrained, "protonet"))
    one_line_error(pretrain_args(protonet, out), "no trainable")
    assert not out.exists()
    one_line_error(["eval", pretrained, "--oos"], "--oos needs out-of-scope utterances",
                   "'image_folder' has none")
    one_line_error(["eval", pretrained, "--within-alphabet"], "within='alphabet'",
                   "data.protocol='lake'")


def test_bfloat16_pretraining_keeps_float32_weights_and_maml_refuses_it(tmp_path, data_root):
    out = tmp_path / "bf16"
    result = train_pretrain(tiny_pretrain(data_root, steps=3, precision="bfloat16", eval_every=0),
                            out, progress=False)
    assert result.steps == 3
    saved = weights(out)
    assert saved and all(t.dtype == torch.float32 for t in saved.values() if t.is_floating_point())
    path = write_config(tmp_path / "maml.yaml", tiny_config(data_root, "maml"))
    one_line_error(pretrain_args(path, tmp_path / "maml", "train.precision=bfloat16"),
                   "train.precision='bfloat16'", "expected 'float32' for MAML")
    assert not (tmp_path / "maml").exists()


def test_any_pretrain_key_trains_or_fails_in_one_line(data_root):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from attnmeta.runs.config import flatten
    from test_config_fuzz import VALUES, trains_one_step_or_fails_in_one_line

    base = config_to_dict(tiny_pretrain(data_root, steps=2, eval_every=0))

    @settings(max_examples=80, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow])
    @given(key=st.sampled_from(sorted(flatten(base))), value=VALUES)
    def check(key, value):
        trains_one_step_or_fails_in_one_line(json.loads(json.dumps(base)), key, value,
                                             train_pretrain)

    check()


def test_viz_of_a_frozen_run_draws_over_the_images(tmp_path, data_root, pretrained):
    out = tmp_path / "frozen"
    train_run(frozen_config(data_root, pretrained, "incontext", steps=2), out, progress=False)
    outcome = CliRunner().invoke(main, ["viz", str(out), "--out", str(tmp_path / "maps")])
    assert outcome.exit_code == 0, outcome.output
    assert (tmp_path / "maps" / "attention_query_support.png").is_file()


def test_a_selecting_pretrain_run_hands_its_best_encoder_to_model_init(
        tmp_path, data_root, monkeypatch):
    import attnmeta.runs.pretrain as pretrain

    accuracy = iter([.4, .7, .6, .5])  # evaluations at steps 1..4: step 2 is the best

    def scripted(learner, split, name, *args):
        return lambda: {f"{name}_accuracy": next(accuracy), f"{name}_ci95": 0.0}

    monkeypatch.setattr(pretrain, "in_training_evaluation", scripted)
    out = tmp_path / "run"
    train_pretrain(tiny_pretrain(data_root, steps=4, eval_every=1, select="best",
                                 keep_checkpoints=1), out, progress=False)
    init = load_init(str(out))
    assert Path(init.checkpoint).name == "step_0000002.json"
    best = load_file(out / "checkpoints/step_0000002.safetensors")
    assert all(torch.equal(v, best[f"model/encoder.{k}"]) for k, v in init.state.items())
    assert evaluate_checkpoint(out, episodes=4, save=False).step == 2
