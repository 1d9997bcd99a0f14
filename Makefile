# Two commands for a fresh machine: `make demo` and `make test`. Each creates .venv if
# missing, installs torch first (the pinned CPU build, so the project's `torch>=2.3` is
# already met and pip pulls no CUDA packages), then the project, then runs.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.attnmeta-installed
DOCS_STAMP := $(VENV)/.attnmeta-docs-installed

.PHONY: demo test install clean docs docs-build

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/attnmeta demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

# The documentation site (mkdocs.yml, docs/): `make docs` serves it at http://127.0.0.1:8000/
# with live reload; `make docs-build` builds it into site/ with --strict (what .ci/run runs), so
# a broken link, a missing page or a docstring mkdocstrings cannot read fails.
$(DOCS_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[docs]"
	touch $(DOCS_STAMP)

docs: $(DOCS_STAMP)
	$(BIN)/mkdocs serve

docs-build: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

clean:
	rm -rf $(VENV) runs .pytest_cache site
