"""What the text loaders share (attnmeta.tasks.text): the layering of the tasks package,
and episode shapes refused on a real intent split. The loaders' own tests are in
test_clinc150.py, test_banking77.py and test_intents.py; the tokenizer's in tests/test_bpe.py."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

import attnmeta.tasks
from attnmeta.tasks import FewShotEpisodes, LabelledSplit, check_episode_shape
from attnmeta.tasks.intents import load_intent_tokens
from attnmeta.bpe import train_tokenizer
from support import REAL_DATA, needs_real_data


# --------------------------------------------------------------------------- real data


@needs_real_data
def test_episode_shapes_that_do_not_fit_a_split_are_refused():
    tokenizer = train_tokenizer(["a b c"] * 3, 300)
    val = load_intent_tokens("clinc150", str(REAL_DATA), "val", tokenizer, 8)
    assert val.token_ids.shape == (3000, 8) and val.items is val.token_ids
    assert isinstance(val, LabelledSplit) and val.split == "val"
    with pytest.raises(ValueError, match=r"n_way=25 exceeds the 20 classes"):
        FewShotEpisodes(val.token_ids, val.labels.tolist(), n_way=25)
    with pytest.raises(ValueError, match=r"k_shot \+ q_query = 100 \+ 51 = 151 exceeds the 150"):
        FewShotEpisodes(val.token_ids, val.labels.tolist(), k_shot=100, q_query=51)
    # the same shapes, refused before any episode is built, naming the config keys
    with pytest.raises(ValueError) as error:
        check_episode_shape(val, 25, 1, 15, "data.test")
    assert str(error.value) == ("data.test: n_way=25 but the val split has 20 classes: "
                                "expected n_way <= 20")
    with pytest.raises(ValueError, match=r"^data.test: k_shot \+ q_query = 151 but class "
                                         r"'\w+' has 150 examples: expected at most 150$"):
        check_episode_shape(val, 5, 100, 51, "data.test")
    check_episode_shape(val, 20, 100, 50, "data.test")


def test_every_task_module_imports_alone_and_none_imports_runs():
    """tasks.text is what the loaders share and the loaders register themselves when the
    package is imported: each module imports on its own in a fresh interpreter (no cycle),
    the registry then holds the text data sets, and nothing under tasks/ needs the run
    layer."""
    code = (
        "import sys, pkgutil, importlib, attnmeta.tasks.text, attnmeta.tasks as t\n"
        "assert {'clinc150', 'banking77'} <= set(t.DATASETS)\n"
        "for m in pkgutil.iter_modules(t.__path__): importlib.import_module(t.__name__ + '.' + m.name)\n"
        "print(sorted(m for m in sys.modules if m.startswith('attnmeta.runs')))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
    for path in Path(attnmeta.tasks.__file__).parent.glob("*.py"):  # TYPE_CHECKING ones too
        imported = [node.module if isinstance(node, ast.ImportFrom) else alias.name
                    for node in ast.walk(ast.parse(path.read_text()))
                    if isinstance(node, (ast.Import, ast.ImportFrom))
                    for alias in node.names]
        assert not [m for m in imported if m and m.startswith("attnmeta.runs")], path
