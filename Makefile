# arbkit — every target does its own set-up on a fresh machine.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: test lint venv clean demo

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check arbkit tests benchmarks
	$(VENV)/bin/ruff format --check arbkit tests benchmarks
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

demo: $(STAMP)
	$(VENV)/bin/arbkit demo $(DEMO_ARGS)

test: lint
	$(VENV)/bin/pytest -q -m 'not slow'

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache

# ---- reliability (tests/reliability): the long runs, outside `make test`
SOAK_SECONDS ?= 3600
.PHONY: soak fuzz
soak: $(STAMP)
	SOAK_SECONDS=$(SOAK_SECONDS) $(PY) -m tests.reliability.soak -v
	$(PY) -m tests.reliability.fuzz 1000000

fuzz: $(STAMP)
	$(PY) -m tests.reliability.fuzz $(or $(FUZZ_FRAMES),1000000)
