"""The built-in demo: MAML's sinusoid regression, MAML beside attention learners.

Meta-trains four learners on the task family of Finn et al. (2017, section 5.1) and
scores them on 600 held-out tasks at K = 5 and 10 after 1 and 10 gradient steps:

- ``maml``: MAML over the paper's MLP (2 × 40 ReLU), one inner step of α = 0.01;
- ``pretrained``: the same MLP trained on all tasks without adaptation, fine-tuned at
  test time with the same steps (MAML's "pretrained" baseline: MAML with 0 inner steps);
- ``maml-attention``: MAML over a small attention model (:class:`MemoryAttentionRegressor`),
  second order through softmax attention and LayerNorm;
- ``in-context``: an attentive neural process that reads the support set and adapts with
  no gradient step (its "steps" columns are the same single forward pass).

All learners see the same tasks: meta-batch ``m`` alternates between K = 5 and K = 10, so
one model per learner serves both evaluation settings (the paper trained one per K).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator

import torch
import torch.nn.functional as F

from attnmeta.metrics import Summary, mse, per_task_metric, summarize
from attnmeta.files import atomic_write_bytes
from attnmeta.learners import MAML, InContextLearner, MetaLearner
from attnmeta.machine import describe_machine
from attnmeta.models import MLP, AttentiveNP, MemoryAttentionRegressor
from attnmeta.runs.folder import RunFolder
from attnmeta.tasks import Episode, SinusoidTasks
from attnmeta.threads import use_threads
from attnmeta.train import meta_train

__all__ = ["SinusoidDemoConfig", "run_sinusoid_demo", "PAPER_MSE"]

# Finn et al. 2017, Figure 2 / section 5.1 text, 5-shot: MSE after 1 and 10 gradient steps.
PAPER_MSE = {("maml", 5, 1): 0.67, ("maml", 5, 10): 0.35,
             ("pretrained", 5, 1): 2.41, ("pretrained", 5, 10): 2.19}


@dataclass
class SinusoidDemoConfig:
    """Everything the demo's numbers depend on (saved beside the results)."""

    train_seed: int = 0
    test_seed: int = 1000
    meta_batch: int = 25
    train_shots: tuple[int, ...] = (5, 10)
    q_query: int = 10
    eval_shots: tuple[int, ...] = (5, 10)
    eval_steps: tuple[int, ...] = (1, 10)
    test_tasks: int = 600
    threads: int = 0       # torch intra-op threads; 0: one (attnmeta.threads: a small workload)
    test_query: int = 100
    inner_lr: float = 0.01
    outer_lr: float = 1e-3
    steps: dict[str, int] = field(default_factory=lambda: {
        "maml": 12000, "pretrained": 5000, "maml-attention": 2500, "in-context": 6000})


def build_learners(config: SinusoidDemoConfig) -> dict[str, MetaLearner]:
    inner_lr = config.inner_lr
    return {
        "maml": MAML(MLP(), inner_lr, inner_steps=1, loss_fn=F.mse_loss, strategy="vmap"),
        "pretrained": MAML(MLP(), inner_lr, inner_steps=0, loss_fn=F.mse_loss, strategy="vmap"),
        "maml-attention": MAML(MemoryAttentionRegressor(), inner_lr, inner_steps=1,
                               loss_fn=F.mse_loss, strategy="vmap"),
        "in-context": InContextLearner(AttentiveNP(), loss_fn=F.mse_loss),
    }


def training_batches(config: SinusoidDemoConfig) -> Iterator[Episode]:
    """Meta-batch ``m`` of every learner: K cycles through ``train_shots``."""
    families = [SinusoidTasks(k, config.q_query, seed=config.train_seed + k)
                for k in config.train_shots]
    step = 0
    while True:
        yield families[step % len(families)].batch(step, config.meta_batch)
        step += 1


def test_batch(config: SinusoidDemoConfig, k_shot: int) -> tuple[Episode, torch.Tensor, torch.Tensor]:
    """The fixed test tasks at ``k_shot``: same amplitudes and phases for every K."""
    tasks = SinusoidTasks(k_shot, config.test_query, seed=config.test_seed)
    return tasks.sample(0, config.test_tasks)


def test_mse(learner: MetaLearner, config: SinusoidDemoConfig
             ) -> dict[tuple[int, int], Summary]:
    """MSE ± 95% CI over the test tasks for each (K, steps); steps 0 for learners that adapt
    in context (one forward pass)."""
    learner.eval()
    results = {}
    for k_shot in config.eval_shots:
        batch = test_batch(config, k_shot)[0]
        if not learner.adapts_by_gradient:
            results[(k_shot, 0)] = summarize(per_task_metric(learner.predict_batch, [batch], mse))
            continue
        for steps in config.eval_steps:
            values = per_task_metric(lambda b: learner.predict_batch(b, steps=steps), [batch], mse)
            results[(k_shot, steps)] = summarize(values)
    return results


