# Deep Learning Basics: two commands on a fresh clone.
#   make run    the learning path: every numbered lesson, in order, non-interactive
#   make test   lint + the test suite (what CI runs)
# Both create .venv and install requirements.txt into it the first time (and again only
# when requirements.txt changes).

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.requirements-installed
LESSONS := $(sort $(wildcard [0-9][0-9]*_*.py))

.PHONY: help run test lint exercises bench tables clean

help:  ## list the targets
	@echo "make run    run the learning path: $(LESSONS)"
	@echo "make test   lint (ruff) and run the test suite (pytest, CPU only)"
	@echo "make lint   ruff only"
	@echo "make exercises  check your answers in exercises/ (python exercises/check.py 03: one lesson)"
	@echo "make bench  measure speed and accuracy; writes results/benchmarks.json"
	@echo "make tables regenerate the measured tables in docs/results.md (3 seeds per row; slow)"
	@echo "make clean  remove generated output (figures, models, results, exported PNGs, caches); keeps the dataset"

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): requirements.txt | $(PY)
	$(PY) -m pip install -r requirements.txt
	@touch $(STAMP)

# 09 serves until Ctrl-C when run by hand; here it checks itself and stops (--self-check).
run: $(STAMP)
	@set -e; for lesson in $(LESSONS); do \
		printf '\n######## %s ########\n' "$$lesson"; \
		case $$lesson in 09_*) args=--self-check;; *) args=;; esac; \
		$(PY) $$lesson $$args; \
	done

lint: $(STAMP)
	$(PY) -m ruff check .

# -n auto: pytest-xdist spreads the tests over every core (most tests start lessons as
# separate processes and wait for them); -n 0 runs them one at a time. --maxschedchunk 1:
# a worker takes one test at a time, the longest first (tests/conftest.py), instead of
# a quarter of its share at once (measured: one worker got every long test and the
# other then sat idle for half of the run).
test: lint
	$(PY) -m pytest -n auto --maxschedchunk 1

# Passed or not yet, with a hint, for every exercise of every lesson; exit 1 until all pass.
exercises: $(STAMP)
	$(PY) exercises/check.py

bench: $(STAMP)
	$(PY) benchmarks/benchmark.py

tables: $(STAMP)
	$(PY) benchmarks/tables.py --update-readme

clean:
	rm -rf figures results data/mnist_png .pytest_cache .ruff_cache
	rm -f models/*.pt
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +
