"""The package's shape, checked: no import cycle, few edges between its parts, and no learner capability inferred from a class."""

from __future__ import annotations

import ast
import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "attnmeta"
# between the package's top-level parts (modules and subpackages); 61 since fewshot's
# built-in encoders (fewshot/encoders.py) locate their pretrained weights through models
MAX_UNIT_EDGES = 61
FLOOR = ("attnmeta", "attnmeta.errors", "attnmeta.settings")


def modules() -> dict[str, Path]:
    found = {}
    for path in SRC.rglob("*.py"):
        name = ".".join(("attnmeta", *path.relative_to(SRC).with_suffix("").parts))
        found[name.removesuffix(".__init__")] = path
    return found


def imports(path: Path, known: dict[str, Path]) -> set[str]:
    """The attnmeta modules a file imports (``from a import b`` counts ``a.b`` if a module)."""
    targets = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in known
                     else node.module for alias in node.names]
        else:
            continue
        for name in names:
            while name not in known and "." in name:
                name = name.rsplit(".", 1)[0]
            if name in known:
                targets.add(name)
    return targets


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(path, known) - {name} for name, path in known.items()}


def unit(module: str) -> str:
    return ".".join(module.split(".")[:2])


def test_no_import_cycle_between_modules():
    edges = graph()
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for target in sorted(edges[node]):
            # a package's __init__ re-exporting its own modules is not a cycle of design
            if target.startswith(node + ".") or node.startswith(target + "."):
                continue
            assert state.get(target) != 1, " -> ".join(trail + [node, target])
            if target not in state:
                visit(target, trail + [node])
        state[node] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module, [])


def test_few_edges_between_the_top_level_parts():
    # the floor every part stands on: attnmeta.errors (the one family of user-fixable errors)
    # and attnmeta.settings (how a config key declares its default and range)
    edges = {(unit(a), unit(b)) for a, targets in graph().items() for b in targets
             if unit(a) != unit(b) and unit(b) not in FLOOR}
    assert len(edges) <= MAX_UNIT_EDGES, sorted(edges)
    assert not {(a, b) for a, b in edges if (b, a) in edges}, "two parts import each other"


def test_lower_layers_never_import_the_run_layer():
    lower = ("attnmeta.learners", "attnmeta.models", "attnmeta.tasks", "attnmeta.rl",
             "attnmeta.viz", "attnmeta.train", "attnmeta.checkpoint", "attnmeta.attention")
    for module, targets in graph().items():
        if module.startswith(lower):
            assert not {t for t in targets if t.startswith("attnmeta.runs")}, module


def test_no_learner_capability_is_inferred_from_its_class():
    learners = ("MAML", "Reptile", "ProtoNet", "MatchingNet", "FEAT", "InContextClassifier",
                "InContextLearner", "GradientLearner", "PolicyGradientMAML")
    pattern = re.compile(r"isinstance\([^)]*\b(" + "|".join(learners) + r")\b")
    for path in SRC.rglob("*.py"):
        assert not pattern.search(path.read_text()), path
