# `make train` and `make test` work on a fresh machine: both build .venv first if it is
# missing or older than pyproject.toml, and skip the (minutes-long) install otherwise.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install train test test-slow lint bench

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

install: $(STAMP) ## Create .venv and install dml with its dev tools (skipped when up to date)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

train: install ## Run the default experiment (extra overrides: make train ARGS="loss=contrastive")
	WANDB_MODE=$${WANDB_MODE:-offline} $(BIN)/dml train $(ARGS)

test: install ## Run the fast test suite
	$(BIN)/python -m pytest -q

test-slow: install ## Run every test, the slow ones too
	$(BIN)/python -m pytest -q -m ""

lint: install ## Check style with ruff
	$(BIN)/ruff check dml tests scripts
	$(BIN)/ruff format --check dml tests scripts

bench: install ## Run the benchmarks (prints tables; minutes)
	@for script in scripts/bench_*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done
