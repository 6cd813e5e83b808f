# handcli — every target creates its own virtual environment from pyproject.toml.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DIR ?= demo_out
JOBS ?= 2

.PHONY: install test demo bench lint clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "torch==2.13.0"
	$(BIN)/pip install -q -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q -n $(JOBS) --durations=15

demo: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" bash scripts/demo.sh $(DEMO_DIR)

bench: $(STAMP)
	$(BIN)/python bench/bench_preprocess.py

lint: $(STAMP)
	$(BIN)/ruff check handcli tests bench

clean:
	rm -rf $(DEMO_DIR) .pytest_cache
