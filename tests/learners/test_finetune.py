"""Test-time fine-tuning (P>M>F's third stage): the same Adam steps as torch.optim.Adam on
the pseudo-episode's loss, tuned weights that depend on the support set only, refused for
learners that adapt by their own inner loop, and available from attnmeta eval."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from attnmeta.learners import MAML, ProtoNet
from attnmeta.learners.finetune import SupportFinetuning
from attnmeta.learners.protonet import prototype_logits, prototypes
from attnmeta.models import Conv4
from attnmeta.tasks.augment import random_shifts
from support import make_image_folder, tiny_config


def learner_and_task(seed: int = 0):
    torch.manual_seed(seed)
    learner = ProtoNet(Conv4(1, 0, 8, 16, "running").double()).eval()
    support_x = torch.rand(6, 1, 16, 16, dtype=torch.float64)
    support_y = torch.tensor([0, 0, 1, 1, 2, 2])
    return learner, support_x, support_y


def test_steps_equal_torch_adam_on_the_pseudo_episode_loss():
    learner, support_x, support_y = learner_and_task()
    tuner = SupportFinetuning(learner, steps=3, lr=1e-2, augment=random_shifts(2), seed=7)
    tuned = tuner.tuned_encoder(support_x, support_y)

    # reference: a copy of the encoder, torch.optim.Adam, the same augmentation draws
    encoder = copy.deepcopy(learner.encoder)
    optimizer = torch.optim.Adam(encoder.parameters(), lr=1e-2, betas=(0.9, 0.999))
    generator, augment = torch.Generator().manual_seed(7), random_shifts(2)
    for _ in range(3):
        pseudo = augment(support_x, generator)
        z = encoder(torch.cat([support_x, pseudo]))
        logits = prototype_logits(z[6:], prototypes(z[:6], support_y, 3))
        optimizer.zero_grad()
        F.cross_entropy(logits, support_y).backward()
        optimizer.step()
    for name, parameter in encoder.named_parameters():
        torch.testing.assert_close(tuned[name], parameter.detach(), rtol=1e-9, atol=1e-11)
    # ... and the learner itself is untouched
    assert all(not torch.equal(tuned[n], p) for n, p in learner.encoder.named_parameters()
               if n.endswith("weight"))


def test_the_queries_never_change_the_tuned_weights():
    learner, support_x, support_y = learner_and_task()
    tuner = SupportFinetuning(learner, steps=2, lr=1e-2, augment=random_shifts(2))
    queries = torch.rand(4, 1, 16, 16, dtype=torch.float64)
    alone = tuner.predict(support_x, support_y, queries[:1])
    together = tuner.predict(support_x, support_y, queries)
    torch.testing.assert_close(alone[0], together[0])


def test_learners_that_adapt_by_their_own_inner_loop_are_refused():
    maml = MAML(Conv4(1, 3, 8, 16, "batch"), 0.1, 1)
    with pytest.raises(ValueError, match="MAML and Reptile adapt by their own inner steps"):
        SupportFinetuning(maml, steps=2, lr=1e-3, augment=random_shifts(1))


def test_eval_with_test_time_fine_tuning(tmp_path):
    from click.testing import CliRunner

    from attnmeta.cli import main
    from attnmeta.runs.episodic import train_run

    images = make_image_folder(tmp_path / "images")
    config = tiny_config(images, "protonet", steps=2)
    config.train.eval_every = 0
    train_run(config, tmp_path / "run", progress=False, will_evaluate=False)
    outcome = CliRunner().invoke(main, ["eval", str(tmp_path / "run"), "--finetune-steps", "2",
                                        "--episodes", "4", "--no-progress"])
    assert outcome.exit_code == 0, outcome.output
    assert "protonet + fine-tuning" in outcome.stdout
