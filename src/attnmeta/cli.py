"""The ``attnmeta`` command line."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from attnmeta.runs.config import ExperimentConfig
    from attnmeta.learners import MetaLearner

__all__ = ["main"]


def invoked_command() -> str:
    """The command line as the user typed it, for results files."""
    return "attnmeta " + " ".join(shlex.quote(arg) for arg in sys.argv[1:])


@click.group()
@click.version_option(package_name="attnmeta")
def main() -> None:
    """Attention and meta-learning for few-shot tasks."""


@main.command()
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("runs/sinusoid-demo"), show_default=True,
              help="Folder for sinusoid.md, sinusoid.json and sinusoid.png.")
@click.option("--steps-scale", type=float, default=1.0, show_default=True,
              help="Multiply every learner's training steps (e.g. 0.01 for a smoke run).")
@click.option("--test-tasks", type=click.IntRange(min=2), default=600, show_default=True)
@click.option("--progress/--no-progress", default=True, show_default=True)
def demo(out_dir: Path, steps_scale: float, test_tasks: int, progress: bool) -> None:
    """Meta-train on sinusoids (no download) and compare MAML with attention learners."""
    from attnmeta.runs.demo import SinusoidDemoConfig, run_sinusoid_demo

    config = SinusoidDemoConfig(test_tasks=test_tasks)
    config.steps = {name: max(1, round(n * steps_scale)) for name, n in config.steps.items()}
    run_sinusoid_demo(config, out_dir, invoked_command(), progress=progress)
    click.echo((out_dir / "sinusoid.md").read_text())
    click.echo(f"wrote {out_dir / 'sinusoid.md'}, {out_dir / 'sinusoid.json'}, "
               f"{out_dir / 'sinusoid.png'}")


def fail(error: Exception) -> None:
    """Bad input ends in one line naming the problem, not a traceback."""
    raise click.ClickException(str(error))


USER_ERRORS = (ValueError, FileNotFoundError, FloatingPointError)


def run_rl(command: str, path: Path, overrides: tuple[str, ...], out_dir: Path | None,
           resume: bool, run_eval: bool, progress: bool, tasks: int | None = None,
           seed: int | None = None) -> bool:
    """Hand ``train``/``eval`` to :mod:`attnmeta.runs.rl` when PATH is a meta-RL config
    or run (``kind: rl``); returns False, doing nothing, otherwise."""
    from attnmeta.runs.rl_config import is_rl_config_file
    from attnmeta.runs.rl import evaluate_from_cli, is_rl_run, train_from_cli

    if not (is_rl_config_file(path) if command == "train" else is_rl_run(path)):
        return False
    try:
        if command == "train":
            for line in train_from_cli(path, overrides, out_dir, resume, run_eval, progress,
                                       invoked_command()):
                click.echo(line)
        else:
            click.echo(evaluate_from_cli(path, tasks, seed, progress, invoked_command()))
    except USER_ERRORS as error:
        fail(error)
    return True


@main.command(context_settings={"ignore_unknown_options": True})
@click.argument("config_path", metavar="CONFIG", type=click.Path(path_type=Path))
@click.argument("overrides", nargs=-1)
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Run folder (default: runs/<config name>).")
@click.option("--data-root", default=None, help="Folder holding the data sets "
              "(default: $ATTNMETA_DATA, else the download cache).")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last checkpoint.")
@click.option("--eval/--no-eval", "run_eval", default=True, show_default=True,
              help="Evaluate the final checkpoint on the test episodes.")
@click.option("--progress/--no-progress", default=True, show_default=True)
def train(config_path: Path, overrides: tuple[str, ...], out_dir: Path | None,
          data_root: str | None, resume: bool, run_eval: bool, progress: bool) -> None:
    """Meta-train from a YAML CONFIG, with key=value OVERRIDES (e.g. train.steps=100)."""
    from attnmeta.runs.config import load_config
    from attnmeta.runs.supervised import evaluate_checkpoint, train_run

    if run_rl("train", config_path, overrides, out_dir, resume, run_eval, progress):
        return
    try:
        config = load_config(config_path, overrides)
        if data_root is not None:
            config.data.root = data_root
        out_dir = out_dir or Path("runs") / config.name
        result = train_run(config, out_dir, resume=resume, progress=progress,
                           command=invoked_command())
        if not result["is_main_process"]:  # under torchrun, rank 0 reports and evaluates
            return
        click.echo(f"trained {config.name}: {result['steps']} steps in "
                   f"{result['train_seconds']:.0f} s -> {out_dir}")
        if run_eval:
            report_eval(evaluate_checkpoint(out_dir, command=invoked_command(),
                                            progress=progress))
    except USER_ERRORS as error:
        fail(error)


def report_eval(result: dict) -> None:
    click.echo(f"{result['learner']} {result['n_way']}-way {result['k_shot']}-shot "
               f"({result['split']}, {result['episodes']} episodes, seed {result['episode_seed']}):"
               f" accuracy {100 * result['accuracy']:.2f} ± {100 * result['ci95']:.2f}% "
               f"-> {result['written_to']}")


@main.command()
@click.argument("dataset", type=click.Choice(["omniglot", "clinc150", "banking77"]))
@click.option("--data-root", default=None,
              help="Where to put it (default: $ATTNMETA_DATA, else ~/.cache/attnmeta/data).")
def download(dataset: str, data_root: str | None) -> None:
    """Fetch a DATASET from its upstream source, checking its published checksums."""
    from attnmeta.tasks.banking77 import download_banking77
    from attnmeta.tasks.clinc150 import download_clinc150
    from attnmeta.tasks.omniglot import download_omniglot

    fetch = {"omniglot": download_omniglot, "clinc150": download_clinc150,
             "banking77": download_banking77}[dataset]
    try:
        click.echo(f"{dataset} is in {fetch(data_root)}")
    except (OSError, ValueError) as error:
        fail(error)


@main.command(name="eval")
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option("--episodes", type=click.IntRange(min=2), default=None,
              help="Number of test episodes (default: the config's, 1000).")
@click.option("--seed", type=int, default=None, help="Episode seed (default: the config's).")
@click.option("--split", type=click.Choice(["train", "val", "test"]), default=None)
@click.option("--n-way", type=click.IntRange(min=2), default=None)
@click.option("--k-shot", type=click.IntRange(min=1), default=None)
@click.option("--data-root", default=None)
@click.option("--oos", is_flag=True, help="CLINC150: add out-of-scope queries; report in-scope "
              "accuracy and out-of-scope recall at a threshold chosen on meta-val.")
@click.option("--threshold-episodes", type=click.IntRange(min=1), default=500,
              show_default=True, help="With --oos: meta-val episodes that choose the threshold.")
@click.option("--progress/--no-progress", default=True, show_default=True)
def evaluate(checkpoint: Path, episodes: int | None, seed: int | None, split: str | None,
             n_way: int | None, k_shot: int | None, data_root: str | None, oos: bool,
             threshold_episodes: int, progress: bool) -> None:
    """Accuracy ± 95% CI of a CHECKPOINT (run folder or step_*.json) on seeded episodes.
    For a meta-RL run: average return ± 95% CI over --episodes held-out tasks."""
    from attnmeta.runs.supervised import evaluate_checkpoint

    if run_rl("eval", checkpoint, (), None, False, True, progress, tasks=episodes, seed=seed):
        return
    try:
        if oos:
            from attnmeta.out_of_scope import evaluate_out_of_scope

            if split not in (None, "test"):
                raise ValueError(f"--split {split} with --oos: expected test (the threshold "
                                 "is chosen on val)")
            report_oos(evaluate_out_of_scope(checkpoint, episodes=episodes, seed=seed,
                                             threshold_episodes=threshold_episodes,
                                             n_way=n_way, k_shot=k_shot, data_root=data_root,
                                             command=invoked_command()))
            return
        report_eval(evaluate_checkpoint(checkpoint, episodes=episodes, seed=seed, split=split,
                                        data_root=data_root, n_way=n_way, k_shot=k_shot,
                                        command=invoked_command(), progress=progress))
    except USER_ERRORS as error:
        fail(error)


def report_oos(result: dict) -> None:
    click.echo(f"{result['learner']} {result['n_way']}-way {result['k_shot']}-shot + "
               f"{result['oos_per_episode']} out-of-scope queries ({result['episodes']} "
               f"episodes, seed {result['episode_seed']}, {result['score']} >= "
               f"{result['threshold']:.4g} chosen on val): in-scope accuracy {100 * result['in_scope_accuracy']:.2f} ± "
               f"{100 * result['in_scope_ci95']:.2f}%, out-of-scope recall "
               f"{100 * result['oos_recall']:.2f} ± {100 * result['oos_recall_ci95']:.2f}% "
               f"-> {result['written_to']}")


@main.command()
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option("--episode-seed", type=int, default=0, show_default=True,
              help="Which test episode to draw (episode 0 of this seed).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("attention_maps"), show_default=True)
@click.option("--split", type=click.Choice(["train", "val", "test"]), default="test",
              show_default=True)
@click.option("--data-root", default=None)
def viz(checkpoint: Path, episode_seed: int, out_dir: Path, split: str,
        data_root: str | None) -> None:
    """Draw the attention maps of a CHECKPOINT's learner on one seeded test episode."""
    from attnmeta.runs.supervised import load_run, load_split, make_episodes
    from attnmeta.viz import write_attention_maps

    try:
        config, learner, _ = load_run(checkpoint, data_root)
        if hasattr(learner, "tokenizer"):  # a text run: token-level maps (attnmeta.viz.text)
            from attnmeta.viz.text import write_text_attention_maps

            for path in write_text_attention_maps(
                    learner, load_split(config, split, learner.tokenizer), config.data.test,
                    episode_seed, out_dir, learner.tokenizer,
                    predict_kwargs=viz_predict_kwargs(config, learner)):
                click.echo(f"wrote {path}")
            return
        episode = make_episodes(load_split(config, split), config.data.test, 1, episode_seed)[0]
        for path in write_attention_maps(learner, episode, out_dir,
                                         steps=config.learner.eval_steps):
            click.echo(f"wrote {path}")
    except USER_ERRORS as error:
        fail(error)


