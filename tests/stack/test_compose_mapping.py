"""docker-compose.yaml is the stack's one source of truth: every setting is used, localized or overridden
for a stated reason, and nothing container-only (a service host name, an /opt/airflow path) reaches a process.

Fast (no process is started): part of the default suite.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import local_stack
import pytest

PORTS = {"api": 18080, "scheduler_health": 18974, "trigger_logs": 18794}
CONTAINER_ONLY = re.compile(r"@postgres[:/]|//redis:|airflow-apiserver|/opt/airflow")


@pytest.fixture
def built(tmp_path: Path) -> dict[str, Any]:
    dotenv = local_stack.fresh_dotenv("zw_stack_test", webhook_secret="s" * 32, password="p" * 24)
    connections = {"zoho_books_default": {"conn_type": "zoho_books"}, "whatsapp_default": {"conn_type": "whatsapp"}}
    env = local_stack.stack_environment(home=tmp_path, dotenv=dotenv, ports=PORTS, redis_db=7,
                                        connections=connections)
    return {"env": env, "dotenv": dotenv, "paths": local_stack.mounted_paths(tmp_path), "home": tmp_path}


def test_every_compose_setting_is_used_localized_or_overridden_with_a_reason(built: dict[str, Any]) -> None:
    env = built["env"]
    for key, value in local_stack.compose_environment().items():
        assert key in env, f"{key} of docker-compose.yaml is not in the stack's environment"
        localized = local_stack.localize(key, value, dotenv=built["dotenv"], ports=PORTS, paths=built["paths"])
        if env[key] != localized:
            assert len(local_stack.OVERRIDES.get(key, "")) > 30, f"{key} differs from compose with no reason given"
    for key in local_stack.OVERRIDES:
        assert key in local_stack.compose_environment(), f"OVERRIDES names {key}, which compose does not set"


def test_no_container_host_or_path_reaches_a_process(built: dict[str, Any]) -> None:
    env = built["env"]
    leaks = {key: env[key] for key in local_stack.compose_environment() if CONTAINER_ONLY.search(env[key])}
    assert leaks == {}
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].endswith("@127.0.0.1:5432/zw_stack_test_airflow")
    assert env["AIRFLOW__CELERY__RESULT_BACKEND"].startswith("db+postgresql+psycopg2://postgres:")
    assert env["AIRFLOW__CELERY__BROKER_URL"] == "redis://:@127.0.0.1:6379/7"
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://127.0.0.1:18080/execution/"
    assert env["AIRFLOW_CONN_REMINDER_LEDGER_DEFAULT"].endswith("@127.0.0.1:5432/zw_stack_test_ledger")
    assert env["AIRFLOW_CONFIG"] == str(built["home"] / "config" / "airflow.cfg")
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert '"password": "' + "s" * 32 in env["AIRFLOW_CONN_ZOHO_BOOKS_WEBHOOK"]


def test_every_setting_the_stack_adds_is_explained(built: dict[str, Any]) -> None:
    compose = local_stack.compose_environment()
    ours = {k for k in built["env"] if k.startswith("AIRFLOW") or k == "PYTHONPATH"}
    unexplained = sorted(ours - set(compose) - set(local_stack.ADDED))
    assert unexplained == []
    assert all(len(reason) > 20 for reason in local_stack.ADDED.values())


def test_every_service_setting_and_required_dotenv_value_is_accounted_for() -> None:
    data = local_stack.compose()
    common = set(local_stack.compose_environment())
    for name, service in data["services"].items():
        extra = set(service.get("environment") or {}) - common
        if name.startswith("airflow") or name.startswith("sandbox") or name == "flower":
            assert extra <= set(local_stack.SERVICE_SETTINGS), f"{name}: {sorted(extra - set(local_stack.SERVICE_SETTINGS))}"
    required = set(re.findall(r"\$\{(\w+):\?", local_stack.COMPOSE_FILE.read_text()))
    assert required <= set(local_stack.fresh_dotenv("x", webhook_secret="s", password="p"))


def test_services_run_the_compose_commands_and_health_checks(tmp_path: Path) -> None:
    stack = local_stack.Stack(home=tmp_path, workers=(3, 2))
    stack.ports = dict(PORTS)
    for name in local_stack.SERVICES[:-1]:
        stack._add(name)
    for number, concurrency in enumerate(stack.workers, 1):
        stack._add("airflow-worker", number=number, concurrency=concurrency)
    stack._add(local_stack.ALERT_WORKER)
    commands = {name: c.command for name, c in stack.components.items()}
    assert commands["airflow-apiserver"][1:] == ["api-server", "--port", "18080"]
    assert commands["airflow-scheduler"][1:] == ["scheduler"]
    assert commands["airflow-dag-processor"][1:] == ["dag-processor"]
    assert commands["airflow-triggerer"][1:] == ["triggerer"]
    assert commands["airflow-worker-1"][1:7] == ["celery", "worker", "--queues", "alerts,default", "--celery-hostname",
                                                 "celery@airflow-worker-1"]
    assert "3" in commands["airflow-worker-1"] and "2" in commands["airflow-worker-2"]
    assert commands["airflow-alert-worker"][1:6] == ["celery", "worker", "--queues", "alerts", "--concurrency"]
    ports = {stack.components[w].env["AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"] for w in ("airflow-worker-1",
                                                                                         "airflow-worker-2",
                                                                                         "airflow-alert-worker")}
    assert len(ports) == 3  # three log servers on one host
    checks = {name: stack.healthcheck(name)[-1] for name in stack.components}
    assert "http://127.0.0.1:18080/api/v2/monitor/health" in checks["airflow-apiserver"]
    assert "http://127.0.0.1:18974/health" in checks["airflow-scheduler"]
    assert "inspect ping -d celery@airflow-worker-2" in checks["airflow-worker-2"].replace('"', "")
    assert "inspect ping -d celery@airflow-alert-worker" in checks["airflow-alert-worker"].replace('"', "")
    assert "--job-type TriggererJob --hostname" in checks["airflow-triggerer"]
    assert not [c for c in checks.values() if "localhost:8080" in c or "$$" in c]


def test_the_alert_queue_is_served_by_its_own_worker_and_first_by_every_other(
        monkeypatch: pytest.MonkeyPatch, airflow_db: Path) -> None:
    """The alert DAG's tasks go to ZOHO_WHATSAPP_ALERTS_QUEUE: a queue no worker served would hold every alert."""
    services = local_stack.compose()["services"]
    queue = local_stack.compose_environment()["ZOHO_WHATSAPP_ALERTS_QUEUE"]

    def served(service: str) -> list[str]:
        words = services[service]["command"].split()
        return words[words.index("--queues") + 1].split(",")

    assert served(local_stack.ALERT_WORKER) == [queue]
    assert served("airflow-worker")[0] == queue and "default" in served("airflow-worker")
    assert local_stack.compose_environment()["AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__QUEUE_ORDER_STRATEGY"] == (
        "priority")  # the order of --queues is the order the workers take tasks in
    monkeypatch.setenv("ZOHO_WHATSAPP_ALERTS_QUEUE", queue)
    from local_airflow import load_dag

    assert {t.queue for t in load_dag("zoho_books_invoice_alerts").tasks} == {queue}


@pytest.mark.parametrize(("text", "dotenv", "expected"), [
    ("${A:-x}", {}, "x"), ("${A:-x}", {"A": ""}, "x"), ("${A-x}", {"A": ""}, ""), ("${A:-x}", {"A": "y"}, "y"),
    ("$${HOSTNAME}", {}, "${HOSTNAME}"), ("a${B}c", {"B": "b"}, "abc"),
])
def test_interpolation_follows_compose(text: str, dotenv: dict[str, str], expected: str) -> None:
    assert local_stack.interpolate(text, dotenv) == expected


def test_a_required_value_missing_is_refused() -> None:
    with pytest.raises(KeyError, match="set POSTGRES_PASSWORD"):
        local_stack.interpolate("${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD in .env}", {})
