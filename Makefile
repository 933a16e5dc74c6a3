# SPDX-License-Identifier: Apache-2.0
# The two commands of the README: `make serve` and `make test`. Everything else supports them.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Every machine installs the same versions: the dependencies from the hashed lock file, then
# Bastion itself without resolving anything (`make lock` regenerates the locks from pyproject.toml).
LOCK := requirements-dev.lock

.PHONY: serve test soak install check lint typecheck security lock bench clean guard-model

$(STAMP): pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --require-hashes -r $(LOCK)
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

install: $(STAMP)

serve: $(STAMP)
	$(BIN)/bastion serve

# On both cores: two pytest-xdist workers, each with its own PostgreSQL, Redis and Redis Cluster;
# coverage is combined from both. PYTEST_ARGS="-n 0" runs it serially (docs/ci.md).
test: check
	scripts/provision.sh
	$(BIN)/pytest -n 2 --cov --cov-report=term-missing:skip-covered $(PYTEST_ARGS)

# The load-and-faults scenario (tests/e2e/test_load_faults.py) run for longer, its fault cycle
# repeated: `make soak SOAK_SECONDS=1800 SOAK_CLIENTS=40`. Not part of `make test`.
SOAK_SECONDS ?= 600
SOAK_CLIENTS ?= 24
soak: $(STAMP)
	scripts/provision.sh
	BASTION_SOAK_SECONDS=$(SOAK_SECONDS) BASTION_SOAK_CLIENTS=$(SOAK_CLIENTS) $(BIN)/pytest \
		tests/e2e/test_load_faults.py -n 0 -p no:cacheprovider -rP $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

# The repository's guards, run before the suite by `make test` (and so by .ci/run); docs/ci.md.
check: lint typecheck security
	$(BIN)/python scripts/check_license_headers.py
	$(BIN)/python scripts/check_lock.py

# No medium or high bandit finding (each exception is justified inline with `# nosec`), and no
# secret that .secrets.baseline does not list.
security: $(STAMP)
	$(BIN)/bandit --quiet --recursive src scripts bench --severity-level medium
	$(BIN)/python scripts/check_secrets.py

lock: $(STAMP)
	$(BIN)/pip-compile --quiet --generate-hashes --strip-extras --allow-unsafe --no-emit-index-url \
		--no-emit-find-links --output-file requirements.lock pyproject.toml
	$(BIN)/pip-compile --quiet --generate-hashes --strip-extras --allow-unsafe --no-emit-index-url \
		--no-emit-find-links --extra dev --output-file requirements-dev.lock pyproject.toml

# Every benchmark, one table of ratios against baselines measured in the same run (docs/performance.md).
# `make bench BENCH_ARGS=--quick` for a short look. Needs wrk and redis-server (scripts/provision.sh).
bench: $(STAMP)
	$(BIN)/python bench/run_all.py $(BENCH_ARGS)

# Retrain the shipped prompt-injection classifier from data/guard-eval and data/guard-bastion (deterministic).
guard-model: $(STAMP)
	$(BIN)/python -m bastion.guard.train --data data/guard-eval data/guard-bastion --out src/bastion/guard/data/injection-model.npz

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage
