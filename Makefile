# `make run` and `make test` set up .venv on first use (PyTorch first, pinned to the
# locally available CPU build, then the package in editable mode with its dev extras).
VENV    ?= .venv
PYTHON  := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
TORCH   ?= torch==2.13.0

.PHONY: run test bench setup clean

$(STAMP): pyproject.toml
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -c "import torch" 2>/dev/null || $(PYTHON) -m pip install --quiet "$(TORCH)"
	$(PYTHON) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/spikescale demo

test: $(STAMP)
	$(PYTHON) -m pytest -q

bench: $(STAMP)
	cd benchmarks && ../$(PYTHON) bench_core.py

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
