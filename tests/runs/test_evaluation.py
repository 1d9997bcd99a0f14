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
