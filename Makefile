# Headwater: `make setup` once (idempotent), then `make demo` or `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint bench clean

setup: $(STAMP)
	@$(BIN)/headwater broker install
	@# the status page's browser test runs Debian's chromium (Playwright drives it; no `playwright install`)
	@# a fresh machine may have no package lists yet: update them once when the first install finds nothing
	@test -x /usr/bin/chromium || DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium \
		|| (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	@touch $(STAMP)

demo: setup
	$(BIN)/headwater up

lint: setup
	$(BIN)/ruff check headwater streams schemas quality connectors tests bench
	$(BIN)/mypy

test: lint
	$(BIN)/pytest -q --durations=25

# Each benchmark starts its own broker (and registry, PostgreSQL) and prints figures with ratios to a baseline
# measured in the same run. bench/pipeline.py builds bench/.venv-quix for the Quix Streams comparison.
bench: setup
	$(BIN)/python bench/kafka_baseline.py
	$(BIN)/python bench/registry.py
	$(BIN)/python bench/pipeline.py
	$(BIN)/python bench/connectors.py
	$(BIN)/python bench/memory.py
	$(BIN)/python bench/produce.py
	$(BIN)/python bench/replay.py
	$(BIN)/python bench/enrich.py
	$(BIN)/python bench/redact.py

clean:
	rm -rf $(VENV) .cache .headwater .pytest_cache .mypy_cache .ruff_cache
