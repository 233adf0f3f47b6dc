# The README's two commands: `make demo` (set up, classify the bundled samples with the bundled
# model) and `make test` (set up, run the default test suite). Both create .venv when missing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.fvdeploy-installed
PYTEST_ARGS ?=

.PHONY: setup demo test test-slow clean-venv

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/fvdeploy classify samples/

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-slow: $(STAMP)
	$(BIN)/python -m pytest -m slow $(PYTEST_ARGS)

clean-venv:
	rm -rf $(VENV)
