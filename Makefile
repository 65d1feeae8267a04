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

.PHONY: all setup data tess features train plot predict test clean-features

all: setup data tess features train plot predict

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt
	bash tools/install_system_deps.sh
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	touch $@

data: setup
	$(PY) download_data.py $(if $(DATA),--from "$(DATA)")

tess: setup
	$(PY) tess_pipeline.py

features: setup
	$(PY) create_features.py --feature all

# an evaluation run (reports in media/), then the shipped model on all the data
train: setup
	$(PY) neural_network.py --no-save $(TRAIN_ARGS)
	$(PY) neural_network.py --model improved_cnn --all-data

plot: setup
	$(PY) plot_model.py

predict: setup
	$(PY) live_predictions.py $$(ls features/Actor_01/*.* | head -n 4)

test: setup
	$(PY) -m pytest -q -rs tests