def markdown_table(results: dict, config: SinusoidDemoConfig, train_seconds: dict) -> str:
    lines = ["| learner | K | steps | MSE ± 95% CI (ours) | MAML paper | train steps | train time (s) |",
             "|---|---|---|---|---|---|---|"]
    for name, by_setting in results.items():
        for (k_shot, steps), summary in by_setting.items():
            paper = PAPER_MSE.get((name, k_shot, steps))
            shown_steps = f"{steps} (in context)" if steps == 0 else str(steps)
            lines.append(
                f"| {name} | {k_shot} | {shown_steps} | {summary.mean:.3f} ± {summary.ci95:.3f} | "
                f"{'' if paper is None else f'{paper:.2f}'} | {config.steps[name]} | "
                f"{train_seconds[name]:.0f} |"
            )
    return "\n".join(lines)


def plot_adapted_curves(learners: dict[str, MetaLearner], config: SinusoidDemoConfig,
                        path: Path, task_index: int = 0) -> None:
    """Adapted curves on one test task for each K: the picture of what adaptation does."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = torch.linspace(-5, 5, 200).reshape(1, -1, 1)
    fig, axes = plt.subplots(1, len(config.eval_shots), figsize=(6 * len(config.eval_shots), 4.2),
                             squeeze=False)
    steps = max(config.eval_steps)
    for ax, k_shot in zip(axes[0], config.eval_shots):
        batch, amplitude, phase = test_batch(config, k_shot)
        task = batch.task(task_index)
        truth = SinusoidTasks.function(grid[0], amplitude[task_index], phase[task_index])
        ax.plot(grid[0, :, 0], truth[:, 0], color="black", lw=2, label="true function")
        ax.scatter(task.support_x[:, 0], task.support_y[:, 0], color="black", zorder=5,
                   label=f"{k_shot} support points")
        for name, learner in learners.items():
            if learner.adapts_by_gradient:
                prediction = learner.predict(task.support_x, task.support_y, grid[0], steps=steps)
                label = f"{name}, {steps} steps"
            else:
                prediction = learner.predict(task.support_x, task.support_y, grid[0])
                label = f"{name} (no steps)"
            ax.plot(grid[0, :, 0], prediction[:, 0], lw=1.5, label=label)
        ax.set_title(f"{k_shot}-shot sinusoid, test task {task_index}")
        ax.set_xlabel("x")
        ax.set_ylabel("y")
    axes[0][0].legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run_sinusoid_demo(config: SinusoidDemoConfig, out_dir: Path, command: str,
                      progress: bool = True) -> dict:
    """Train, evaluate, and write ``sinusoid.json``, ``sinusoid.md`` and ``sinusoid.png``
    into ``out_dir``, a folder the demo owns (new, empty, or an earlier demo's)."""
    with RunFolder.claim(out_dir, "demo"):
        return _run(config, Path(out_dir), command, progress)


def _run(config: SinusoidDemoConfig, out_dir: Path, command: str, progress: bool) -> dict:
    use_threads(config.threads, "small")  # 2 x 40-unit MLPs: a second thread only waits
    torch.manual_seed(config.train_seed)
    learners = build_learners(config)
    train_seconds, results = {}, {}
    for name, learner in learners.items():
        optimizer = torch.optim.Adam(learner.parameters(), lr=config.outer_lr)
        start = time.perf_counter()
        meta_train(learner, training_batches(config), optimizer, config.steps[name],
                   log_every=100, progress=progress, description=f"{name:>15}")
        train_seconds[name] = time.perf_counter() - start
        results[name] = test_mse(learner, config)

    table = markdown_table(results, config, train_seconds)
    plot_adapted_curves(learners, config, out_dir / "sinusoid.png")
    machine = describe_machine()
    record = {
        "command": command,
        "machine": machine,
        "config": asdict(config),
        "train_seconds": train_seconds,
        "results": [
            {"learner": name, "k_shot": k, "steps": s, **summary.as_dict(),
             "paper": PAPER_MSE.get((name, k, s))}
            for name, by_setting in results.items() for (k, s), summary in by_setting.items()
        ],
    }
    atomic_write_bytes(out_dir / "sinusoid.json", json.dumps(record, indent=2).encode())
    header = (
        "# Sinusoid regression: MAML and attention learners\n\n"
        f"Command: `{command}`  \nMachine: {machine}  \n"
        f"Seeds: train {config.train_seed}, test {config.test_seed}; {config.test_tasks} test tasks "
        f"with {config.test_query} query points each; mean ± 95% CI over tasks.  \n"
        "Training alternates 5- and 10-shot meta-batches of 25 tasks; the paper's figures "
        "(Finn et al. 2017, 5-shot) come from 70 000 meta-iterations per model.\n\n"
    )
    atomic_write_bytes(out_dir / "sinusoid.md",
                       (header + table + "\n\n![adapted curves](sinusoid.png)\n").encode())
    return record
