# Developer tasks. CI (.ci/run and .github/workflows/ci.yml) runs exactly these.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STACK  ?= prod

.PHONY: help install plan lock system-deps lint format typecheck unit test bench clean

help:
	@echo "make plan        install and show what the $(STACK) stack declares (offline, with cost)"
	@echo "make test        install everything and run lint, types, unit and sandbox integration tests"
	@echo "make lint | format | typecheck | unit | bench | system-deps | lock | clean"

# The locked versions, each checked against its hash (requirements/dev.txt: runtime and dev), then
# the project itself, editable, without resolving anything again: what CI tests is what was locked.
$(BIN)/koinonia-infra: pyproject.toml requirements/dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements/dev.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@touch $@

install: $(BIN)/koinonia-infra

# After changing pyproject.toml's dependencies (and requirements/*.in, which list them): resolve
# again, for every Python >= 3.11 and platform at once (--universal), with hashes. Dependabot's uv
# ecosystem reruns the same command, read from each lock's header.
UV_COMPILE := $(BIN)/uv pip compile --universal --python-version 3.11 --generate-hashes --quiet
lock: install
	$(UV_COMPILE) --output-file requirements/runtime.txt requirements/runtime.in
	$(UV_COMPILE) --output-file requirements/dev.txt requirements/dev.in

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
