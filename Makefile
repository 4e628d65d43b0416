# The two commands: `make demo` and `make test`. Both set everything up first:
# the virtual environment in .venv, the project with its dev extras, and the Kafka jars
# (resolved once from Maven Central into ~/.cache/safeguarding-broker, reused afterwards).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: setup demo test lint unit integration faults bench clean

setup: $(STAMP)
	$(BIN)/broker kafka jars
	sh scripts/ensure_chromium.sh >/dev/null

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: setup
	$(BIN)/broker demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

# The three-broker fault tests take several minutes each: `make faults` runs them.
test: setup lint
	$(BIN)/pytest -m "not faults"

unit: $(STAMP)
	$(BIN)/pytest -m "not integration"

integration: setup
	$(BIN)/pytest -m "integration and not faults"

faults: setup
	$(BIN)/pytest -m faults

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
