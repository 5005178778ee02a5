"""The first hour in the Airflow UI, as `make up` sets it up: a real Airflow in its own AIRFLOW_HOME.

The four connections are written into the metadata DB the way ``make up`` writes them
(``include/up.py``), so they are listed under Admin → Connections with their Test buttons; then the
API server (with ``[core] test_connection = Enabled``), the scheduler and the dag-processor run on
loopback against the sandbox (tests/ui/live_airflow.py starts them and knows the login).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import local_airflow
import pytest

from tests.ui.conftest import browser, screenshots  # noqa: F401  (the audit page's fixtures, reused)
from tests.ui.live_airflow import LiveAirflow, api_server

REMINDER_DAG = "zoho_books_payment_reminders"
ALERT_DAG = "zoho_books_invoice_alerts"
SETTINGS = {
    "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
    "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",  # as docker compose sets it
    "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
    "AIRFLOW__CORE__PARALLELISM": "4",
}


@dataclass
class FirstHour:
    server: LiveAirflow
    sandbox: Any
    home: Path
    connections: dict[str, dict[str, Any]]

    def api(self) -> httpx.Client:
        """Airflow's REST API as the logged-in admin."""
        return httpx.Client(base_url=self.server.url, timeout=60,
                            headers={"Authorization": f"Bearer {self.server.token()}"})


def wait_for(what: str, check: Callable[[], Any], timeout: float, every: float = 1.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise TimeoutError(f"waited {timeout:.0f}s for {what}")


@pytest.fixture(scope="module")
def first_hour(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FirstHour]:
    import up

    from sandbox import Sandbox

    work = tmp_path_factory.mktemp("first-hour")
    home = work / "airflow"
    sb = Sandbox(host="127.0.0.1", port=0, seed=42, invoices=24).start()
    try:
        env = local_airflow.environment(home, drop=("AIRFLOW", "PYTEST"))
        local_airflow.migrate_db(env)
        connections = up.connections(sb, home)
        up.store_connections(env, connections, home)
        with api_server(home, work, {}, settings=SETTINGS, components=("scheduler", "dag-processor")) as server:
            stack = FirstHour(server, sb, home, connections)
            with stack.api() as api:
                wait_for("both DAGs to be parsed", lambda: all(
                    api.get(f"/api/v2/dags/{d}").status_code == 200 for d in (REMINDER_DAG, ALERT_DAG)), 300, 2)
            yield stack
    finally:
        sb.stop()


def pytest_configure(config: pytest.Config) -> None:
    # tests/ui's marker, for its login helper imported above (also when tests/ui is not collected).
    config.addinivalue_line("markers", "ui: drives the audit page in Chromium against a live Airflow API server")
