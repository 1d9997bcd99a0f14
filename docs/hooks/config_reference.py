"""MkDocs hook: the config reference, generated from the config dataclasses at build time.

``docs/config.md`` holds the line ``<!-- config-reference -->``; this hook replaces it with
one table per run kind, walking each kind's schema with :func:`dataclasses.fields`: every
key's dotted name, type, default, accepted range (``field.metadata["limits"]``) and the
``# comment`` written beside or above it in the source. The schemas come from whatever the
package registers (a run-kind registry if there is one, else ``attnmeta.runs.config.SCHEMAS``),
plus any config dataclass a learner's registry entry carries, so a new key, section, learner
or run kind appears here without editing the docs.

It also publishes ``benchmarks/results`` (every table and picture) and
``benchmarks/README.md`` at the same paths, so pages link the tables the scripts write
without copies, and turns the reST roles left in docstrings (``:class:`X```) into plain code spans.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
import io
import re
import sys
import textwrap
import tokenize
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator

MARKER = "<!-- config-reference -->"
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))
PUBLISHED = ("benchmarks/results/**/*.md", "benchmarks/results/**/*.png", "benchmarks/README.md")


# ------------------------------------------------------------------- where schemas live
def run_kinds() -> dict[str, Any]:
    """Run kind name -> its registry entry (or its schema), from the first registry found:
    ``attnmeta.runs.kinds.run_kinds()`` (entries with ``name`` and ``schema``), else a
    ``{name: schema}`` mapping (``attnmeta.runs.config.SCHEMAS``)."""
    for module_name, attribute in (("attnmeta.runs.kinds", "run_kinds"),
                                   ("attnmeta.runs.kinds", "KINDS"),
                                   ("attnmeta.runs.config", "SCHEMAS")):
        try:
            registry = getattr(importlib.import_module(module_name), attribute)
            registry = registry() if callable(registry) else registry
        except (ImportError, AttributeError):
            continue
        if isinstance(registry, dict):
            entries = dict(registry)
        else:
            entries = {getattr(entry, "name", str(entry)): entry for entry in registry}
        kinds = {name: entry for name, entry in entries.items() if _dataclass_in(entry)}
        if kinds:
            return kinds
    # no registry answered: every top-level config of the schema module (a dataclass with
    # cross_problems()), named by its kind
    module = importlib.import_module("attnmeta.runs.schema")
    return {str(getattr(cls, "kind", cls.__name__)): cls for cls in vars(module).values()
            if _is_dataclass_type(cls) and cls.__module__ == module.__name__
            and hasattr(cls, "cross_problems")}


def learner_sections() -> dict[str, type]:
    """Learner name -> its own config dataclass, where a learner entry carries one."""
    try:
        learners = importlib.import_module("attnmeta.runs.build").LEARNERS
    except (ImportError, AttributeError):
        return {}
    found = {}
    for name, entry in dict(learners).items():
        for attribute in ("options", "config", "config_class", "schema", "section"):
            schema = getattr(entry, attribute, None)
            if _is_dataclass_type(schema):
                found[name] = schema
                break
    return found


def _is_dataclass_type(value: Any) -> bool:
    return isinstance(value, type) and dataclasses.is_dataclass(value)


def _dataclass_in(entry: Any) -> type | None:
    """The schema of a registry entry: the entry itself, or its first dataclass-type field."""
    if _is_dataclass_type(entry):
        return entry
    for attribute in ("schema", "config", "config_class"):
        if _is_dataclass_type(value := getattr(entry, attribute, None)):
            return value
    return None


# ------------------------------------------------------------------- reading one schema
@lru_cache(maxsize=None)
def comments(cls: type) -> dict[str, str]:
    """Field name -> the comments above it and at the end of its line(s) in ``cls``'s source."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    by_line: dict[int, str] = {}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            by_line[token.start[0]] = token.string.lstrip("#").strip()
    lines = source.splitlines()
    found = {}
    for node in ast.parse(source).body[0].body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            above, line = [], node.lineno - 1
            while line >= 1 and lines[line - 1].strip().startswith("#"):
                above.insert(0, by_line.get(line, ""))
                line -= 1
            beside = [by_line[n] for n in range(node.lineno, node.end_lineno + 1) if n in by_line]
            found[node.target.id] = " ".join(part for part in above + beside if part)
    return found


