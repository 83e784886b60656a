# `make run` and `make test` set up .venv on first use (PyTorch first, pinned to the
# locally available CPU build, then the package in editable mode with its dev extras).
VENV    ?= .venv
PYTHON  := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
TORCH   ?= torch==2.13.0

FMNIST  := /usr/share/datasets/fashion-mnist

.PHONY: run test bench setup clean fashion-mnist

$(STAMP): pyproject.toml
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -c "import torch" 2>/dev/null || $(PYTHON) -m pip install --quiet "$(TORCH)"
	$(PYTHON) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/spikescale demo

# Fashion-MNIST from Debian for the image tests; without apt (or root) those tests skip with a reason.
fashion-mnist:
	@test -d $(FMNIST) || { command -v apt-get >/dev/null && (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist) >/dev/null 2>&1; } || echo "note: could not install dataset-fashion-mnist; Fashion-MNIST tests will be skipped"

test: $(STAMP) fashion-mnist
	$(PYTHON) -m pytest -q

# Speed benchmarks (they print ratios; the peers need snntorch, norse and spikingjelly installed with
# pip install --no-deps, see docs/performance.md; missing peers are reported, not fatal).
bench: $(STAMP)
	cd benchmarks && ../$(PYTHON) bench_core.py --threads 1
	cd benchmarks && ../$(PYTHON) bench_peers.py --threads 2
	cd benchmarks && ../$(PYTHON) bench_dh.py --threads 2
	cd benchmarks && ../$(PYTHON) bench_delays.py --threads 1
	cd benchmarks && ../$(PYTHON) bench_ttfs.py
	cd benchmarks && ../$(PYTHON) bench_binning.py

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
