# Quick start: `make demo` and `make test` set up .venv on first use.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup browser demo test bench lint clean

# A .venv without a working pip (one whose creation failed half-way) is made again.
$(STAMP): pyproject.toml constraints.txt
	$(BIN)/python -m pip --version >/dev/null 2>&1 || { rm -rf $(VENV); $(PYTHON) -m venv $(VENV); }
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev,ray]'
	touch $(STAMP)

# Debian's Chromium for the browser test (never a browser download by a test tool).
browser:
	test -x /usr/bin/chromium || { SUDO=$$([ "$$(id -u)" -eq 0 ] || echo sudo); \
		$$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } \
		|| echo "note: Debian's chromium could not be installed; the browser test will be skipped"

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/solarscan demo --out demo-output

test: $(STAMP) browser
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_scoring.py

lint: $(STAMP)
	$(BIN)/ruff check app models pipelines data_catalog tests benchmarks

clean:
	rm -rf demo-output .pytest_cache
