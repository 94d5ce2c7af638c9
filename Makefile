# One entry point for newcomers and CI: `make test`, `make demo`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test test-slow demo lint clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -q -e '.[dev,openmmlab,mobile]'
	touch $(STAMP)

test: install
	$(BIN)/python -m pytest -q -n 2 --dist worksteal --durations=15

test-slow: install
	$(BIN)/python -m pytest -q -m slow -n 2 --dist worksteal --durations=15

demo: install
	$(BIN)/dnatool demo --out runs/demo

lint: install
	$(BIN)/ruff check dnatool tests benchmarks
	$(BIN)/ruff format --check dnatool tests benchmarks

clean:
	rm -rf $(VENV) runs .pytest_cache
