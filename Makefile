# The two commands of the README: `make demo` and `make test`. Everything else is a building block.
# They run from the active virtualenv if there is one, else from the project's own .venv (made by setup).
VENV := $(or $(VIRTUAL_ENV),.venv)
PYTHON := $(VENV)/bin/python

.PHONY: setup demo test lock

setup:
	bash scripts/setup.sh

demo: setup
	$(VENV)/bin/pss demo

test: setup
	$(PYTHON) -m pytest

# Regenerate requirements.lock after changing a dependency in pyproject.toml (needs the package index).
lock:
	bash scripts/lock.sh
