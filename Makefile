# servicenet — the two commands a user needs are `make up` and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: up test bench lint deps venv clean

# setup.py compiles the protobuf codec's C loops (servicenet/api/pb/_cpb.c) into the checkout: a changed
# C file reinstalls, which rebuilds it
$(STAMP): pyproject.toml setup.py servicenet/api/pb/_cpb.c
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

## Start an embedded cluster (API server + every landed component).
up: $(STAMP)
	$(BIN)/servicenet up $(ARGS)

## Install system packages the tests need, then run the test suite.
deps:
	bash scripts/install-deps.sh

# Two pytest-xdist workers: most tests wait on processes and sockets, so two at once keep both cores
# busy. --dist loadgroup keeps each xdist_group on one worker (tests/conftest.py says which and why);
# `make test XDIST=` runs everything in one process. --durations lists the slowest tests in the log.
XDIST ?= -n 2 --dist loadgroup
test: $(STAMP) deps
	$(BIN)/python -m pytest -q -ra --durations=25 $(XDIST) $(PYTEST_ARGS)

bench: $(STAMP) deps
	$(BIN)/python -m bench $(BENCH)

lint: $(STAMP)
	$(BIN)/ruff check servicenet tests bench

clean:
	rm -rf $(VENV) build *.egg-info
