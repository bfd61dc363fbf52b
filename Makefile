# Everything runs from .venv, created here on first use: a fresh machine needs only Python 3.11.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Reinstall only when pyproject.toml is newer than the last install.
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: install dev test bench lint

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# exec: the recipe's shell steps aside for `bookings dev`. Make passes no signal on: run in the background,
# stop it with `kill -INT PID`, PID as printed in its banner and in .local/dev/README.txt.
dev: $(STAMP)
	exec $(BIN)/bookings dev

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# `make bench BENCH_ARGS=--quick` for small sizes. Installs the test and bench extras (matplotlib)
# whenever pyproject.toml is newer than the last such install.
bench: $(STAMP)
	@if [ ! -f $(VENV)/.installed-bench ] || [ pyproject.toml -nt $(VENV)/.installed-bench ]; then \
		$(BIN)/python -m pip install -e '.[test,bench]' && touch $(VENV)/.installed-bench; fi
	$(BIN)/python -m bench.run_all $(BENCH_ARGS)

# ruff over the tree, mypy strict over every package that ships (pyproject's [tool.mypy] files).
# Installs the dev extra (ruff, mypy) whenever pyproject.toml is newer than the last such install; the
# test extra stays in, so mypy sees the types of the libraries the tests run against.
lint: $(STAMP)
	@if [ ! -f $(VENV)/.installed-dev ] || [ pyproject.toml -nt $(VENV)/.installed-dev ]; then \
		$(BIN)/python -m pip install -e '.[test,dev]' && touch $(VENV)/.installed-dev; fi
	$(BIN)/python -m ruff check .
	$(BIN)/python -m mypy
