# Librarian: `make run` starts the whole stack on embedded defaults, `make test` runs the suite.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: help install run test test-fast lock clean bench-validation bench-overhead bench-health bench-e2e bench-scrape

help:
	@echo "make run      set up .venv and run API, worker, beat, Flower and an embedded Valkey"
	@echo "make test     set up .venv and run the whole test suite (real processes)"
	@echo "make lock     re-pin requirements*.lock from pyproject.toml"
	@echo "make clean    WARNING: deletes ALL local data (var/: database, uploads, Valkey data) and .venv"

$(STAMP): pyproject.toml requirements.lock requirements-dev.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/librarian up

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not integration" $(PYTEST_ARGS)

# Re-pin: runtime pins (with the PostgreSQL driver) for the image, runtime + test pins for dev/CI.
lock:
	rm -rf .lockenv && $(PYTHON) -m venv .lockenv
	.lockenv/bin/pip install --quiet ".[postgres]" && .lockenv/bin/pip freeze --exclude librarian > requirements.lock
	.lockenv/bin/pip install --quiet ".[test,postgres]" && .lockenv/bin/pip freeze --exclude librarian > requirements-dev.lock
	rm -rf .lockenv build *.egg-info

bench-validation: $(STAMP)
	$(BIN)/python bench/validation.py

# Observability benchmarks (docs/performance.md); extra flags: make bench-e2e BENCH_ARGS="--rate 300"
bench-overhead: $(STAMP)
	$(BIN)/python bench/overhead.py $(BENCH_ARGS)

bench-e2e: $(STAMP)
	$(BIN)/python bench/e2e.py $(BENCH_ARGS)

bench-health: $(STAMP)
	$(BIN)/python bench/health.py $(BENCH_ARGS)

bench-scrape: $(STAMP)
	$(BIN)/python bench/scrape.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) var .pytest_cache
