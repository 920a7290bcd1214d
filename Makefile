# The two commands of the README: `make run` and `make test`; and `make bench` (never in CI).
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.installed-bench
# e.g. `make bench BENCH_ARGS=--quick` or `BENCH_ARGS="--contacts 2000"`
BENCH_ARGS ?=

.PHONY: run test bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/journeys dev

test: $(STAMP)
	$(VENV)/bin/pytest

$(BENCH_STAMP): $(STAMP)
	$(VENV)/bin/pip install --quiet -e '.[test,bench]'
	touch $(BENCH_STAMP)

# Starts a stack of its own (needs PostgreSQL on 127.0.0.1:5432, like the tests); several minutes.
bench: $(BENCH_STAMP)
	$(VENV)/bin/python -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .data .pytest_cache
