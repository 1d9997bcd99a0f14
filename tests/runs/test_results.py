"""attnmeta.runs.results: each result's JSON fields (to_dict, never written_to) and the one
line attnmeta prints for it."""

from __future__ import annotations

from dataclasses import fields

from attnmeta.runs.results import AccuracyResult, RLResult, TrainResult


def accuracy(**changes) -> AccuracyResult:
    values = dict(command="attnmeta eval run", checkpoint="run/final.pt", step=10,
                  learner="protonet", split="test", n_way=5, k_shot=1, q_query=15,
                  within="none", episodes=600, episode_seed=7, accuracy=0.5, ci95=0.0125,
                  std=0.1, result_path="run/eval.json")
    return AccuracyResult(**{**values, **changes})


def test_an_accuracy_result_is_its_json_fields_and_one_line():
    result = accuracy(written_to="run/eval.json")
    assert list(result.to_dict()) == [f.name for f in fields(result) if f.name != "written_to"]
    assert result.to_dict()["accuracy"] == 0.5 and "written_to" not in result.to_dict()
    assert result.line() == ("protonet 5-way 1-shot (test, 600 episodes, seed 7): "
                             "accuracy 50.00 ± 1.25%")
    assert "within alphabet" in accuracy(within="alphabet").line()


def test_an_rl_result_line_counts_steps_or_episodes():
    values = dict(command="c", name="nav", checkpoint="k", step=1, train_seconds=None,
                  learner="maml", policy="mlp", env="navigation", tasks=4, task_seed=3,
                  episodes_per_task=2, step_sizes=[0.1], columns="steps",
                  returns=[{"k": 0, "mean": -1.0, "ci95": 0.5}], per_task=[[-1.0]],
                  result_path="r.json")
    assert RLResult(**values).line() == ("nav (maml, 4 held-out tasks, seed 3): average return "
                                         "steps 0: -1.00 ± 0.50")
    assert "episode 1: -1.00" in RLResult(**{**values, "learner": "incontext"}).line()
    trained = TrainResult(run_dir="runs/a", steps=100, train_seconds=12.4)
    assert trained.line("a") == "trained a: 100 steps in 12 s -> runs/a"
