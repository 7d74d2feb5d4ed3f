# The two commands of the README:
#   make demo   set up a venv, fetch the licensed assets, run the main job (a world clip through the real
#               WebRTC path on loopback with the shipped model -> demo.mp4 + a latency summary)
#   make test   set up a venv, fetch the licensed assets, run the test suite
# pip (not uv/poetry) is used on purpose: it takes the local CPU torch 2.13 wheel (environment.md).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup assets demo test clean

$(BIN)/frieren-rt: pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

setup: $(BIN)/frieren-rt

assets: setup
	$(BIN)/frieren-rt assets fetch

demo: assets
	$(BIN)/frieren-rt demo -o demo.mp4

test: assets
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) .pytest_cache
