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

setup: $(VENV)/.installed

# The environment is the lock: every package at an exact version, with its hashes.
$(VENV)/.installed: requirements.lock pyproject.toml
	bash tools/install_system_deps.sh
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --require-hashes -r requirements.lock
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $@

# Refresh the lock after editing pyproject.toml's dependencies (the direct ones and their ranges).
# pip-tools resolves with pip itself, for the Python that runs it (3.11 here).
lock:
	$(PYTHON) -m pip install -q pip-tools
	$(PYTHON) -m piptools compile --quiet --upgrade --generate-hashes --strip-extras --allow-unsafe \
	  --no-emit-index-url --no-emit-find-links -o requirements.lock pyproject.toml

data: setup
	$(PY) download_data.py $(if $(DATA),--from "$(DATA)")

tess: setup
	$(PY) tess_pipeline.py

# every feature set, then 4 augmented copies of the pooled statistics (training data only)
features: setup
	$(PY) create_features.py --feature all
	$(PY) create_features.py --feature stats --augment 4

# an evaluation run (reports in media/), then the shipped models on all the data
STATS_MODEL := --model mlp --ensemble 5 --feature stats --augment 4 --all-data
train: setup
	$(PY) neural_network.py --no-save $(TRAIN_ARGS)
	$(PY) neural_network.py --model improved_cnn --all-data
	$(PY) neural_network.py $(STATS_MODEL) --save models/emotion_mlp_stats.h5
	$(PY) neural_network.py $(STATS_MODEL) --norm speaker --save models/emotion_mlp_stats_speaker.h5

plot: setup
	$(PY) plot_model.py

predict: setup
	$(PY) live_predictions.py $$(ls features/Actor_01/*.* | head -n 4)

test: setup
	$(PY) -m pytest -q -rs tests
