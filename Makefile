# Two commands do everything on a fresh machine:
#   make all DATA=/path/to/corpora   set up, import (or, without DATA, download) the corpora,
#                                    run every script of the pipeline in order
#   make test                        set up and run the tests
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
DATA   ?=
# Arguments for the evaluation run of `make all` (see `python neural_network.py --help`).
TRAIN_ARGS ?= --protocol random

.PHONY: all setup lock data tess features train plot predict test clean-features

all: setup data tess features train plot predict

# ... and the shipped LiteRT exports checked once against their H5 (converted again here and
# compared; recorded in ~/.cache/ser): the predictor trusts no export it has not verified
setup: $(VENV)/.installed
	@$(PY) -m ser.cli.export --verify $(wildcard models/*.h5) >/dev/null \
	  || echo "note: a shipped export is not this machine's conversion of its H5; its H5 is served instead"

# The environment is the lock: every package at an exact version, with its hashes.
$(VENV)/.installed: requirements.txt pyproject.toml
	bash tools/install_system_deps.sh
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --require-hashes -r requirements.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $@

# Refresh the lock after editing pyproject.toml's dependencies (the direct ones and their ranges).
# pip-tools resolves with pip itself, for the Python that runs it (3.11 here).
lock:
	$(PYTHON) -m pip install -q pip-tools
	$(PYTHON) -m piptools compile --quiet --upgrade --generate-hashes --strip-extras --allow-unsafe \
	  --no-emit-index-url --no-emit-find-links -o requirements.txt pyproject.toml

data: setup
	$(PY) download_data.py $(if $(DATA),--from "$(DATA)")

tess: setup
	$(PY) tess_pipeline.py

# every feature set, then 4 augmented copies of the recommended set (training data only)
features: setup
	$(PY) create_features.py --feature all
	$(PY) create_features.py --feature stats_whisper --augment 4

# an evaluation run of the improved CNN (reports in media/), then the shipped models on all the
# data. The shipped recipes, their options and the files they save, are one table:
# ser/recipes.py (`python neural_network.py --help` lists them; docs/results.md their figures).
train: setup
	$(PY) neural_network.py --recipe cnn --no-save $(TRAIN_ARGS)
	$(PY) neural_network.py --recipe cnn --all-data
	$(PY) neural_network.py --recipe recommended --all-data
	$(PY) neural_network.py --recipe adaptive --all-data

plot: setup
	$(PY) plot_model.py

# a demo: the recommended model on one clip (strong intensity where there is one) of each of
# four emotions (the third field of a RAVDESS name: 01 neutral, 03 happy, 04 sad, 05 angry).
# RAVDESS actor 01 must be in features/ first (make data, or make all): the shell looks for the
# clips when the recipe runs, after `make all`'s data step (make's own $(wildcard) may answer
# from a directory cache made before the data arrived).
predict: setup
	@demo=""; for e in 01 03 04 05; do for i in 02 01; do \
	  set -- features/Actor_01/03-01-$$e-$$i-01-01-01.*; \
	  if [ -e "$$1" ]; then demo="$$demo $$1"; break; fi; done; done; \
	if [ -z "$$demo" ]; then \
	  echo "make predict: no demo clips in features/Actor_01 yet: run 'make data' (or 'make all')" \
	    "first, or judge your own recording: $(PY) live_predictions.py my_recording.wav" >&2; \
	  exit 1; fi; \
	echo "true labels: neutral, happy, sad, angry"; \
	echo "$(PY) live_predictions.py$$demo"; $(PY) live_predictions.py $$demo

test: setup
	$(PY) -m pytest -q -rs tests