def describe_limits(limits: Any) -> str:
    """``Limits(at_least=1, choices=...)`` as words a reader checks a value against."""
    if limits is None:
        return ""
    if not dataclasses.is_dataclass(limits):
        return str(limits)
    signs = {"at_least": "≥", "above": ">", "at_most": "≤", "below": "<"}
    parts = []
    for item in dataclasses.fields(limits):
        value = getattr(limits, item.name)
        if value is None:
            continue
        if item.name in signs:
            parts.append(f"{signs[item.name]} {value:g}" if isinstance(value, float)
                         else f"{signs[item.name]} {value}")
        elif item.name == "choices":  # a registry's names are read now (limits.allowed)
            parts.append("one of " + ", ".join(f"`{choice}`" for choice in limits.allowed()))
        elif item.name == "pattern":
            parts.append(f"matches `{getattr(value, 'pattern', value)}`")
        elif item.name == "each":
            parts.append(f"each {describe_limits(value)}")
        else:
            parts.append(f"{item.name} {value!r}")
    return ", ".join(parts)


def type_name(annotation: Any) -> str:
    if isinstance(annotation, str):
        return annotation
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def keys(schema: type, instance: Any, prefix: str = "") -> Iterator[tuple[str, ...]]:
    """(key, type, default, accepted, comment) for every key under ``schema``, sections
    walked depth first; defaults are read from ``instance`` (a section's factory may set
    other defaults than its class)."""
    notes: dict[str, str] = {}
    for cls in reversed(schema.__mro__):  # a subclass's keys and those it inherits
        if _is_dataclass_type(cls):
            notes.update(comments(cls))
    for item in dataclasses.fields(schema):
        value = getattr(instance, item.name, item.default)
        name = prefix + item.name
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            yield from keys(type(value), value, name + ".")
            continue
        yield (name, type_name(item.type), _default(value),
               describe_limits(item.metadata.get("limits")), notes.get(item.name, ""))


def _default(value: Any) -> str:
    if value is dataclasses.MISSING:
        return "(required)"
    if value is None:
        return "`null`"
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    return f"`{value!r}`" if not isinstance(value, str) else f"`{value}`"


def _instance(schema: type) -> Any:
    try:
        return schema()
    except TypeError:  # a key without a default: read the class's own defaults
        return None


def table(schema: type) -> str:
    rows = ["| key | type | default | accepts | what it is |", "|---|---|---|---|---|"]
    for key, kind, default, accepted, note in keys(schema, _instance(schema)):
        cells = (f"`{key}`", kind, default, accepted, note)
        rows.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(rows)


def _summary(schema: type) -> str:
    doc = inspect.getdoc(schema) or ""
    generated = doc.startswith(schema.__name__ + "(")  # dataclass's own signature line
    return "" if generated else " ".join(doc.split())


def reference() -> str:
    parts = []
    for kind, entry in run_kinds().items():
        schema = _dataclass_in(entry)
        parts.append(f"## `kind: {kind}`\n")
        about = [getattr(entry, "description", None) or "", _summary(schema)]
        if getattr(entry, "implicit", False):
            about.append("A config without a `kind:` key is of this kind.")
        if aliases := getattr(entry, "aliases", ()):
            about.append("Also read under its older name" + ("s " if len(aliases) > 1 else " ")
                         + ", ".join(f"`{alias}`" for alias in aliases) + ".")
        sentences = [part.strip() for part in about if part and part.strip()]
        sentences = [s[0].upper() + s[1:] + ("" if s[-1] in ".!?" else ".") for s in sentences]
        if sentences:
            parts.append(_roles(" ".join(sentences)) + "\n")
        parts.append(f"Schema: `{schema.__module__}.{schema.__qualname__}`.\n")
        parts.append(table(schema) + "\n")
    sections = learner_sections()
    if sections:
        parts.append("## Learner sections\n")
        for name, schema in sections.items():
            parts.append(f"### `learner.name: {name}`\n")
            parts.append(table(schema) + "\n")
    return "\n".join(parts)


# ------------------------------------------------------------------------- mkdocs hooks
ROLE = re.compile(r":(?:py:)?(?:func|class|mod|data|meth|attr|obj|exc):`~?([^`]+)`")


def _roles(markdown: str) -> str:
    return ROLE.sub(r"`\1`", markdown)


def on_files(files: Any, config: Any) -> Any:
    from mkdocs.structure.files import File

    for pattern in PUBLISHED:
        for path in sorted(ROOT.glob(pattern)):
            relative = path.relative_to(ROOT).as_posix()
            if files.get_file_from_path(relative) is None:
                files.append(File(relative, str(ROOT), config["site_dir"],
                                  config["use_directory_urls"]))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    if MARKER in markdown:
        markdown = markdown.replace(MARKER, reference())
    return markdown


HTML_ROLE = re.compile(r":(?:py:)?(?:func|class|mod|data|meth|attr|obj|exc):(?=<code)")


def on_page_content(html: str, page: Any, config: Any, files: Any) -> str:
    """Docstrings are reST-flavoured: ``:class:`X``` renders as ``:class:`` + code; drop the
    role so only the code span is left."""
    return HTML_ROLE.sub("", html)
