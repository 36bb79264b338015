# zeroserve: `make demo` to try it, `make test` to check it.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PORT   ?= 8080
STATE  ?= .demo-state

.PHONY: demo test lint typecheck pytest examples install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Installed when pyproject.toml changes (or the venv is new).
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed

examples/iris/iris.onnx: examples/iris/build.py | $(VENV)/.installed
	$(BIN)/python examples/iris/build.py

examples/minilm/build/minilm/model.onnx: examples/minilm/build.py examples/minilm/model.py | $(VENV)/.installed
	$(BIN)/python examples/minilm/build.py

examples: install examples/iris/iris.onnx examples/minilm/build/minilm/model.onnx

demo: examples
	$(BIN)/python examples/demo.py --port $(PORT) --state-dir $(STATE)

lint: install
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples

typecheck: install
	$(BIN)/mypy src

pytest: install
	$(BIN)/pytest

test: lint typecheck pytest

clean:
	rm -rf $(VENV) $(STATE) .pytest_cache .mypy_cache .ruff_cache
