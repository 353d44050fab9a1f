# arbkit — every target does its own set-up on a fresh machine.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: test lint venv clean demo browser-deps conformance conformance-sdk

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,conformance]'
	$(PY) -m pip install -q --no-deps 'ib_insync==0.9.86'  # why --no-deps: pyproject, conformance
	touch $(STAMP)

# The official Kalshi SDK needs Python >= 3.13: its own venv (tests/conformance, git-ignored).
# No python3.13 here: nothing is built and that one test skips, saying why.
SDK313_VENV := .venv-conformance-313
SDK313      := $(SDK313_VENV)/.installed
PY313       ?= $(shell for p in python3.13 $$HOME/.pyenv/versions/3.13*/bin/python3.13; do \
                 $$p -c '' >/dev/null 2>&1 && { echo $$p; break; }; done)

$(SDK313):
	@if [ -n "$(PY313)" ]; then \
	  $(PY313) -m venv $(SDK313_VENV) && \
	  $(SDK313_VENV)/bin/python -m pip install -q 'kalshi-python-sync==3.34.0' && touch $(SDK313); \
	else echo "no python3.13: the official Kalshi SDK conformance test will skip"; fi

conformance-sdk: $(SDK313)

venv: $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check arbkit tests benchmarks
	$(VENV)/bin/ruff format --check arbkit tests benchmarks
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

demo: $(STAMP)
	$(VENV)/bin/arbkit demo $(DEMO_ARGS)

# Debian's chromium for the real-browser notebook test (Playwright drives it through
# executable_path; its own browser download does not work here). CI runs as root and
# must have it; elsewhere a failed install only makes that one test skip.
browser-deps:
	@command -v chromium >/dev/null 2>&1 || \
	  (DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	   DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) || \
	  [ -z "$$CI" ]

test: lint browser-deps $(SDK313)
	$(VENV)/bin/pytest -q -m 'not slow'

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache

# Benchmarks (issue 8): not part of `make test`. BENCH=hot_path,replay selects; BENCH_ARGS=--quick.
.PHONY: bench
bench: $(STAMP)
	$(PY) benchmarks/run.py $(BENCH) $(BENCH_ARGS)

# ---- reliability (tests/reliability): the long runs, outside `make test`
SOAK_SECONDS ?= 3600
.PHONY: soak fuzz
soak: $(STAMP)
	SOAK_SECONDS=$(SOAK_SECONDS) $(PY) -m tests.reliability.soak -v
	$(PY) -m tests.reliability.fuzz 1000000

fuzz: $(STAMP)
	$(PY) -m tests.reliability.fuzz $(or $(FUZZ_FRAMES),1000000)

# Conformance (tests/conformance, docs/conformance.md): the fast part runs in `make test`;
# this runs all of it, the long schemathesis runs included.
conformance: $(STAMP) $(SDK313)
	CONFORMANCE_ALLOW_INSTALL=1 $(VENV)/bin/pytest -q tests/conformance -p no:cacheprovider
