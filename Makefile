# Two commands on a fresh machine: `make run` and `make test` (see README.md).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: install run test lint pytest clean-data

$(STAMP): pyproject.toml
	@command -v python3 >/dev/null || { echo "python3 (3.11+) is required"; exit 1; }
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)
	@bash scripts/ensure-postgres.sh

run: install
	$(PY) -m app run

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

pytest: install
	$(PY) -m pytest $(PYTEST_ARGS)

test: lint pytest

clean-data:
	rm -rf .data

# Benchmarks: `make bench`, or e.g. `make bench BENCH_ARGS="--quick"` / `"--only 1,2 --reps 5"`.
.PHONY: bench
bench: install
	$(PY) -m bench $(BENCH_ARGS)
