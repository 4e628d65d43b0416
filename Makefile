# The two commands: `make demo` and `make test`. Both set everything up first:
# the virtual environment in .venv, the project with its dev extras, and the Kafka jars
# (resolved once from Maven Central into ~/.cache/safeguarding-broker, reused afterwards).
#
# Python packages come from requirements.lock only: exact versions with their hashes (pip
# refuses anything else), runtime, dev and build tools alike. `make lock` refreshes it with uv
# from pyproject.toml and requirements-tools.in (docs/security.md, "Reproducible installs").

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
LOCK := requirements.lock
UV_VERSION := 0.13.8

.PHONY: setup demo test lint unit integration faults bench clean lock

setup: $(STAMP)
	$(BIN)/broker kafka jars
	sh scripts/ensure_chromium.sh >/dev/null

$(STAMP): pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --require-hashes -r $(LOCK)
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

# Newest versions pyproject.toml allows, for Python 3.11 and later on every platform, hashed.
lock:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet uv==$(UV_VERSION)
	$(BIN)/uv pip compile pyproject.toml requirements-tools.in --extra dev --upgrade \
		--generate-hashes --universal --python-version 3.11 --quiet -o $(LOCK) \
		--custom-compile-command "make lock"

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
