"""The ``attnmeta`` command line."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click

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
    from attnmeta.experiments.sinusoid import SinusoidDemoConfig, run_sinusoid_demo

    config = SinusoidDemoConfig(test_tasks=test_tasks)
    config.steps = {name: max(1, round(n * steps_scale)) for name, n in config.steps.items()}
    run_sinusoid_demo(config, out_dir, invoked_command(), progress=progress)
    click.echo((out_dir / "sinusoid.md").read_text())
    click.echo(f"wrote {out_dir / 'sinusoid.md'}, {out_dir / 'sinusoid.json'}, "
               f"{out_dir / 'sinusoid.png'}")


if __name__ == "__main__":
    main()
