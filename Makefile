# Two commands do all the set-up:  `make demo` (the main job) and `make test` (the test suite).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Every dependency at the version the tests passed with (`make lock` refreshes it).
LOCK := requirements.lock
# PyTorch is installed first, at the lock's version: where no GPU is present its CPU build
# (TORCH_CPU), because a bare `torch` requirement would pull a multi-GB CUDA build. PyPI's own
# torch for Linux is the CUDA build: there, give PyTorch's CPU index as TORCH_INDEX
# (make setup TORCH_INDEX=https://download.pytorch.org/whl/cpu); an index that serves the CPU
# build under the plain name (as this project's machines have) needs none.
TORCH_PIN := $(or $(shell grep -m1 '^torch==' $(LOCK) 2>/dev/null),torch)
TORCH_CPU ?= $(TORCH_PIN)
TORCH_INDEX ?=
TORCH_FROM := $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX),)
DEMO_DIR ?= runs/demo-$(shell date +%Y%m%d-%H%M%S)
LOCK_VENV := .venv-lock

.PHONY: setup demo test lint lock bench-overhead clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	@if ! $(BIN)/python -c "import torch" 2>/dev/null; then \
		if command -v nvidia-smi >/dev/null 2>&1; then $(BIN)/pip install --quiet "$(TORCH_PIN)"; \
		else $(BIN)/pip install --quiet $(TORCH_FROM) "$(TORCH_CPU)"; fi; \
	fi
	$(BIN)/pip install --quiet -r $(LOCK)
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

# Refresh the lock: resolve pyproject.toml's requirements (with the test, ray and export extras) afresh
# in a throwaway venv and freeze it. PyTorch stays at TORCH_CPU (`make lock TORCH_CPU=torch==X`
# moves it); its local build label (+cpu) and the CUDA-only packages are left out, so that one
# lock serves CPU and GPU machines.
lock:
	rm -rf $(LOCK_VENV)
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/pip install --quiet $(TORCH_FROM) "$(TORCH_CPU)"
	$(LOCK_VENV)/bin/pip install --quiet -e ".[test,ray,export]"
	@{ echo "# Exact versions of every dependency: make setup installs them; make lock refreshes them (then make test)."; \
	   echo "# Python $$($(LOCK_VENV)/bin/python -c 'import platform; print(platform.python_version())')."; \
	   $(LOCK_VENV)/bin/pip freeze --exclude-editable | sed -E 's/^(torch==[^+]+)[+].*/\1/' | grep -vE '^(nvidia-|triton==)'; \
	} > $(LOCK).tmp
	mv $(LOCK).tmp $(LOCK)
	rm -rf $(LOCK_VENV)

# The main job: two PPO peers with disadvantage-weighted distillation on HalfCheetah-v5.
demo: setup
	$(BIN)/dpd train --env HalfCheetah-v5 --algo ppo --peers 2 --total-steps 300000 --seed 0 \
		--set eval.every=50000 --set checkpoint_every=100000 --run-dir $(DEMO_DIR)

# The linter and formatter first (configured in pyproject.toml), then the suite on TEST_WORKERS
# processes (pytest-xdist; the Ray and process-pool tests are the long ones, so two workers
# roughly halve the wall-clock on a 2-core machine).
TEST_WORKERS ?= 2
test: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS)

bench-overhead: setup
	$(BIN)/python benchmarks/overhead.py

clean:
	rm -rf $(VENV) $(LOCK_VENV) runs
