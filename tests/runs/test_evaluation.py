"""attnmeta.runs.evaluation: the evaluation request, the test episode shape asked for, the
results file's name, and which test n_way a run's learner takes."""

from __future__ import annotations

from pathlib import Path

import pytest

from attnmeta.errors import RunError
from attnmeta.runs.config import EpisodeConfig
from attnmeta.runs.episodic import load_run, train_run
from attnmeta.runs.evaluation import EvalRequest, FinetuneOptions, requested_shape, result_name
from support import make_image_folder, one_line_error, tiny_config


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("images"))


def test_the_result_file_is_named_by_split_shape_group_and_tuning():
    assert result_name("test", EpisodeConfig(5, 1, 15)) == "eval_test_5w1s.json"
    assert result_name("val", EpisodeConfig(20, 5, 1, "alphabet"), FinetuneOptions(50)) == \
        "eval_val_20w5s_within_alphabet_finetune50.json"


def test_the_requested_shape_overrides_data_test_and_needs_alphabets_for_within(tmp_path):
    config = tiny_config(tmp_path)  # data.test: 3-way 1-shot, 2 queries; an image folder
    assert requested_shape(config, None, None, None) == EpisodeConfig(3, 1, 2)
    assert requested_shape(config, 5, 2, None) == EpisodeConfig(5, 2, 2)
    with pytest.raises(RunError, match=r"within='alphabet' needs a run trained on Omniglot's "
                                       r"background alphabets: expected data.protocol='lake' "
                                       r"\(this run: data.dataset='image_folder'"):
        requested_shape(config, None, None, "alphabet")


def test_a_request_refuses_the_first_option_set_and_builds_its_tuning(tmp_path):
    request = EvalRequest(tmp_path, n_way=7, oos=True, finetune_steps=3)
    with pytest.raises(RunError, match=r"^--oos: not here$"):
        request.refuse(("within_alphabet", "oos", "n_way"), "not here")
    with pytest.raises(RunError, match=r"^--n-way 7: not here$"):
        request.refuse(("within_alphabet", "n_way"), "not here")
    request.refuse(("within_alphabet", "k_shot"), "not here")  # neither is set
    assert request.tuning == FinetuneOptions(3, 1e-3, 2) and request.within is None
    assert EvalRequest(tmp_path).tuning is None


def test_a_head_of_n_outputs_takes_only_its_training_n_way(tmp_path, data_root):
    from attnmeta.runs.evaluation import takes_n_way

    out = tmp_path / "maml"
    train_run(tiny_config(data_root, "maml", steps=2), out, progress=False)
    run = load_run(out)
    assert takes_n_way(run.learner, run.config, 3) and not takes_n_way(run.learner, run.config, 4)
    one_line_error(["eval", out, "--n-way", "4", "--no-progress"],
                   "n_way=4 at test but the maml head has 3 outputs")
    protonet = tmp_path / "protonet"
    train_run(tiny_config(data_root, "protonet", steps=2), protonet, progress=False)
    run = load_run(protonet)
    assert takes_n_way(run.learner, run.config, 4)  # prototypes take any number of classes


def test_one_to_one_evaluation_is_the_best_balanced_labelling_of_each_episode(tmp_path, data_root):
    import itertools

    import torch
    from click.testing import CliRunner

    from attnmeta.cli import main
    from attnmeta.runs.build import make_episodes
    from attnmeta.runs.evaluation import evaluate_checkpoint

    out = tmp_path / "protonet"
    train_run(tiny_config(data_root, "protonet", steps=2), out, progress=False)
    result = evaluate_checkpoint(out, episodes=8, seed=5, one_to_one=True, save=True)
    # naive: every balanced labelling of an episode's 6 queries (3 classes x 2), scored by
    # its total log-probability; the accuracy of the best one (ties: none with real logits)
    run = load_run(out)
    shape = requested_shape(run.config, None, None, None)
    slots = sorted(set(itertools.permutations([0, 0, 1, 1, 2, 2])))
    correct = []
    for episode in make_episodes(run.learner_split("test"), shape, 8, 5):
        with torch.no_grad():
            log_probs = torch.log_softmax(run.learner.predict(
                episode.support_x, episode.support_y, episode.query_x).double(), -1)
        best = max(slots, key=lambda labels: log_probs[torch.arange(6), list(labels)].sum())
        correct.append((torch.tensor(best) == episode.query_y).double().mean().item())
    assert result.accuracy == pytest.approx(sum(correct) / len(correct), abs=1e-6)
    assert result.transductive is not None and "transductive" in result.line()
    assert result.result_path.endswith("eval_test_3w1s_one_to_one.json")
    assert Path(result.written_to).is_file()
    # the command line's flag reaches it; the inductive evaluation keeps its own name
    shown = CliRunner().invoke(main, ["eval", str(out), "--one-to-one", "--episodes", "8",
                                      "--seed", "5", "--no-progress"])
    assert shown.exit_code == 0 and f"{100 * result.accuracy:.2f}" in shown.output
    assert "transductive" in shown.output
    inductive = evaluate_checkpoint(out, episodes=8, seed=5, save=False)
    assert inductive.transductive is None and "transductive" not in inductive.line()
