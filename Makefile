# Cargohold: `make run` serves the dashboard, `make test` runs the tests. Both set up
# the machine first (scripts/setup.sh: packages, Docker, Redis, .venv, helper image).

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

HOST ?= 127.0.0.1
PORT ?= 8000
PYTEST_ARGS ?= -n 2
REDIS_URL ?= redis://127.0.0.1:6379/0
export REDIS_URL

VENV_PY := .venv/bin/python

.PHONY: help setup run test bench lint

help:
	@echo "make run     set up, migrate, then serve on http://$(HOST):$(PORT) with worker, beat and watcher (PORT=, HOST= to change)"
	@echo "make test    set up, then run the tests (PYTEST_ARGS='-k name -x' to pass options)"
	@echo "make bench   set up, then run the benchmarks"
	@echo "make setup   only set up this machine (idempotent)"
	@echo "make lint    shellcheck the scripts, Django system checks, validate docker-compose.yml"

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

test: setup
	@rc=0; $(VENV_PY) -m pytest $(PYTEST_ARGS) || rc=$$?; \
	if [ "$$rc" -eq 5 ]; then echo "==> ERROR: pytest collected no tests" >&2; fi; \
	exit "$$rc"

bench: setup
	@if [ -f bench/run_all.py ]; then \
	  $(VENV_PY) bench/run_all.py; \
	else \
	  echo "==> no benchmarks yet (bench/run_all.py)"; \
	fi

lint: setup
	@if command -v shellcheck >/dev/null; then \
	  shellcheck scripts/*.sh .ci/run && echo "==> shellcheck: clean"; \
	else \
	  echo "==> shellcheck not installed (apt-get install shellcheck): skipped"; \
	fi
	$(VENV_PY) manage.py check
	@if command -v docker-compose >/dev/null; then \
	  DJANGO_SECRET_KEY=lint docker-compose -f docker-compose.yml config -q && echo "==> docker-compose.yml: valid"; \
	fi
