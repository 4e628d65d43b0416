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

.PHONY: setup tools demo test lint unit integration faults bench clean lock

# Tools the deployment tests run, in a project-local folder (nothing installed system-wide):
# kubeconform (Go module proxy) validates the rendered Strimzi resources against the CRDs;
# promtool and prometheus (Debian's `prometheus` package, unpacked) check and run the alert
# rules; libfaketime (Debian) gives `broker doctor` a skewed clock in its test.
TOOLS := .tools
KUBECONFORM_VERSION := v0.8.0
KUBECONFORM := $(TOOLS)/bin/kubeconform
PROMTOOL := $(TOOLS)/prometheus/usr/bin/promtool
FAKETIME := $(TOOLS)/faketime/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1

setup: $(STAMP)
	$(BIN)/broker kafka jars
	sh scripts/ensure_chromium.sh >/dev/null

tools: $(KUBECONFORM) $(PROMTOOL) $(FAKETIME)

$(KUBECONFORM):
	GOBIN=$(abspath $(TOOLS))/bin go install github.com/yannh/kubeconform/cmd/kubeconform@$(KUBECONFORM_VERSION)

$(PROMTOOL):
	sh scripts/fetch_deb_tool.sh prometheus $(TOOLS)/prometheus

$(FAKETIME):
	sh scripts/fetch_deb_tool.sh libfaketime $(TOOLS)/faketime

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

# The three-broker fault tests take several minutes each: `make faults` runs them. The rest runs
# on two workers (most integration tests wait on Kafka, not on a core), each with its own local
# Kafka; a test file stays on one worker (its module fixtures are built once). The slowest tests
# are listed at the end.
test: setup tools lint
	$(BIN)/pytest -m "not faults" -n 2 --dist loadfile --durations=15

unit: $(STAMP) tools
	$(BIN)/pytest -m "not integration"

integration: setup tools
	$(BIN)/pytest -m "integration and not faults"

faults: setup tools
	$(BIN)/pytest -m faults

clean:
	rm -rf $(VENV) $(TOOLS) var .pytest_cache .mypy_cache .ruff_cache
