# servicenet — the two commands a user needs are `make up` and `make test`.
# The interpreter the venv is made from: the distribution's CPython 3.11 when it can make a venv and
# build the C codec (Debian builds it with profile-guided and link-time optimisation, and links the
# interpreter statically: 15-35 % less CPU than a plain `./configure --enable-shared` build such as
# pyenv's, for the same code; docs/benchmarks.md, "The interpreter"), else whatever `python3` is.
DEB_PY := /usr/bin/python3.11
PY ?= $(shell $(DEB_PY) -c 'import ensurepip, sqlite3, ssl, sysconfig, os, sys; \
  sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' 2>/dev/null \
  && echo $(DEB_PY) || echo python3)
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
