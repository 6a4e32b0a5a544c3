# Quick start: `make demo` then `make test`. Both create .venv when it is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: demo test lint typecheck unit bench bench-fast validate clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(DEV_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[dev,xlsx,dask]"
	touch $(STAMP) $@

# A real what-if: serving llama3.1-70b on 8 x H100, and training it on 64; writes two HTML reports.
demo: $(STAMP)
	@mkdir -p reports
	$(BIN)/planner estimate inference --model llama3.1-70b --hardware h100-sxm --devices 8 --tp 8 \
		--concurrency 64 --input-len 2048 --output-len 512 --out reports/inference.html --force
	$(BIN)/planner estimate training --model llama3.1-70b --hardware h100-sxm --devices 64 --tp 8 --pp 2 \
		--global-batch 512 --seq-len 4096 --out reports/training.html --force
	@echo
	@echo "reports written:"
	@echo "  $(CURDIR)/reports/inference.html"
	@echo "  $(CURDIR)/reports/training.html"

lint: $(DEV_STAMP)
	$(BIN)/ruff check planner hardware_db workloads solvers cli.py tests benchmarks

typecheck: $(DEV_STAMP)
	$(BIN)/mypy planner hardware_db workloads solvers cli.py

unit: $(DEV_STAMP)
	$(BIN)/pytest

# The engine's speed, measured (never asserted). `bench-fast` takes a few rounds each for `make test`.
bench: $(DEV_STAMP)
	$(BIN)/pytest benchmarks --benchmark-columns=min,median,max,rounds

bench-fast: $(DEV_STAMP)
	$(BIN)/pytest benchmarks -q --benchmark-min-rounds=3 --benchmark-max-time=0.2 --benchmark-warmup=off \
		--benchmark-columns=min,median,rounds

# Prediction vs published measurement for every row of validation/ (measurements.yaml and the grouped tables).
validate: $(STAMP)
	$(BIN)/planner validate

test: lint typecheck unit bench-fast validate

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache reports artifacts
