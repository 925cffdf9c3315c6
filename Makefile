# The two commands of the README: `make demo` (set up, then run a local swarm) and `make test`.
PYTHON ?= python3
PIP = $(PYTHON) -m pip

.PHONY: setup demo app test test-fast bench

setup:
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e ".[test,build]"

demo: setup
	$(PYTHON) -m app.entry demo

app: setup
	$(PYTHON) -m app.entry

test: setup
	$(PYTHON) -m pytest -q -p no:cacheprovider tests

test-fast:
	$(PYTHON) -m pytest -q -m "not slow" tests

bench:
	$(PYTHON) bench/bench_engine.py
