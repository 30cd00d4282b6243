# The two commands: `make run` and `make test`. Everything else is set up by them.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

var:
	mkdir -p var

## run: start the bot on SQLite with the example partnership (the console when no Slack/Teams credentials)
run: $(STAMP) var
	$(BIN)/escalation-bot db upgrade
	$(BIN)/escalation-bot check-config
	$(BIN)/escalation-bot serve

## lint: ruff, mypy and the import-linter layer contracts
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

## test: install everything needed, lint, and run the whole suite (PostgreSQL included)
test: $(STAMP) lint
	bash scripts/ensure-postgres.sh
	bash scripts/ensure-chromium.sh
	$(BIN)/pytest -q

## bench: the benchmarks, written to BENCHMARKS.md (about 10 minutes; PostgreSQL included)
bench: $(STAMP)
	bash scripts/ensure-postgres.sh
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
