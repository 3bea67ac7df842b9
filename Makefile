# Azora Portal. `make run` serves the portal with demo data; `make test` runs the suite.
# Needs only Python 3.11+ and make: the virtual environment, the packages and the embedded
# PostgreSQL are all set up here.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install run test test-fast bench bench-lending breakdown eval lint doctor worker clean-db

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is needed (found %s)." % sys.version.split()[0])'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP)

## Serve the portal on HOST:PORT (default 127.0.0.1:5000) with a worker and demo data.
run: install
	$(BIN)/flask --app wsgi dev

## The whole test suite (embedded PostgreSQL, or TEST_DATABASE_URL), one process per core (at most
## 4; TEST_PROCESSES=0 for one process), each on a database of its own.
TEST_PROCESSES ?= auto
test: install
	$(BIN)/python -m pytest -n $(TEST_PROCESSES) --maxprocesses 4

## Everything but the browser journeys.
test-fast: install
	$(BIN)/python -m pytest -n $(TEST_PROCESSES) --maxprocesses 4 -m "not e2e"

## Benchmarks (README): every main page beside hello world and Fortunes under wrk, and transfers beside
## pgbench, at 10,000 students; prints req/s, p50/p99, the ratio to Fortunes and statements per page.
bench: install
	$(BIN)/python -m tests.perf.bench

## The lending daily job (penalty accrual) over LOANS late loans (default 10,000); prints loans/s.
bench-lending: install
	$(BIN)/python -m tests.perf.lending

## Where each main page's time goes (session and access, queries, rendering), in process.
breakdown: install
	$(BIN)/python -m tests.perf.breakdown

## The matching engines (tutor retrieval, AML name screening) on the labelled sets of tests/eval/data
## (tuning and, when present, held-out test sets): prints each set's figures against the goal. The
## tutor's figures need the demo courses in the database (flask seed-demo, or make run once).
eval: install
	$(BIN)/flask --app wsgi eval matching

## Ruff, then the import contracts of pyproject.toml (layers, independent blueprints, no circles).
lint: install
	$(BIN)/ruff check .
	$(BIN)/lint-imports

doctor: install
	$(BIN)/flask --app wsgi doctor

worker: install
	$(BIN)/flask --app wsgi worker

## Stop the embedded PostgreSQL (data stays under instance/postgres).
clean-db: install
	$(BIN)/flask --app wsgi db-server stop
