"""Small data and configs shared by several test files (importable as ``support``: pytest
puts ``tests/`` on the path for ``tests/conftest.py``)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from attnmeta.runs.config import config_from_dict

# The real intent data sets (CI points ATTNMETA_DATA at ../shared/data); tests of them skip
# where they are absent.
REAL_DATA = Path(os.environ.get("ATTNMETA_DATA") or
                 Path(__file__).resolve().parents[2] / "shared" / "data")
needs_real_data = pytest.mark.skipif(
    not ((REAL_DATA / "clinc150" / "data_full.json").is_file()
         and (REAL_DATA / "banking77" / "train.csv").is_file()),
    reason=f"CLINC150 / BANKING77 not found under {REAL_DATA} (set ATTNMETA_DATA)")


def make_image_folder(root: Path, classes: int = 6, per_class: int = 6, size: int = 12,
                      channels: int = 1) -> Path:
    """root/{train,test,val}/<class>/<i>.png, grey (``channels=1``) or RGB (3); each class a
    fixed random pattern plus noise (val last, so train and test hold the pixels they held
    before val was added)."""
    rng = np.random.default_rng(0)
    shape = (size, size) if channels == 1 else (size, size, channels)
    for split in ("train", "test", "val"):
        for c in range(classes):
            pattern = rng.random(shape)
            folder = root / split / f"class_{c:02d}"
            folder.mkdir(parents=True)
            for i in range(per_class):
                pixels = np.clip(pattern + 0.2 * rng.standard_normal(shape), 0, 1)
                Image.fromarray((pixels * 255).astype(np.uint8)).save(folder / f"{i}.png")
    return root


def learner_section(learner: str, eval_steps: int = 2, **fields) -> dict:
    """``learner``'s config section: the small inner loop of the tiny runs where the learner
    has one (its options declare ``inner_lr``, ...), and ``fields``."""
    from attnmeta.learners import LEARNERS

    accepted = {field.name for field in dataclasses.fields(LEARNERS[learner].options)}
    inner = {"inner_lr": 0.1, "inner_steps": 1, "eval_steps": eval_steps}
    return {"name": learner, **{k: v for k, v in inner.items() if k in accepted}, **fields}


def tiny_config(data_root: Path, learner: str = "protonet", steps: int = 6, **learner_fields):
    norm = "running" if learner in ("protonet", "matching", "feat") else "batch"
    return config_from_dict({
        "name": f"tiny-{learner}", "seed": 3,
        "data": {"dataset": "image_folder", "root": str(data_root), "image_size": 16,
                 "train": {"n_way": 3, "k_shot": 1, "q_query": 2},
                 "test": {"n_way": 3, "k_shot": 1, "q_query": 2}},
        "model": {"hidden": 8, "norm": norm},
        "learner": learner_section(learner, **learner_fields),
        "train": {"steps": steps, "meta_batch": 2, "lr": 0.01, "log_every": 2,
                  "checkpoint_every": 3, "lr_decay_every": 4, "eval_every": 3,
                  "eval_episodes": 4},
        "eval": {"episodes": 8, "seed": 5},
    })


def tiny_text_config(dataset: str, learner: str = "protonet", steps: int = 4,
                     backbone: str = "text_transformer") -> dict:
    """A tiny text run's config values (needs the real data set, see REAL_DATA)."""
    return {
        "name": f"tiny-{dataset}-{learner}", "seed": 1,
        "data": {"dataset": dataset, "max_length": 24, "vocab_size": 600,
                 "train": {"n_way": 3, "k_shot": 1, "q_query": 2},
                 "test": {"n_way": 4, "k_shot": 1, "q_query": 3}},
        "model": {"backbone": backbone, "hidden": 16, "depth": 1, "heads": 2},
        "learner": learner_section(learner, eval_steps=1),
        "train": {"steps": steps, "meta_batch": 2, "log_every": 2, "checkpoint_every": 2},
        "eval": {"episodes": 8, "seed": 3},
    }


def one_line_error(args: list[str], *expected: str) -> str:
    """Run the CLI; assert it fails with a single line ``Error: ...`` holding ``expected``."""
    from click.testing import CliRunner

    from attnmeta.cli import main

    outcome = CliRunner().invoke(main, [str(a) for a in args])
    assert outcome.exit_code != 0, outcome.output
    assert not isinstance(outcome.exception, Exception) or isinstance(outcome.exception,
                                                                      SystemExit), outcome.exception
    lines = outcome.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), outcome.output
    for part in expected:
        assert part in lines[0], lines[0]
    return lines[0]


def write_config(path: Path, config) -> Path:
    import yaml

    from attnmeta.runs.config import config_to_dict

    path.write_text(yaml.safe_dump(config_to_dict(config)))
    return path


def benchmark_module(name: str, monkeypatch):
    """``benchmarks/<name>.py`` as a module (the benchmarks are scripts, not a package:
    they import each other from their folder, put on sys.path as when they run)."""
    import importlib.util

    folder = Path(__file__).parents[1] / "benchmarks"
    monkeypatch.syspath_prepend(str(folder))
    path = folder / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"benchmarks_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_photo_folder(root: Path) -> tuple[Path, Path]:
    """Real colour photos (scikit-image's samples: a cat, a coffee cup, a rocket, an
    astronaut): ``root/support/<class>/{photo,mirrored}.jpg`` and one held-out crop of each
    in ``root/queries/<class>.jpg``; returns the two folders."""
    from skimage import data

    photos = {"cat": data.chelsea(), "coffee": data.coffee(), "rocket": data.rocket(),
              "astronaut": data.astronaut()}
    support, queries = root / "support", root / "queries"
    queries.mkdir(parents=True)
    for name, pixels in photos.items():
        (support / name).mkdir(parents=True)
        Image.fromarray(pixels).save(support / name / "photo.jpg")
        Image.fromarray(np.ascontiguousarray(pixels[:, ::-1])).save(support / name / "mirrored.jpg")
        height, width = pixels.shape[:2]
        Image.fromarray(pixels[height // 8:, width // 8:]).save(queries / f"{name}.jpg")
    return support, queries
