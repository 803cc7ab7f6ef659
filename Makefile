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

.PHONY: help install browser demo test test-full test-wheel app lint format train bench clean
help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

install: $(VENV)/.installed ## create the virtual environment and install the package (editable)

demo: $(VENV)/.installed ## train + evaluate a VPD task (TASK=depth|segmentation|referring|multitask) on generated data, tiny backbone, CPU (README: times)
	$(PY) -m vpd_lightning.demo --task $(TASK)

# tests/test_app.py drives a real Chromium through Playwright; Playwright's own browser download is not used
# (often unreachable): Debian's `chromium` is installed with apt when missing (as root or with password-less sudo),
# or VPD_CHROMIUM names a Chromium/Chrome binary. Without any, that test fails (it never passes silently).
browser: ## Chromium for the web-page test (apt-get install chromium when missing)
	@if [ -z "$$VPD_CHROMIUM" ] && ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null; then \
	  echo "installing Chromium for tests/test_app.py (apt-get install chromium)"; \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo "sudo -n"); \
	  { $$SUDO apt-get install -y -q chromium >/dev/null 2>&1 || \
	    { $$SUDO apt-get update -q >/dev/null 2>&1 && $$SUDO apt-get install -y -q chromium >/dev/null; }; } || \
	  echo "WARNING: could not install Chromium: tests/test_app.py will fail (set VPD_CHROMIUM=<browser binary>)"; \
	fi

test: $(VENV)/.installed browser ## the default test suite (offline, CPU; installs Chromium for the page test)
	$(PY) -m pytest -q

test-full: $(VENV)/.installed browser ## all tests, including slow full-size ones
	$(PY) -m pytest -q -m ""

test-wheel: $(VENV)/.installed ## build the wheel, install it in a fresh venv, train + predict from another folder (~75 s)
	$(PY) -m pytest -q -m slow tests/test_wheel.py

lint: $(VENV)/.installed ## ruff
	$(PY) -m ruff check src tests scripts

format: $(VENV)/.installed ## ruff format
	$(PY) -m ruff format src tests scripts

train: $(VENV)/.installed ## python -m vpd_lightning.train task=$(TASK) $(ARGS)
	$(PY) -m vpd_lightning.train task=$(TASK) $(ARGS)

app: $(VENV)/.installed ## the web page: make app CKPT=<checkpoint, exported folder or hub id>
	$(PY) -m vpd_lightning.app ckpt_path=$(CKPT) $(ARGS)

bench: $(VENV)/.installed ## scripts/bench.py (tiny UNet, 128 px); ARGS="--unet sd15 --size 512" for the full size
	$(PY) scripts/bench.py $(ARGS)

clean: ## remove caches and run outputs
	rm -rf outputs multirun wandb .pytest_cache data/demo build dist
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
