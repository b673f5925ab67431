# Everything installs itself: uv (into .tools/ if missing), then the workspace into .venv.
# Only Python 3.11 is assumed; uv never downloads a Python build.
SHELL := /bin/bash
PYTHON ?= python3.11
export UV_PYTHON_DOWNLOADS := never
export UV_PYTHON_PREFERENCE := only-system
export UV_LINK_MODE := copy
UV := $(shell command -v uv 2>/dev/null || echo .tools/bin/uv)
RUN := $(UV) run --frozen --python $(PYTHON)

.PHONY: help install run test faults lint up down logs bench schemas screenshots clean

help:
	@echo "make run      start the whole platform locally (embedded Postgres + Tansu broker)"
	@echo "make test     run the whole test suite"
	@echo "make faults   the longer fault suite: a programme posted under kill -9, broker and PostgreSQL restarts, poison records"
	@echo "make lint     ruff + mypy"
	@echo "make schemas  regenerate event JSON Schemas and the AsyncAPI document"
	@echo "make up/down/logs   the Docker Compose stack (needs a Docker engine)"
	@echo "make bench    the performance benchmark"
	@echo "make screenshots   the reporting dashboard at 1400 px and 390 px, in headless Chromium (tests/artifacts/)"

.tools/bin/uv:
	@command -v $(PYTHON) >/dev/null || { echo "Python 3.11 is required ($(PYTHON) not found)"; exit 1; }
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet --disable-pip-version-check "uv>=0.5"

.venv/.installed: $(UV) uv.lock pyproject.toml libs/*/pyproject.toml services/*/pyproject.toml tools/pyproject.toml
	$(UV) sync --frozen --python $(PYTHON) --all-packages
	@touch $@

install: .venv/.installed

run: install
	$(RUN) pmtct dev $(ARGS)

test: install
	$(RUN) pytest $(PYTEST_ARGS)

# The fault suite (tests/e2e/test_fault_suite.py; `make test` runs it at CI size) with a bigger
# programme and a 20 s broker freeze; its table goes to tests/artifacts/fault-suite.md.
faults: install
	PMTCT_FAULTS_CLIENTS=$${PMTCT_FAULTS_CLIENTS:-120} PMTCT_FAULTS_MONTHS=$${PMTCT_FAULTS_MONTHS:-18} \
	PMTCT_FAULTS_FREEZE_S=$${PMTCT_FAULTS_FREEZE_S:-20} \
	$(RUN) pytest -q -s -p no:cacheprovider --timeout 1800 $(PYTEST_ARGS) tests/e2e/test_fault_suite.py
	@cat tests/artifacts/fault-suite.md

lint: install
	$(RUN) ruff check libs services tests tools
	$(RUN) mypy libs/events/pmtct_events libs/servicekit/servicekit tools/pmtct_tools

schemas: install
	$(RUN) pmtct schemas

up:
	docker compose -f deploy/docker-compose.yml --env-file deploy/.env up -d --build --wait

down:
	docker compose -f deploy/docker-compose.yml --env-file deploy/.env down

logs:
	docker compose -f deploy/docker-compose.yml --env-file deploy/.env logs -f

bench: install
	$(RUN) python -m bench

screenshots: install
	$(RUN) pytest -q -p no:cacheprovider $(PYTEST_ARGS) tests/reporting/test_dashboard.py
	@ls -l tests/artifacts/dashboard-1400.png tests/artifacts/dashboard-390.png

clean:
	rm -rf .venv .tools .pmtct .pytest_cache
