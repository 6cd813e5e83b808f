# handcli — every target creates its own virtual environment from pyproject.toml.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DIR ?= demo_out
JOBS ?= 2

.PHONY: install test test-slow test-all gpu-check demo bench lint clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "torch==2.13.0"
	$(BIN)/pip install -q -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

# the fast lane: everything but the long end-to-end chains marked `slow` (test-slow runs those; CI runs both)
test: $(STAMP)
	$(BIN)/python -m pytest -q -n $(JOBS) -m "not slow" --durations=15

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -n $(JOBS) -m slow --durations=15

test-all: $(STAMP)
	$(BIN)/python -m pytest -q -n $(JOBS) --durations=15

# on a machine with a GPU: the CUDA variants of the device tests, then training/render times per method
# (GPU_CHECK_ARGS="--device cpu --scale 0.25 --steps 4" is a dry run of the script on a CPU machine)
gpu-check: $(STAMP)
	$(BIN)/python scripts/gpu_check.py $(GPU_CHECK_ARGS)

demo: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" bash scripts/demo.sh $(DEMO_DIR)

bench: $(STAMP)
	$(BIN)/python bench/bench_preprocess.py

lint: $(STAMP)
	$(BIN)/ruff check handcli tests bench

clean:
	rm -rf $(DEMO_DIR) .pytest_cache
