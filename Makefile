# Two commands on a fresh machine: `make demo` and `make test`. Each sets up .venv first.
VENV ?= .venv
BIN := $(VENV)/bin
PYTHON ?= python3
# The CPU wheel of torch must be installed before anything that depends on torch: a plain
# `torch` requirement would pull a multi-GB CUDA build.
TORCH_PIN ?= torch==2.13.0

.PHONY: setup demo test test-all lint clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH_PIN)
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

demo: setup
	$(BIN)/ocrnet run

lint: setup
	$(BIN)/ruff check src tests benchmarks

test: lint
	$(BIN)/pytest

test-all: lint
	$(BIN)/pytest -m 'not gpu'

clean:
	rm -rf $(VENV) runs build *.egg-info
