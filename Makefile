# The two set-up commands in README.md: `make demo` (main job) and `make test` (test suite).
# Both install first, into the environment chosen below. torch is pinned so a CPU machine takes the
# local 2.13.0 CPU wheel instead of the newest multi-GB CUDA build.
#
# Which Python: an active virtualenv (VIRTUAL_ENV) or conda environment other than `base` (CONDA_PREFIX)
# is used as it is. Otherwise a project-local `.venv` is created from the `python3` on PATH (a stock
# Debian/Ubuntu python3 is "externally managed", PEP 668, and refuses `pip install`; a pyenv python3 works
# too) and every target runs with `.venv/bin` first on PATH, as if it were activated, so the `accelerate`
# and `torchrun` launchers the tests start are the venv's. `make PYTHON=/path/to/python test` overrides all
# of this.
TORCH_VERSION ?= 2.13.0
VENV ?= .venv

ifndef PYTHON
  ifneq ($(VIRTUAL_ENV),)
    USE_VENV :=
  else ifneq ($(and $(CONDA_PREFIX),$(filter-out base,$(CONDA_DEFAULT_ENV))),)
    USE_VENV :=
  else
    USE_VENV := 1
  endif
endif

ifdef USE_VENV
  # Resolved now, before PATH points into the venv: the interpreter the venv is made from.
  BASE_PYTHON := $(shell command -v python3)
  export VIRTUAL_ENV := $(abspath $(VENV))
  export PATH := $(VIRTUAL_ENV)/bin:$(PATH)
  PYTHON := $(VIRTUAL_ENV)/bin/python
  ENVIRONMENT := $(VENV)/bin/python
else
  PYTHON ?= python3
  ENVIRONMENT :=
endif

.PHONY: install demo study test test-fast test-oldest bench gpu-check

$(VENV)/bin/python:
	@test -n "$(BASE_PYTHON)" || { echo "make: no python3 on PATH to create $(VENV) from"; exit 1; }
	$(BASE_PYTHON) -m venv $(VENV) || { echo "make: '$(BASE_PYTHON) -m venv' failed; on Debian/Ubuntu: sudo apt install python3-venv"; rm -rf $(VENV); exit 1; }

install: $(ENVIRONMENT)
	$(PYTHON) -m pip install -q "torch==$(TORCH_VERSION)"
	$(PYTHON) -m pip install -q -e ".[test]" "torch==$(TORCH_VERSION)"

demo: install
	$(PYTHON) recipes/text_classification.py --output_dir outputs/demo

# The definitive study of the paper's claims (verdicts, power, calibration, dose-response, ablation, GSM8K
# analogue): at most 25 minutes on 2 CPU cores, outputs in outputs/study/.
study: install
	$(PYTHON) recipes/study.py --output_dir outputs/study

test: install
	$(PYTHON) -m pytest -q -ra

test-fast: install
	$(PYTHON) -m pytest -q -ra -m "not slow"

# The oldest versions pyproject.toml declares, tested: every `name>=X` of its dependencies is installed as
# `name==X` (torch stays $(TORCH_VERSION), the only CPU build here; no test extras: their tests skip) into
# their own .venv-oldest, made from the same python3, and the fast suite runs there.
OLDEST_VENV ?= .venv-oldest
OLDEST_PINS = $(shell sed -n '/^dependencies = \[/,/^\]/s/^ *"\([A-Za-z0-9_.-]*\)>=\([0-9][0-9.]*\)[,"].*/\1==\2/p' pyproject.toml | grep -v '^torch==')

test-oldest:
	test -x $(OLDEST_VENV)/bin/python || python3 -m venv $(OLDEST_VENV)
	$(OLDEST_VENV)/bin/python -m pip install -q "torch==$(TORCH_VERSION)" $(OLDEST_PINS) "pytest>=8" -e .
	$(OLDEST_VENV)/bin/python -m pip list 2>/dev/null | grep -i -E '^(torch|transformers|accelerate|peft|datasets|evaluate|qiskit|qiskit-aer|numpy|scipy|matplotlib|pyyaml) '
	VIRTUAL_ENV=$(abspath $(OLDEST_VENV)) PATH=$(abspath $(OLDEST_VENV))/bin:$$PATH $(OLDEST_VENV)/bin/python -m pytest -q -ra -m "not slow" -p no:cacheprovider

bench: install
	$(PYTHON) recipes/benchmarks/bench_optimizer.py

# Needs a CUDA GPU: the gpu-marked tests and the GPU benchmarks, outputs in outputs/gpu_checks/.
gpu-check:
	bash recipes/benchmarks/gpu_checks.sh
