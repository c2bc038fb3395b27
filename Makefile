# The two commands of the README: `make demo` and `make test`. Everything else is a building block.
PYTHON ?= python3

.PHONY: setup demo test

setup:
	bash scripts/setup.sh

demo: setup
	pss demo

test: setup
	$(PYTHON) -m pytest
