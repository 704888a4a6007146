# Cargohold: `make run` serves the dashboard, `make test` runs the tests. Both set up
# the machine first (scripts/setup.sh: packages, Docker, Redis, .venv, helper image).

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

HOST ?= 127.0.0.1
PORT ?= 8000
PYTEST_ARGS ?= -n 2 --durations=15
# make test runs the whole suite on PostgreSQL (production's database), then the
# database-only part (services, views, API; no engine, real worker or browser) on SQLite
# (the embedded default of make run). TEST_DATABASES=sqlite (or postgres) runs one pass;
# PYTEST_ARGS_SQLITE= runs the whole suite on SQLite too. --durations: each pass names its 15 slowest tests.
TEST_DATABASES ?= postgres sqlite
PYTEST_ARGS_POSTGRES ?=
PYTEST_ARGS_SQLITE ?= -m "not engine and not worker and not browser"
REDIS_URL ?= redis://127.0.0.1:6379/0
export REDIS_URL

VENV_PY := .venv/bin/python

.PHONY: help setup run test bench lint

help:
	@echo "make run     set up, migrate, then serve on http://$(HOST):$(PORT) with worker, beat and watcher (PORT=, HOST= to change)"
	@echo "make test    set up, then run the tests on PostgreSQL, then on SQLite (PYTEST_ARGS='-k name -x' to pass options, TEST_DATABASES=sqlite for one pass)"
	@echo "make bench   set up, then run the benchmarks"
	@echo "make setup   only set up this machine (idempotent)"
	@echo "make lint    shellcheck the scripts, Django system checks, validate docker-compose.yml and docker-compose.host.yml"

setup:
	@bash scripts/setup.sh

run: setup
	$(VENV_PY) manage.py migrate --noinput
	$(VENV_PY) manage.py collectstatic --noinput -v0
	$(VENV_PY) manage.py ensure_admin
	@if [ "$$(timeout 5 redis-cli -u "$$REDIS_URL" ping 2>/dev/null)" = PONG ]; then \
	  echo "==> Redis answers at $$REDIS_URL"; \
	else \
	  echo "==> ERROR: Redis does not answer at $$REDIS_URL: the worker and beat need it." >&2; \
	  echo "    Start it (redis-server --daemonize yes) or set REDIS_URL, then make run again." >&2; \
	  exit 1; \
	fi
	@echo "==> serving on http://$(HOST):$(PORT) (Ctrl-C stops everything)"
	CARGOHOLD_HOST=$(HOST) CARGOHOLD_PORT=$(PORT) exec .venv/bin/honcho -f Procfile start --port $(PORT)

# One pass per database in TEST_DATABASES (CARGOHOLD_TEST_DATABASE, tests/envsetup.py); the
# failure of either fails make test. PYTEST_ARGS go to every pass, PYTEST_ARGS_<DB> to one.
# Two extra Docker Engines (scripts/engines.sh) run for the multi-host tests during the passes
# and are stopped after them, pass or fail (the trap; a lease, so a second make test or a
# manual `scripts/engines.sh start` keeps them up until its own end).
test: setup
	@rc=0; \
	pass() { \
	  local db="$$1" r=0; shift; \
	  echo "==> tests on $$db: pytest $${*:4}"; \
	  CARGOHOLD_TEST_DATABASE="$$db" "$$@" || r=$$?; \
	  if [ "$$r" -eq 5 ]; then echo "==> ERROR: pytest collected no tests ($$db pass)" >&2; fi; \
	  if [ "$$r" -ne 0 ]; then echo "==> the $$db pass FAILED (pytest exit $$r)" >&2; [ "$$rc" -ne 0 ] || rc="$$r"; fi; \
	}; \
	for db in $(TEST_DATABASES); do \
	  case "$$db" in postgres | sqlite) ;; *) echo "==> ERROR: TEST_DATABASES: '$$db' is neither postgres nor sqlite" >&2; exit 2 ;; esac; \
	done; \
	bash scripts/engines.sh start --lease $$$$ || exit $$?; \
	trap 'bash scripts/engines.sh stop --lease '"$$$$" EXIT; \
	case " $(TEST_DATABASES) " in *" postgres "*) pass postgres $(VENV_PY) -m pytest $(PYTEST_ARGS) $(PYTEST_ARGS_POSTGRES) ;; esac; \
	case " $(TEST_DATABASES) " in *" sqlite "*) pass sqlite $(VENV_PY) -m pytest $(PYTEST_ARGS) $(PYTEST_ARGS_SQLITE) ;; esac; \
	exit "$$rc"

bench: setup
	@if [ -f bench/run_all.py ]; then \
	  $(VENV_PY) bench/run_all.py; \
	else \
	  echo "==> no benchmarks yet (bench/run_all.py)"; \
	fi

lint: setup
	@if command -v shellcheck >/dev/null; then \
	  shellcheck -x scripts/*.sh .ci/run && echo "==> shellcheck: clean"; \
	else \
	  echo "==> shellcheck not installed (apt-get install shellcheck): skipped"; \
	fi
	$(VENV_PY) manage.py check
	@if command -v docker-compose >/dev/null; then \
	  DJANGO_SECRET_KEY=lint docker-compose -f docker-compose.yml config -q; echo "==> docker-compose.yml: valid"; \
	  DJANGO_SECRET_KEY=lint CARGOHOLD_ENCRYPTION_KEY=lint CARGOHOLD_HOST_NAME=lint DATABASE_URL=postgres://lint@db/lint REDIS_URL=rediss://:lint@redis:6380/0 \
	    docker-compose -f docker-compose.host.yml config -q; echo "==> docker-compose.host.yml: valid"; \
	fi
