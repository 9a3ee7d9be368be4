# The two commands a newcomer needs are `make run` and `make test` (see README.md).
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8000
STAMP := $(VENV)/.installed

# Tests always talk to real PostgreSQL and Redis (scripts/ensure-services.sh finds or starts them).
TEST_DATABASE_URL ?= $(or $(DATABASE_URL),postgres://postgres@127.0.0.1:5432/onereward)
TEST_REDIS_URL ?= $(or $(REDIS_URL),redis://127.0.0.1:6379/0)
# pytest-xdist processes: one per core, at most 8 (each has its own test database and Redis broker
# database, tests/conftest.py); TEST_WORKERS=0 runs in one process.
TEST_WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 1); if [ $$n -lt 2 ]; then echo 0; elif [ $$n -gt 8 ]; then echo 8; else echo $$n; fi)

.PHONY: run dev test check install demo lint bench clean-var

$(STAMP): pyproject.toml
	@test -x $(PY) || { command -v $(PYTHON) >/dev/null || PYTHON=python3; $(PYTHON) -m venv $(VENV); }
	$(PY) -m pip install -q --upgrade pip
	@# torch first and pinned: its CPU wheel lies on these machines; an unpinned torch pulls CUDA.
	$(PY) -m pip install -q "torch==2.13.0"
	$(PY) -m pip install -q -e ".[ml,dev,prod]"
	@touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	@bash scripts/run.sh $(PORT)

# Development: runserver with autoreload and DEBUG on, same embedded defaults.
dev: $(STAMP)
	@bash scripts/run.sh $(PORT) --dev

test: $(STAMP)
	@source scripts/ensure-services.sh && \
	  DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) CELERY_BROKER_URL=$(TEST_REDIS_URL) \
	  DJANGO_READ_DOT_ENV_FILE=false OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
	  $(PY) -m pytest -p no:playwright -n $(TEST_WORKERS) --dist worksteal $(PYTEST_ARGS)

# The fast lane: lint, layer contracts and every test that needs no browser, worker or long training.
check: lint
	@$(MAKE) --no-print-directory test PYTEST_ARGS='-m "not browser and not worker and not slow" -q $(PYTEST_ARGS)'

demo: $(STAMP)
	@bash scripts/run.sh $(PORT) --demo

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

bench: $(STAMP)
	@for b in bench/[!_]*.py; do echo "== $$b"; OMP_NUM_THREADS=1 $(PY) $$b || exit 1; done

clean-var:
	rm -rf var
