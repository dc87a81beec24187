# Developer tasks. CI (.ci/run and .github/workflows/ci.yml) runs exactly these.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STACK  ?= prod

.PHONY: help install plan system-deps lint format typecheck unit test bench clean

help:
	@echo "make plan        install and show what the $(STACK) stack declares (offline, with cost)"
	@echo "make test        install everything and run lint, types, unit and sandbox integration tests"
	@echo "make lint | format | typecheck | unit | bench | system-deps | clean"

$(BIN)/koinonia-infra: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

install: $(BIN)/koinonia-infra

plan: install
	$(BIN)/koinonia-infra plan --stack $(STACK)

# PostgreSQL, Redis and Caddy for the sandbox and its integration tests.
system-deps:
	scripts/system-deps.sh

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

typecheck: install
	$(BIN)/mypy koinonia_infra scripts benchmarks
	# Two Pulumi entry points are both named __main__: checked one at a time.
	$(BIN)/mypy stacks/__main__.py
	$(BIN)/mypy policy/__main__.py

unit: install
	$(BIN)/pytest -m "not integration"

test: install system-deps lint typecheck
	$(BIN)/pytest

bench: install system-deps
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis *.egg-info
