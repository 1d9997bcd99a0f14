"""models/ is a leaf below the run layer: it never imports config types, and the text
encoders share their padding helpers without importing one another in a cycle."""

from __future__ import annotations

import ast
from pathlib import Path

import attnmeta.models

MODELS = Path(attnmeta.models.__file__).parent


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at any depth (under TYPE_CHECKING and in functions too)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_no_model_module_imports_the_run_layer():
    for path in sorted(MODELS.glob("*.py")):
        runs = {m for m in imported_modules(path) if m.startswith("attnmeta.runs")}
        assert not runs, f"{path.name} imports {sorted(runs)}"


def test_hf_encoder_does_not_import_the_text_transformer_module():
    assert "attnmeta.models.text" not in imported_modules(MODELS / "hf.py")
    assert "attnmeta.models.tokens" in imported_modules(MODELS / "hf.py")
