"""What training and evaluating a run give back: one dataclass per result, with the one line
``attnmeta`` prints for it (:meth:`line`) and the JSON its results file holds
(:meth:`to_dict`, every field but ``written_to``, where the file went)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

__all__ = ["Result", "TrainResult", "AccuracyResult", "OutOfScopeResult", "RLResult"]


@dataclass
class Result:
    """An evaluation's figures; ``result_path`` the JSON they are saved to, ``written_to``
    that path once written (None when not saved, or when the write failed: a warning)."""

    def to_dict(self) -> dict[str, Any]:
        """The results file's fields, in their order (``written_to`` is not one)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "written_to"}

    def line(self) -> str:
        """The one line ``attnmeta eval`` prints."""
        raise NotImplementedError


@dataclass
class TrainResult:
    """A finished (or budget-stopped) training call: ``steps`` the step it stopped at;
    ``is_main_process`` False on the ranks other than 0 of a distributed run (which report
    nothing); ``history`` the logged training scalars."""

    run_dir: str
    steps: int
    train_seconds: float
    resumed_from: int = 0
    is_main_process: bool = True
    stopped_by_time_budget: bool = False
    resume_changes: dict[str, list] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)

    def line(self, name: str) -> str:
        """The line ``attnmeta train`` prints for the run ``name``."""
        return (f"trained {name}: {self.steps} steps in {self.train_seconds:.0f} s -> "
                f"{self.run_dir}")


@dataclass
class EpisodesResult(Result):
    """What every evaluation of a run of classes on seeded episodes records first: the
    command, the checkpoint and its step, the learner, and the episodes' split and shape."""

    command: str
    checkpoint: str
    step: int
    learner: str
    split: str
    n_way: int
    k_shot: int
    q_query: int


@dataclass
class AccuracyResult(EpisodesResult):
    """Accuracy (mean ± 95% CI, and the standard deviation) over ``episodes`` seeded test
    episodes of a run of classes (:func:`attnmeta.runs.evaluation.accuracy_result`)."""

    within: str
    episodes: int
    episode_seed: int
    accuracy: float
    ci95: float
    std: float
    result_path: str
    test_time_finetuning: dict[str, Any] | None = None
    transductive: str | None = None  # the transductive decision rule, if one decided
    written_to: str | None = None

    def line(self) -> str:
        within = "" if self.within == "none" else f", within {self.within}"
        if self.transductive is not None:
            within += f", transductive: {self.transductive}"
        return (f"{self.learner} {self.n_way}-way {self.k_shot}-shot ({self.split}{within}, "
                f"{self.episodes} episodes, seed {self.episode_seed}): accuracy "
                f"{100 * self.accuracy:.2f} ± {100 * self.ci95:.2f}%")


@dataclass
class OutOfScopeResult(EpisodesResult):
    """``eval --oos``: the score and threshold chosen on meta-val, and meta-test in-scope
    accuracy and out-of-scope recall at them
    (:func:`attnmeta.runs.out_of_scope.evaluate_out_of_scope`)."""

    oos_per_episode: int
    episodes: int
    episode_seed: int
    score: str
    threshold: float
    threshold_episodes: int
    val_in_scope_accuracy: float
    val_oos_recall: float
    in_scope_accuracy: float
    in_scope_ci95: float
    oos_recall: float
    oos_recall_ci95: float
    result_path: str
    written_to: str | None = None

    def line(self) -> str:
        return (f"{self.learner} {self.n_way}-way {self.k_shot}-shot + {self.oos_per_episode} "
                f"out-of-scope queries ({self.episodes} episodes, seed {self.episode_seed}, "
                f"{self.score} >= {self.threshold:.4g} chosen on val): in-scope accuracy "
                f"{100 * self.in_scope_accuracy:.2f} ± {100 * self.in_scope_ci95:.2f}%, "
                f"out-of-scope recall {100 * self.oos_recall:.2f} ± "
                f"{100 * self.oos_recall_ci95:.2f}%")


@dataclass
class RLResult(Result):
    """A meta-RL run's average return on held-out tasks before and after each adaptation
    step (or each episode of a trial), mean ± 95% CI per column
    (:func:`attnmeta.runs.rl.evaluate_rl_run`)."""

    command: str
    name: str
    checkpoint: str
    step: int
    train_seconds: float | None
    learner: str
    policy: str
    env: str
    tasks: int
    task_seed: int
    episodes_per_task: int
    step_sizes: list[float]
    columns: str
    returns: list[dict[str, Any]]
    per_task: list[list[float]]
    result_path: str
    written_to: str | None = None

    def line(self) -> str:
        """The return at each column, mean ± 95% CI."""
        label = "episode" if self.learner == "incontext" else "steps"
        columns = ", ".join(f"{label} {r['k'] + (1 if label == 'episode' else 0)}: "
                            f"{r['mean']:.2f} ± {r['ci95']:.2f}" for r in self.returns)
        return (f"{self.name} ({self.learner}, {self.tasks} held-out tasks, seed "
                f"{self.task_seed}): average return {columns}")
