# Patroli developer tasks. Needs only python3 (with its venv module) and make; `make test`
# installs the system packages it needs (PostgreSQL + PostGIS, Chromium, Mosquitto, nginx) on
# Debian/Ubuntu.
#
#   make demo                  run the demo on embedded SQLite (no database server)
#   make test                  lint, type-check and run the whole test suite
#   make test PYTEST_ARGS='-k geo -x'
#   make lint | format | lock | bench | clean | distclean

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PIP := $(BIN)/python -m pip install --quiet --disable-pip-version-check
LOCK_ARGS := --universal --generate-hashes --python-version 3.11 --quiet
PYTEST_ARGS ?=
DEMO_ARGS ?=
# bench/ may be absent from a fresh clone (git keeps no empty folders); lint only what exists.
LINT_PATHS := service tests $(wildcard bench)
BENCHES := $(sort $(wildcard bench/*.py))

.PHONY: help venv lock demo test lint format bench system-deps clean distclean

help:
	@echo "make demo       run the demo on embedded SQLite (http://127.0.0.1:8000)"
	@echo "make test       system deps, ruff, mypy, pytest (PYTEST_ARGS='...' to pass options)"
	@echo "make lint       ruff check, ruff format --check, mypy, import layers"
	@echo "make format     apply ruff's fixes and formatting"
	@echo "make lock       re-resolve requirements.lock and requirements-dev.lock"
	@echo "make bench      run each bench/*.py"
	@echo "make clean      remove caches and build output (distclean: the venv too)"

venv: $(STAMP)

# Re-installs only when pyproject.toml or the lock is newer than the stamp (or the venv is
# gone). The exact versions (and hashes) come from requirements-dev.lock; the project itself
# is installed editable on top, without resolving anything again.
$(STAMP): pyproject.toml requirements-dev.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) --require-hashes -r requirements-dev.lock
	$(PIP) --no-deps -e .
	@touch $@

# Resolve the dependencies of pyproject.toml again, for every platform and Python >= 3.11:
# requirements.lock (what the service needs at run time; the Docker image installs it) and
# requirements-dev.lock (plus the test and lint tools; `make venv` and CI install it).
lock: venv
	$(BIN)/uv pip compile pyproject.toml $(LOCK_ARGS) -o requirements.lock
	$(BIN)/uv pip compile pyproject.toml --extra dev $(LOCK_ARGS) -o requirements-dev.lock

demo: venv
	$(BIN)/patroli demo $(DEMO_ARGS)

system-deps:
	bash scripts/install-system-deps.sh

lint: venv
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)
	$(BIN)/mypy
	$(BIN)/lint-imports

format: venv
	$(BIN)/ruff check --fix $(LINT_PATHS)
	$(BIN)/ruff format $(LINT_PATHS)

# Steps in order in one recipe (not as prerequisites), so that `make -j` keeps the order.
# Any failing step fails the target; pytest's exit 5 (no tests collected) included.
test: venv
	bash scripts/install-system-deps.sh
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/pytest $(PYTEST_ARGS)

bench: venv
ifeq ($(BENCHES),)
	@echo "no benchmarks in bench/"
else
	@for script in $(BENCHES); do \
		echo "== $$script"; \
		$(BIN)/python "$$script"; \
	done
endif

clean:
	rm -rf build dist test-artifacts .pytest_cache .mypy_cache .ruff_cache *.egg-info
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