def viz_predict_kwargs(config: "ExperimentConfig", learner: "MetaLearner") -> dict:
    """MAML / Reptile adapt for the config's ``eval_steps`` before predicting."""
    from attnmeta.learners import MAML

    return {"steps": config.learner.eval_steps} if isinstance(learner, MAML) else {}


@main.group()
def bench() -> None:
    """Benchmarks that need no data set (results as JSON + Markdown)."""


@bench.command(name="speed")
@click.option("--repeats", type=click.IntRange(min=1), default=5, show_default=True,
              help="Timed meta-batches per implementation and setting (after one warm-up).")
@click.option("--meta-batch", type=click.IntRange(min=2), default=32, show_default=True)
@click.option("--threads", type=click.IntRange(min=1), default=2, show_default=True,
              help="torch intra-op threads for every implementation.")
@click.option("--workers", type=click.IntRange(min=1), default=2, show_default=True,
              help="attnmeta's task-parallel worker threads.")
@click.option("--only", "implementations", multiple=True,
              type=click.Choice(["attnmeta", "attnmeta_1_worker", "attnmeta_stock_conv4",
                                 "plain_loop", "learn2learn", "higher", "torchopt"]),
              help="Time only these implementations (repeatable; default all).")
@click.option("--setting", "settings", multiple=True,
              type=click.Choice(["1-second", "1-first", "5-second", "5-first"]),
              help="Inner steps and order (repeatable; default all four).")
@click.option("--memory/--no-memory", default=True, show_default=True,
              help="Measure peak memory in a subprocess per implementation.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("benchmarks/results"), show_default=True)
@click.option("--stem", default="speed", show_default=True,
              help="Results file names: STEM.json, STEM.md.")
def bench_speed(repeats: int, meta_batch: int, threads: int, workers: int,
                implementations: tuple[str, ...], settings: tuple[str, ...], memory: bool,
                out_dir: Path, stem: str) -> None:
    """MAML meta-training steps/s vs learn2learn, higher, torchopt and a plain loop;
    MFU against the measured peak; ProtoNets/FEAT episodes/s (writes speed.md/.json)."""
    from attnmeta.speed.harness import SpeedConfig, run_speed, write_report

    config = SpeedConfig(repeats=repeats, meta_batch=meta_batch, threads=threads,
                         workers=workers, memory=memory)
    if implementations:
        config.implementations = list(implementations)
    if settings:
        config.settings = [(int(s.split("-")[0]), s.endswith("first")) for s in settings]
    results = run_speed(config, log=click.echo)
    click.echo(f"wrote {write_report(results, invoked_command(), out_dir, stem)}")


if __name__ == "__main__":
    main()
