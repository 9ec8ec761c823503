# Librarian: `make run` starts the whole stack on embedded defaults, `make test` runs the suite.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: help install run test test-fast lint lock clean bench bench-validation bench-overhead bench-health bench-e2e bench-scrape bench-hooks bench-hostile bench-broker bench-publish-wait bench-scale bench-engine test-postgresql

help:
	@echo "make run      set up .venv and run API, worker, beat, Flower and an embedded Valkey"
	@echo "make test     set up .venv, run make lint, then the whole test suite (real processes) on SQLite,"
	@echo "              then the database tests (PG_TESTS) again on PostgreSQL (make test-postgresql)"
	@echo "make lint     ruff (lint + format check) over app, tests and bench; mypy over app"
	@echo "make lock     re-pin requirements*.lock from pyproject.toml"
	@echo "make bench    run every benchmark (quick settings), print a summary, write bench/results/<date>.json"
	@echo "make clean    WARNING: deletes ALL local data (var/: database, uploads, Valkey data) and .venv"

$(STAMP): pyproject.toml requirements.lock requirements-dev.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/librarian up

# The suite runs on SQLite, then PG_TESTS (every database code path) again on a PostgreSQL 16 the
# harness starts (pgserver). LIBRARIAN_TEST_DATABASE=postgresql make test: the whole suite on PostgreSQL.
LIBRARIAN_TEST_DATABASE ?= sqlite
PG_TESTS := tests/api/test_parts.py tests/api/test_batches.py tests/api/test_rulesets.py \
	tests/api/test_tasks.py::test_a_validation_answers_its_current_stage_as_message \
	tests/api/test_tasks.py::test_revoke_a_queued_validation_fails_its_part \
	tests/worker/test_maintenance.py tests/reliability/test_database_lock.py \
	tests/reliability/test_worker_kill.py::test_worker_sigkilled_three_times_loses_and_duplicates_nothing \
	tests/reliability/test_worker_kill.py::test_pool_child_sigkilled_mid_task_is_redelivered_not_lost

test: $(STAMP) lint
	LIBRARIAN_TEST_DATABASE=$(LIBRARIAN_TEST_DATABASE) $(BIN)/python -m pytest $(PYTEST_ARGS)
ifeq ($(LIBRARIAN_TEST_DATABASE),sqlite)
	LIBRARIAN_TEST_DATABASE=postgresql $(BIN)/python -m pytest $(PG_TESTS) $(PYTEST_ARGS)
endif

test-postgresql: $(STAMP)
	LIBRARIAN_TEST_DATABASE=postgresql $(BIN)/python -m pytest $(PG_TESTS) $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not integration" $(PYTEST_ARGS)

# Strict mypy for app/validation, app/broker and app/core; the rest of app is checked non-strict (pyproject.toml).
lint: $(STAMP)
	$(BIN)/ruff check app tests bench
	$(BIN)/ruff format --check app tests bench
	$(BIN)/mypy app

# Re-pin: runtime pins (with the PostgreSQL driver) for the image, runtime + test pins for dev/CI.
lock:
	rm -rf .lockenv && $(PYTHON) -m venv .lockenv
	.lockenv/bin/pip install --quiet ".[postgres]" && .lockenv/bin/pip freeze --exclude librarian > requirements.lock
	.lockenv/bin/pip install --quiet ".[test,postgres]" && .lockenv/bin/pip freeze --exclude librarian > requirements-dev.lock
	rm -rf .lockenv build *.egg-info

# Benchmarks (docs/performance.md); extra flags: make bench-e2e BENCH_ARGS="--rate 300", make bench BENCH_ARGS="--full"
bench: $(STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

bench-validation: $(STAMP)
	$(BIN)/python -m bench.validation $(BENCH_ARGS)

bench-overhead: $(STAMP)
	$(BIN)/python -m bench.overhead $(BENCH_ARGS)

bench-scale: $(STAMP)
	$(BIN)/python -m bench.scale $(BENCH_ARGS)

bench-engine: $(STAMP)
	$(BIN)/python -m bench.engine $(BENCH_ARGS)

bench-e2e: $(STAMP)
	$(BIN)/python -m bench.e2e $(BENCH_ARGS)

bench-health: $(STAMP)
	$(BIN)/python -m bench.health $(BENCH_ARGS)

bench-scrape: $(STAMP)
	$(BIN)/python -m bench.scrape $(BENCH_ARGS)

bench-hooks: $(STAMP)
	$(BIN)/python -m bench.hooks $(BENCH_ARGS)

bench-broker: $(STAMP)
	$(BIN)/python -m bench.broker $(BENCH_ARGS)

bench-publish-wait: $(STAMP)
	$(BIN)/python -m bench.publish_wait $(BENCH_ARGS)

bench-hostile: $(STAMP)
	$(BIN)/python -m bench.hostile $(BENCH_ARGS)

clean:
	rm -rf $(VENV) var .pytest_cache
