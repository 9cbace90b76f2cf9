# Two commands on a fresh machine:  `make demo` (set up, run the main job)  and  `make test` (set up, run all tests).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/pip install --quiet --constraint constraints.txt
STAMP  := $(VENV)/.installed

.PHONY: setup demo test lint bench docs clean

$(STAMP): pyproject.toml adapters/captum/pyproject.toml adapters/zennit/pyproject.toml workbench/pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(PIP) torch==2.14.1 torchvision==0.29.1
	$(PIP) -e ".[captum,zennit,eval,dev]" -e adapters/captum -e adapters/zennit -e workbench
	touch $@

$(VENV)/.installed-test: $(STAMP) requirements-test.txt
	$(PIP) -r requirements-test.txt
	touch $@

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/xai-plugins demo

test: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/mypy
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet
	$(BIN)/python -m pytest -q

bench: $(VENV)/.installed-test
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

docs: $(VENV)/.installed-test
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

clean:
	rm -rf $(VENV) out site
