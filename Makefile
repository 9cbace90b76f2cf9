# Two commands on a fresh machine:  `make demo` (set up, run the main job)  and  `make test` (set up, run all tests).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/pip install --quiet --constraint constraints.txt
STAMP  := $(VENV)/.installed

# The Zennit-facing tests run twice: on the constrained zennit (0.5.1) and on zennit 1.0.0, installed without
# dependencies into a directory put first on PYTHONPATH (1.0.0 declares Python >= 3.11.11; its dependencies click,
# numpy, pillow, torch and torchvision are already in the venv).
ZENNIT_NEXT  := $(VENV)/zennit-1.0.0
ZENNIT_TESTS := tests/canonizers/test_zennit.py tests/canonizers/test_zennit_releases.py \
                tests/canonizers/test_zennit_gradient_composites.py tests/canonizers/test_zennit_rule_theory.py \
                tests/canonizers/test_lrp_conservation.py tests/test_readme.py::test_readme_zennit_quick_start_runs

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

$(ZENNIT_NEXT)/.installed: $(STAMP)
	$(BIN)/python -m pip install --quiet --no-deps --ignore-requires-python --target $(ZENNIT_NEXT) zennit==1.0.0
	touch $@

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/xai-plugins demo

test: $(VENV)/.installed-test $(ZENNIT_NEXT)/.installed
	$(BIN)/ruff check .
	$(BIN)/mypy
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet
	$(BIN)/python -m pytest -q -rs
	PYTHONPATH=$(ZENNIT_NEXT) $(BIN)/python -m pytest -q -p no:cacheprovider $(ZENNIT_TESTS)

bench: $(VENV)/.installed-test
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

docs: $(VENV)/.installed-test
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

clean:
	rm -rf $(VENV) out site
