# vpd_lightning — `make demo` and `make test` do all the set-up themselves on a fresh clone.
.DEFAULT_GOAL := help
SHELL := /bin/bash

VENV ?= .venv
PY := $(VENV)/bin/python
# Without an NVIDIA GPU, pin the CPU build of torch in the same pip command as everything else
# (otherwise pip resolves a multi-GB CUDA torch). With a GPU, any torch>=2.1 from the index.
HAS_GPU := $(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && echo 1)
TORCH_SPEC ?= $(if $(HAS_GPU),torch>=2.1,torch==2.13.0)
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export WANDB_MODE ?= offline
export TOKENIZERS_PARALLELISM ?= false
export NO_ALBUMENTATIONS_UPDATE := 1
TASK ?= depth

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q "$(TORCH_SPEC)" -e ".[dev]"
	touch $@

.PHONY: help install demo test test-full lint format train bench clean
help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

install: $(VENV)/.installed ## create the virtual environment and install the package (editable)

demo: $(VENV)/.installed ## train + evaluate a VPD task (TASK=depth|segmentation|referring|multitask) on generated data, tiny backbone, CPU (README: times)
	$(PY) -m vpd_lightning.demo --task $(TASK)

test: $(VENV)/.installed ## the default test suite (offline, CPU)
	$(PY) -m pytest -q

test-full: $(VENV)/.installed ## all tests, including slow full-size ones
	$(PY) -m pytest -q -m ""

lint: $(VENV)/.installed ## ruff
	$(PY) -m ruff check src tests scripts

format: $(VENV)/.installed ## ruff format
	$(PY) -m ruff format src tests scripts

train: $(VENV)/.installed ## python -m vpd_lightning.train task=$(TASK) $(ARGS)
	$(PY) -m vpd_lightning.train task=$(TASK) $(ARGS)

bench: $(VENV)/.installed ## scripts/bench.py (tiny UNet, 128 px); ARGS="--unet sd15 --size 512" for the full size
	$(PY) scripts/bench.py $(ARGS)

clean: ## remove caches and run outputs
	rm -rf outputs multirun wandb .pytest_cache data/demo
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
