# The two set-up commands in README.md: `make demo` (main job) and `make test` (test suite).
# Both install first. torch is pinned so a CPU machine takes the local 2.13.0 CPU wheel
# instead of the newest multi-GB CUDA build.
PYTHON ?= python3
TORCH_VERSION ?= 2.13.0

.PHONY: install demo test test-fast bench gpu-check

install:
	$(PYTHON) -m pip install -q "torch==$(TORCH_VERSION)"
	$(PYTHON) -m pip install -q -e ".[test]"

demo: install
	$(PYTHON) recipes/text_classification.py --output_dir outputs/demo

test: install
	$(PYTHON) -m pytest -q -ra

test-fast: install
	$(PYTHON) -m pytest -q -ra -m "not slow"

bench: install
	$(PYTHON) recipes/benchmarks/bench_optimizer.py

# Needs a CUDA GPU: the gpu-marked tests and the GPU benchmarks, outputs in outputs/gpu_checks/.
gpu-check:
	bash recipes/benchmarks/gpu_checks.sh
