# Two commands on a fresh machine: `make run` and `make test` (see README.md).
# Everything is installed from uv.lock into .venv: `run` and `install` take only the runtime
# dependencies, `bench` adds the bench group, `lint`, `test` and `test-fast` the dev group.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# uv from PATH, else the version the lock was written with, in a small venv of its own under
# .tools: this needs neither root nor a pip that may install into the system Python.
UV_TOOLS := .tools
ifndef UV
UV := $(or $(shell command -v uv 2>/dev/null),$(UV_TOOLS)/bin/uv)
endif
# uv builds .venv with this machine's python3 and never downloads an interpreter of its own.
export UV_PROJECT_ENVIRONMENT := $(VENV)
export UV_PYTHON := $(PYTHON)
export UV_PYTHON_DOWNLOADS := never
# Compile every installed module to bytecode at install, as pip does: where bytecode is not
# written at import (PYTHONDONTWRITEBYTECODE, a read-only venv), each process start would
# otherwise compile its imports again (measured: a worker took 1.8 s to start instead of 0.6).
export UV_COMPILE_BYTECODE := 1
# --locked: install exactly uv.lock, and fail if it no longer matches pyproject.toml (`make lock`).
SYNC := $(UV) sync --locked
# The tiers `test-fast` runs after lint (tests/README.md: the folder under tests/ is the tier).
PYTEST_FAST_ARGS ?= -m "unit or integration"

.PHONY: install install-dev postgres run lint pytest test test-fast bench lock clean-data

$(UV_TOOLS)/bin/uv:
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) (3.11+) is required"; exit 1; }
	$(PYTHON) -m venv $(UV_TOOLS)
	$(UV_TOOLS)/bin/python -m pip install --quiet --disable-pip-version-check 'uv>=0.13,<0.14'

# One stamp per selection, redone when pyproject.toml or uv.lock changes. The runtime and bench
# syncs are --inexact so that `make run` after `make test` keeps the dev tools (a fresh clone
# still gets only the runtime); the dev sync is exact: lint and tests run on the lock alone.
$(VENV)/.synced-runtime: pyproject.toml uv.lock | $(UV)
	$(SYNC) --no-dev --inexact
	@touch $@

$(VENV)/.synced-bench: pyproject.toml uv.lock | $(UV)
	$(SYNC) --no-dev --group bench --inexact
	@touch $@

$(VENV)/.synced-dev: pyproject.toml uv.lock | $(UV)
	$(SYNC)
	@touch $@

postgres:
	@bash scripts/ensure-postgres.sh

install: $(VENV)/.synced-runtime postgres

install-dev: $(VENV)/.synced-dev postgres

run: install
	$(PY) -m app run

lint: $(VENV)/.synced-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

pytest: install-dev
	$(PY) -m pytest $(PYTEST_ARGS)

test: lint pytest

test-fast: lint install-dev
	$(PY) -m pytest $(PYTEST_FAST_ARGS)

# After editing the dependencies in pyproject.toml: re-resolve uv.lock (commit both).
lock: | $(UV)
	$(UV) lock

clean-data:
	rm -rf .data

# Benchmarks: `make bench`, or e.g. `make bench BENCH_ARGS="--quick"` / `"--only 1,2 --reps 5"`.
bench: $(VENV)/.synced-bench postgres
	$(PY) -m bench $(BENCH_ARGS)
