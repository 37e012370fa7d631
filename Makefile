# asyncgate: `make run` starts the local stack; `make test` runs every check.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test lint typecheck clean soak openapi package deploy

STAGE ?= dev
ARCH ?= x86_64

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
	rm -rf $(VENV) .venv-python3.* .pytest_cache .mypy_cache .ruff_cache out

soak: $(STAMP)
	$(BIN)/python -m bench.soak --jobs $(or $(JOBS),2000)

openapi: $(STAMP)
	$(BIN)/python -c "import json, yaml; json.dump(yaml.safe_load(open('openapi.yaml')), open('chalicelib/openapi.json', 'w'), indent=1)"

# Deployment artefacts in out/: SAM template (chalice package + deploy/resources.json) and zip.
# RUNTIME=python3.12|python3.13 packages for that Lambda runtime; ARCH=arm64 defaults the stack to arm64.
package: $(STAMP)
	$(BIN)/python -m deploy.package --stage $(STAGE) --arch $(ARCH) $(if $(RUNTIME),--runtime $(RUNTIME)) --out out

deploy: package
	$(BIN)/python -m deploy.deploy --stage $(STAGE) --template out/sam.json $(if $(PARAMS),--parameters $(PARAMS))
