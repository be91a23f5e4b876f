# `make test` and `make demo` set up everything they need in ./.venv on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test test-slow demo bench bench-compare clean

$(STAMP): setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest

test-slow: $(STAMP)
	$(BIN)/python -m pytest -m slow

demo: $(STAMP)
	$(BIN)/python -m rnnlab demo

# PyTorch side by side (CPU build, optional): installs the [compare] extra first.
bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[compare]'
	$(BIN)/python benchmarks/bench_step.py

clean:
	rm -rf $(VENV) runs .pytest_cache .hypothesis build *.egg-info
