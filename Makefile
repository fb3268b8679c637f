# voix-ingest: `make run` starts everything, `make test` tests everything. `make help` lists targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BROKER := broker/kafka.sh
# Set KAFKA_BOOTSTRAP to use an existing broker; otherwise the local one is started.
KAFKA_BOOTSTRAP ?=
ifneq ($(KAFKA_BOOTSTRAP),)
export KAFKA_BOOTSTRAP
endif

.PHONY: help install run test test-unit test-broker lint typecheck check broker-up broker-down \
        broker-status topics clean test-faults bench cluster-up cluster-down cluster-status \
        secure-up secure-down secure-status

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-15s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed ## create .venv and install the app with its dev tools

broker-up: ## start the local Kafka broker (KRaft, 127.0.0.1:9092) unless KAFKA_BOOTSTRAP is set
	@if [ -n "$(KAFKA_BOOTSTRAP)" ]; then echo "using Kafka at $(KAFKA_BOOTSTRAP)"; \
	 else bash $(BROKER) up; fi

broker-down: ## stop the local Kafka broker
	bash $(BROKER) down

broker-status: ## is the local broker running?
	bash $(BROKER) status

# A local N-node KRaft cluster (PLAINTEXT, 127.0.0.1:19092..): for replication/failover tests.
NODES ?= 3
cluster-up: ## start a local NODES-node cluster (default 3) on 127.0.0.1:19092..; prints the bootstrap list
	NODES=$(NODES) bash $(BROKER) cluster-up

cluster-down: ## stop every node of the local cluster
	bash $(BROKER) cluster-down

cluster-status: ## state of each cluster node (exit 3 unless all run)
	bash $(BROKER) cluster-status

# The broker that admits clients only over SASL_SSL (SCRAM) or mutual TLS, beside the usual one.
SECURE := KAFKA_SECURITY=sasl_ssl
secure-up: ## start the SASL_SSL-only broker (127.0.0.1:9094, mTLS 9095); client settings in broker/secure/client.env
	$(SECURE) bash $(BROKER) up

secure-down: ## stop the SASL_SSL-only broker
	$(SECURE) bash $(BROKER) down

secure-status: ## is the SASL_SSL-only broker running?
	$(SECURE) bash $(BROKER) status

topics: install broker-up ## create the topics (idempotent)
	$(PY) -m app topics create

WORKERS ?= 1
run: install broker-up ## install, start the broker, the worker(s) (WORKERS=N) and the edge; print URL and key
	$(PY) -m app run --workers $(WORKERS)

test: install broker-up ## every test: unit, broker integration, fault scenarios
	$(PY) -m pytest

test-faults: install broker-up ## fault injection (kill workers/edge, a private broker): figures table
	$(PY) -m pytest -m faults tests/faults

test-unit: install ## only the fast tests that need no broker
	$(PY) -m pytest -m "not broker"

lint: install ## ruff over app, tests and bench
	$(VENV)/bin/ruff check app tests bench

typecheck: install ## mypy over app, bench and tests (strict; tests a little less)
	$(VENV)/bin/mypy

check: lint typecheck test ## lint, typecheck and test

bench: install ## benchmarks on a private broker -> docs/benchmarks.md (BENCH_QUICK=1: short run)
	@command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	bash $(BROKER) install
	$(PY) bench/run.py

clean: ## remove local state (keys, worker state); the broker's data stays unless broker-down + rm
	rm -rf var/worker .pytest_cache .mypy_cache .ruff_cache
