# SPDX-License-Identifier: Apache-2.0
# The two commands of the README: `make serve` and `make test`. Everything else supports them.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: serve test install lint typecheck bench clean guard-model

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

serve: $(STAMP)
	$(BIN)/bastion serve

test: $(STAMP)
	scripts/provision.sh
	$(BIN)/pytest --cov --cov-report=term-missing:skip-covered $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

# Retrain the shipped prompt-injection classifier from data/guard-eval and data/guard-bastion (deterministic).
guard-model: $(STAMP)
	$(BIN)/python -m bastion.guard.train --data data/guard-eval data/guard-bastion --out src/bastion/guard/data/injection-model.npz

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage
