"""The README's recipe for a new learner, followed literally by a learner class that exists
nowhere else: its own ``logits_from_features`` and one registry line, then train, eval,
adapt, predict and export as every built-in learner does (issue 30, item 3)."""

from __future__ import annotations

import json
from typing import ClassVar

import pytest
import torch
from click.testing import CliRunner
from torch import Tensor, nn

from attnmeta.cli import main
from attnmeta.fewshot import FewShotClassifier
from attnmeta.learners.base import EpisodeLearner, class_count
from attnmeta.learners.protonet import prototypes
from support import make_image_folder, tiny_config


class ManhattanPrototypes(EpisodeLearner):
    """Class means compared by negative L1 distance (no built-in learner does this)."""

    display_name: ClassVar[str] = "Manhattan prototypes"

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def logits_from_features(self, support_z: Tensor, support_y: Tensor, query_z: Tensor
                             ) -> Tensor:
        centres = prototypes(support_z, support_y, class_count(support_y))  # [T, N, D]
        return -(query_z.unsqueeze(-2) - centres.unsqueeze(-3)).abs().sum(-1)


def test_a_new_learner_trains_evaluates_adapts_predicts_and_exports(tmp_path):
    pytest.importorskip("onnxruntime")
    from attnmeta.learners import LEARNERS, register_learner
    from attnmeta.runs.episodic import evaluate_checkpoint, train_run

    images = make_image_folder(tmp_path / "images")
    register_learner("manhattan", ManhattanPrototypes,
                     lambda spec, backbone: ManhattanPrototypes(backbone.model))
    try:
        config = tiny_config(images, "protonet", steps=2)
        config.learner.name, config.train.eval_every = "manhattan", 0
        train_run(config, tmp_path / "run", progress=False, will_evaluate=False)
        result = evaluate_checkpoint(tmp_path / "run", episodes=4, progress=False, save=False)
        assert result.learner == "manhattan" and 0 <= result.accuracy <= 1

        runner = CliRunner()
        outcome = runner.invoke(main, ["adapt", str(tmp_path / "run"), "--support",
                                       str(images / "test"), "--out", str(tmp_path / "model"),
                                       "--no-progress"])
        assert outcome.exit_code == 0, outcome.output
        queries = sorted((images / "val" / "class_02").glob("*.png"))
        outcome = runner.invoke(main, ["predict", str(tmp_path / "model"), *map(str, queries),
                                       "--json"])
        assert outcome.exit_code == 0, outcome.output
        labels = [json.loads(line)["label"] for line in outcome.stdout.splitlines()]
        model = FewShotClassifier.load(tmp_path / "model")
        assert labels == model.predict(queries)
        # the fitted logits are the learner's own on the support set it kept
        support_x = model.support_x
        index = {name: i for i, name in enumerate(model.class_names)}
        support_y = torch.tensor([index[label] for label in model.support.labels])
        query_x, _ = model.query_inputs(queries)
        expected = model.learner.predict(support_x, support_y, query_x)
        torch.testing.assert_close(model.logits(queries)[0], expected, atol=1e-4, rtol=1e-4)
        outcome = runner.invoke(main, ["export", str(tmp_path / "model"), "--onnx",
                                       str(tmp_path / "model.onnx")])
        assert outcome.exit_code == 0, outcome.output
        assert float(outcome.stdout.split("matches PyTorch to ")[1].split()[0].rstrip(";")) < 1e-4
    finally:
        LEARNERS.pop("manhattan")


def test_a_learner_without_its_head_says_which_method_to_write():
    class Unfinished(EpisodeLearner):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = nn.Identity()

    with pytest.raises(NotImplementedError, match="logits_from_features"):
        Unfinished().predict(torch.zeros(2, 3), torch.tensor([0, 1]), torch.zeros(1, 3))
