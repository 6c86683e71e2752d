# Two commands for a fresh machine with Python 3.11+ and make:
#   make quickstart   — virtualenv, install, run a demo plan on the embedded default
#   make test         — virtualenv with test dependencies, then the whole suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: quickstart test lint venv bench clean docs

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@rm -f $(VENV)/.installed-*; touch $@

venv: $(STAMP)

quickstart: $(STAMP)
	$(BIN)/aos quickstart

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check aos tests bench

bench: $(STAMP)
	$(BIN)/python -m bench.steps

docs: $(STAMP)
	$(BIN)/aos docs generate

clean:
	rm -rf $(VENV) .pytest_cache
