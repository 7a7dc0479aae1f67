# Two commands do all the set-up on a fresh machine:
#   make demo   create/refresh .venv, install rnnlab, run the main job on embedded data
#   make test   create/refresh .venv with the test extras, run the whole test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip --disable-pip-version-check -q

.PHONY: demo test bench clean venv

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# the stamp files re-run the install whenever pyproject.toml, setup.py or the optional C kernel change
NATIVE := setup.py $(wildcard rnnlab/_native/*.c rnnlab/_native/*.h)
$(VENV)/.installed-demo: pyproject.toml $(NATIVE) | $(BIN)/python
	$(PIP) install -e ".[plot]"
	touch $@

$(VENV)/.installed-test: pyproject.toml $(NATIVE) | $(BIN)/python
	$(PIP) install -e ".[test,plot]"
	touch $@

venv: $(VENV)/.installed-test

demo: $(VENV)/.installed-demo
	$(BIN)/python -m rnnlab.demo $(DEMO_ARGS)

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

# rnnlab vs PyTorch, each library in its own process, every cell and row, 1 and 2 threads (docs/benchmarks.md);
# BENCH_ARGS=--quick for a smoke test, BENCH_ARGS="--baseline DIR" to time another checkout too
bench: $(VENV)/.installed-test
	$(BIN)/python benchmarks/fair.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info rnnlab/_native/*.so
