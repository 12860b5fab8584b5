# The README's two commands: `make repro` (install, then run the pipeline) and `make test` (install, then the tests).
# Both create or reuse .venv and put it first on PATH, so the `python` in dvc.yaml is the venv's.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: install repro test lint bench bench-gpu clean-venv

$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

repro: $(STAMP)
	dvc repro

# The tests in TEST_WORKERS processes (pytest-xdist), each with its share of the cores (tests/conftest.py), slow tests
# first. No test is marked with a group, so `--dist loadgroup` hands out a few tests at a time to whichever worker is
# free; plain `--dist load` sends them out in large round-robin batches and was far slower here (docs/testing.md).
# TEST_WORKERS=0: one process.
TEST_WORKERS ?= 2

test: $(STAMP)
	ruff check --no-cache .
	python -m pytest -n $(TEST_WORKERS) --dist loadgroup

lint: $(STAMP)
	ruff check --no-cache .

# The benchmarks (benchmarks/*.py, each with --help): on the CPU, tens of minutes; bench-gpu needs a CUDA machine.
bench: $(STAMP)
	python benchmarks/data.py
	python benchmarks/data.py --zip-pairs 5000
	python benchmarks/train_step.py
	python benchmarks/evaluate.py
	python benchmarks/epoch.py
	python benchmarks/inference_speed.py

bench-gpu: $(STAMP)
	bash benchmarks/gpu.sh

clean-venv:
	rm -rf $(VENV)
