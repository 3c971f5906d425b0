# Two commands set everything up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CONFIG ?= configs/quickstart.py
ARGS ?=

.PHONY: run test test-all install benchmark clean

$(BIN)/activate: requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.lock
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(BIN)/activate

install: $(BIN)/activate

run: install
	$(BIN)/python -m metatrain --config $(CONFIG) $(ARGS)

# Tests run in parallel on up to 4 CPU cores (pytest-xdist); ARGS="-n 0" runs them in one process.
test: install
	$(BIN)/python -m pytest -q -n auto --maxprocesses=4 -m "not slow" $(ARGS)

test-all: install
	$(BIN)/python -m pytest -q -n auto --maxprocesses=4 $(ARGS)

benchmark: install
	$(BIN)/python benchmarks/lo_step_cost.py

clean:
	rm -rf $(VENV) runs
