# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt constraints.txt pyproject.toml | cksum | cut -d' ' -f1)
PORT   ?= 8765

.PHONY: install test lint demo sandbox up audit bench services clean stack test-stack redis browser test-ui tools

# The last step registers the project as an Airflow provider (connection forms in the UI);
# the install is editable, so the code stays in plugins/ where Airflow loads it.
$(STAMP): requirements.txt requirements-dev.txt constraints.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.txt -r requirements-dev.txt -c constraints.txt
	$(BIN)/python -m pip install -q --no-deps -e .
	rm -f $(VENV)/.installed-*
	touch $@

install: $(STAMP)

services:
	@scripts/ensure-postgres.sh

lint: install
	$(BIN)/ruff check .

test: install services lint browser tools
	$(BIN)/python -m pytest

# The audit page's browser tests use Debian's Chromium (never a browser downloaded by Playwright).
browser:
	@test -x /usr/bin/chromium || { apt-get update -q && apt-get install -y -q chromium; }

# The deploy tests check docker-compose.yaml with `docker-compose config` and the TLS proxy examples
# (docs/deploy/) with real Caddy and nginx.
tools:
	@command -v docker-compose >/dev/null && command -v caddy >/dev/null && test -x /usr/sbin/nginx || \
		{ apt-get update -q && apt-get install -y -q docker-compose caddy nginx-light; }

# Only the audit page's browser tests (~2.5 min: three reminder runs, a live API server, Chromium).
test-ui: install services browser
	$(BIN)/python -m pytest tests/ui -m ui -q $(ARGS)

demo: install
	$(BIN)/python include/demo.py

sandbox: install
	PYTHONPATH=include $(BIN)/python -m sandbox --host 127.0.0.1 --port $(PORT)

audit: install
	AIRFLOW_HOME=$${AIRFLOW_HOME:-$(CURDIR)/.airflow-demo} PYTHONPATH=plugins $(BIN)/python -m zoho_whatsapp.audit $(ARGS)

# Throughput and API budget against the sandbox (~6 min); not part of `make test`.
# One part only: make bench ARGS="--only sending" (parse, sending, zoho, scale, end_to_end, stack, ui).
bench: install
	$(BIN)/python -m bench.run $(ARGS)

# The sandbox and Airflow (api-server, scheduler, dag-processor, triggerer) on loopback, AIRFLOW_HOME .airflow-up/,
# the connections pointing at the sandbox; prints the login and the audit page. Ctrl-C stops everything.
# make up ARGS="--port 8081 --fresh"
up: install
	$(BIN)/python include/up.py $(ARGS)

# docker-compose.yaml's CeleryExecutor deployment as local processes (no Docker engine needed): PostgreSQL,
# Redis, api-server, scheduler, dag-processor, triggerer, two Celery workers and the sandbox. Ctrl-C stops it.
stack: install services redis
	$(BIN)/python include/local_stack.py $(ARGS)

# Faults on that stack (a worker killed mid-batch, the scheduler restarted, a backfill beside the daily run) and
# alerts while a reminder run sends; about 8 minutes. CI runs it after `make test` (.ci/run).
test-stack: install services redis
	ZW_STACK=1 $(BIN)/python -m pytest tests/stack -q $(ARGS)

# The stack's Celery broker: Debian's Redis, installed when missing (include/local_stack.py starts it when stopped).
redis:
	@command -v redis-server >/dev/null || { apt-get update -q && apt-get install -y -q redis-server; }

clean:
	rm -rf $(VENV) .airflow-demo .pytest_cache .ruff_cache
