# Every target installs what it needs on first use (scripts/bootstrap.sh).
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV        := .venv
PY          := $(VENV)/bin/python
BIN         := $(VENV)/bin
PG_BIN      ?= /usr/lib/postgresql/15/bin
SCENARIO    ?= planned
INPUT       ?= events/console/switchover.json
RUNS        ?= 5
CHAOS_RUNS  ?= 10

export PG_BIN
export SAM_CLI_TELEMETRY := 0
export AWS_DEFAULT_REGION ?= us-east-1
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: help setup pg-ready test lint ruff cfn-lint checkov asl-lint pytest sam-build build render \
        rehearse run-local bench chaos clean

help:
	@echo "make test       everything CI runs: ruff, cfn-lint, checkov, ASL lint, pytest, sam build"
	@echo "make rehearse   a real failover on this machine (SCENARIO=planned|...|all)"
	@echo "make run-local  INPUT=events/... : run any state machine input on a local pair"
	@echo "make bench      benchmarks -> build/bench/"
	@echo "make chaos      fault campaign -> build/chaos/"
	@echo "make build      sam build"

# ---- first-use installs -------------------------------------------------------------
$(VENV)/.stamp: requirements-dev.txt scripts/bootstrap.sh
	@scripts/bootstrap.sh venv
	@touch $@

.venv-checkov/.stamp: requirements-checkov.txt
	@scripts/bootstrap.sh checkov
	@touch $@

node_modules/.stamp: package.json package-lock.json
	@scripts/bootstrap.sh node
	@touch $@

# no stamp: a cheap check every time (PostgreSQL lives outside the repo; PG_BIN may change)
pg-ready:
	@scripts/bootstrap.sh pg

setup: $(VENV)/.stamp .venv-checkov/.stamp node_modules/.stamp pg-ready

# ---- the one test command -------------------------------------------------------------
test: setup
	@$(MAKE) --no-print-directory lint pytest sam-build
	@echo "make test: all green"

lint: ruff cfn-lint checkov asl-lint

ruff: $(VENV)/.stamp
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

cfn-lint: $(VENV)/.stamp
	$(BIN)/cfn-lint --include-checks I -- template.yaml

checkov: .venv-checkov/.stamp
	.venv-checkov/bin/checkov -f template.yaml --framework cloudformation --skip-download --compact --quiet

asl-lint: $(VENV)/.stamp node_modules/.stamp
	@for f in statemachines/*.asl.json; do \
	  [ -e "$$f" ] || continue; \
	  echo "statelint + asl-validator $$f"; \
	  $(BIN)/statelint --ignore=URI "$$f" || exit 1; \
	  node_modules/.bin/asl-validator --silent --json-path "$$f" || exit 1; \
	done

pytest: $(VENV)/.stamp pg-ready
	$(PY) -m pytest

sam-build build: $(VENV)/.stamp
	$(BIN)/sam build --cached --parallel

render: $(VENV)/.stamp
	PYTHONPATH=layers/db $(PY) -m statemachines.render
	PYTHONPATH=layers/db $(PY) -m statemachines.diagram
	PYTHONPATH=layers/db $(PY) -m observability.render

# ---- local runs, benchmarks, fault campaign -------------------------------------------
rehearse: $(VENV)/.stamp pg-ready
	$(PY) -m local.rehearse --scenario $(SCENARIO)

run-local: $(VENV)/.stamp pg-ready
	$(PY) -m local.rehearse --input $(INPUT)

bench: $(VENV)/.stamp pg-ready
	$(PY) -m bench.run --runs $(RUNS)

chaos: $(VENV)/.stamp pg-ready
	$(PY) -m bench.chaos --runs $(CHAOS_RUNS)

clean:
	rm -rf .aws-sam build .pytest_cache .ruff_cache
