# asyncgate: `make run` starts the local stack; `make test` runs every check.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test lint typecheck clean soak openapi

install: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/python -m chalicelib.local

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

test: lint typecheck
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache out

soak: $(STAMP)
	$(BIN)/python -m bench.soak --jobs $(or $(JOBS),2000)

openapi: $(STAMP)
	$(BIN)/python -c "import json, yaml; json.dump(yaml.safe_load(open('openapi.yaml')), open('chalicelib/openapi.json', 'w'), indent=1)"
