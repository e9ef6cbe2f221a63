# QuantMatrix. `make run` starts everything on the simulated market and the paper broker;
# `make test` runs the test suite. Both create the virtual environment on first use.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: run test init console scheduler lint bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): requirements.txt | $(PY)
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

$(DEV_STAMP): requirements.txt requirements-dev.txt | $(PY)
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP) $@

init: $(STAMP)
	$(PY) -m engine init

# Console and scheduler together; Ctrl-C stops both.
run: init
	@bash scripts/run.sh

console: $(STAMP)
	$(PY) -m streamlit run app/console.py

scheduler: $(STAMP)
	$(PY) scheduler.py

test: $(DEV_STAMP)
	$(PY) -m pytest

lint: $(DEV_STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf var .venv
