# Two commands do all the set-up:  `make demo` (the main job) and `make test` (the test suite).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The CPU build of PyTorch, installed first where no GPU is present: a bare `torch`
# requirement would otherwise pull a multi-GB CUDA build.
TORCH_CPU ?= torch==2.13.0
DEMO_DIR ?= runs/demo-$(shell date +%Y%m%d-%H%M%S)

.PHONY: setup demo test lint bench-overhead clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	@if ! $(BIN)/python -c "import torch" 2>/dev/null; then \
		if command -v nvidia-smi >/dev/null 2>&1; then $(BIN)/pip install --quiet torch; \
		else $(BIN)/pip install --quiet "$(TORCH_CPU)"; fi; \
	fi
	$(BIN)/pip install --quiet -e ".[test,ray]"
	touch $@

# The main job: two PPO peers with disadvantage-weighted distillation on HalfCheetah-v5.
demo: setup
	$(BIN)/dpd train --env HalfCheetah-v5 --algo ppo --peers 2 --total-steps 300000 --seed 0 \
		--set eval.every=50000 --set checkpoint_every=100000 --run-dir $(DEMO_DIR)

# The linter and formatter first (configured in pyproject.toml), then the suite.
test: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q

bench-overhead: setup
	$(BIN)/python benchmarks/overhead.py

clean:
	rm -rf $(VENV) runs
