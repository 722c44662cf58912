# fer-sweep: every entry point a user needs. `make install` is the only set-up step and
# every other target depends on it, so a fresh machine with just Python works.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
BUDGET ?=
JOBS   ?= 1
ARGS   ?=
DATA   ?=
# BACKEND=jax (or torch) trains on that Keras backend instead of TensorFlow.
BACKEND ?=
ifneq ($(BACKEND),)
export KERAS_BACKEND := $(BACKEND)
endif
SWEEPS := $(basename $(notdir $(wildcard sweeps/*.yaml)))
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: install test lint format ui best bench schema reproduce demo clean help docs-screenshots $(addprefix sweep-,$(SWEEPS))

help:
	@echo "make install            create .venv and install fer-sweep (editable) with its tools"
	@echo "make test               lint (ruff) and run the test suite (pytest)"
	@echo "make sweep-NAME         run sweeps/NAME.yaml (BUDGET=smoke|quick|thesis JOBS=N DATA=path)"
	@echo "make demo               a smoke sweep on a synthetic set (no FER-2013 needed)"
	@echo "make best               the top 3 finished trials at each budget beside the thesis's top 3"
	@echo "make report-STUDY       paired tests between a study's trials (e.g. report-dropout-smoke)"
	@echo "make ui                 MLflow UI on the local store (prints the link; ARGS=--port N)"
	@echo "make schema             sweeps/sweep.schema.json, the sweep files' JSON Schema for editors"
	@echo "make bench              the throughput benchmark (vs reference, vs JAX, pooled vs malloc memory)"
	@echo "make reproduce          the thesis's top 3 at full length, 3 seeds (resumable; hours a run on a CPU)"
	@echo "make docs-screenshots   screenshots of the MLflow UI (docs/img/) from mlruns/"
	@echo "any target: BACKEND=jax to train on JAX (a GPU machine: see README)"
	@echo "make services           PostgreSQL + MLflow server on 127.0.0.1, with passwords (source .services/env)"
	@echo "make services-stop      stop them (their data stays in .services/)"
	@echo "make test-distributed   only the multi-worker test (real PostgreSQL + MLflow server)"
	@echo "sweeps: $(SWEEPS)"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $@

install: $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check fer_sweep tests docs tools benchmarks
	$(VENV)/bin/ruff format --check fer_sweep tests docs tools benchmarks

format: $(STAMP)
	$(VENV)/bin/ruff format fer_sweep tests docs tools benchmarks
	$(VENV)/bin/ruff check --fix fer_sweep tests docs tools benchmarks

test: lint
	$(PY) -m pytest $(ARGS)

# report-STUDY: paired tests between the study's trials (e.g. make report-dropout-smoke).
report-%: $(STAMP)
	$(PY) -m fer_sweep report $* $(ARGS)

$(addprefix sweep-,$(SWEEPS)): sweep-%: $(STAMP)
	$(PY) -m fer_sweep sweep $* $(if $(BUDGET),--budget $(BUDGET)) --jobs $(JOBS) $(if $(DATA),--data $(DATA)) $(ARGS)

# Try everything without FER-2013: a synthetic set in its schema, then a smoke sweep on it.
demo: $(STAMP)
	$(PY) -m fer_sweep data synthetic data/synthetic-fer2013.csv
	$(PY) -m fer_sweep sweep dropout --budget smoke --data data/synthetic-fer2013.csv $(ARGS)

best: $(STAMP)
	$(PY) -m fer_sweep best --top 3 $(ARGS)

ui: $(STAMP)
	$(PY) -m fer_sweep ui $(ARGS)

# Screenshots of the UI for the README (docs/img/) from the studies in mlruns/ (run a sweep
# first, e.g. make sweep-dropout BUDGET=smoke); needs Debian's chromium (apt-get install).
docs-screenshots: $(STAMP)
	$(PY) -m pip install --quiet -e '.[docs]'
	$(PY) docs/screenshots.py --store mlruns $(ARGS)

reproduce: $(STAMP)
	$(PY) -m fer_sweep reproduce $(if $(DATA),--data $(DATA)) $(ARGS)

# The JSON Schema of a sweep file, for editor completion (tests/test_space.py checks it is current).
schema: $(STAMP)
	$(PY) -m fer_sweep schema > sweeps/sweep.schema.json

bench: $(STAMP)
	$(PY) -m benchmarks $(if $(DATA),--data $(DATA)) $(ARGS)

clean:
	rm -rf .pytest_cache .ruff_cache build *.egg-info

# PostgreSQL's binaries (apt-get, as root) for `services` and the distributed test.
postgres: $(STAMP)
	$(PY) -m tools.services install

services: postgres
	$(PY) -m tools.services start --dir .services $(ARGS)

services-stop: $(STAMP)
	$(PY) -m tools.services stop --dir .services

# `make test` runs this test too; here alone. Without PostgreSQL and apt it is skipped.
test-distributed: $(STAMP)
	-$(PY) -m tools.services install
	$(PY) -m pytest -m distributed $(ARGS)
