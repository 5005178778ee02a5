"""Shared test set-up: an isolated AIRFLOW_HOME, the sandbox, the ledger, and a DAG runner.

Airflow reads its configuration when first imported, so the environment is fixed here, at
import time, before any test module imports Airflow.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO / "include") not in sys.path:
    sys.path.insert(0, str(REPO / "include"))
import local_airflow  # noqa: E402  (include/ is not on sys.path before the line above)

# Importing this file again as ``tests.conftest`` (for its helpers) must not move AIRFLOW_HOME.
_HOME = Path(os.environ.get("ZW_TEST_AIRFLOW_HOME") or tempfile.mkdtemp(prefix="zw-airflow-home-"))
os.environ["ZW_TEST_AIRFLOW_HOME"] = str(_HOME)
local_airflow.configure_this_process(_HOME, logging_level="INFO")

# A database of its own per test session, so that parallel sessions never drop each other's tables.
POSTGRES_ADMIN_URL = os.environ.get("ZW_TEST_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test")


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """A migrated SQLite metadata DB in the session's AIRFLOW_HOME (dag.test needs one)."""
    local_airflow.migrate_db(os.environ)
    return _HOME


def _set_conn(conn_id: str, value: dict[str, Any] | None) -> None:
    if value is None:
        os.environ.pop(f"AIRFLOW_CONN_{conn_id.upper()}", None)
    else:
        os.environ.update(local_airflow.connection_env({conn_id: value}))


@pytest.fixture
def set_connection() -> Iterator[Any]:
    """Set ``AIRFLOW_CONN_*`` for one test; restored afterwards."""
    saved = {k: v for k, v in os.environ.items() if k.startswith("AIRFLOW_CONN_")}
    yield _set_conn
    for key in [k for k in os.environ if k.startswith("AIRFLOW_CONN_")]:
        del os.environ[key]
    os.environ.update(saved)


def _forget_cached_tokens() -> None:
    from zoho_whatsapp.zoho.token_cache import TokenCache

    TokenCache.clear_memory()
    try:
        from airflow.models.variable import Variable as DbVariable
        from airflow.utils.session import create_session

        with create_session() as session:
            session.query(DbVariable).filter(DbVariable.key.like("%access_token")).delete(synchronize_session=False)
    except Exception:  # no metadata DB in this test: nothing cached there
        pass


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "sandbox(**settings): the test's Sandbox arguments, e.g. invoices=20")


@pytest.fixture
def sandbox(request: pytest.FixtureRequest, set_connection: Any) -> Iterator[Any]:
    """A fresh sandbox on a free loopback port, with the Zoho and WhatsApp connections pointing at it.

    ``@pytest.mark.sandbox(invoices=20)`` changes its arguments (seed 42 and 320 invoices by default).
    """
    from sandbox import Sandbox

    marker = request.node.get_closest_marker("sandbox")
    sb = Sandbox(host="127.0.0.1", port=0, **{"seed": 42, **(marker.kwargs if marker else {})}).start()
    for conn_id, conn in sb.connections().items():
        set_connection(conn_id, conn)
    _forget_cached_tokens()
    try:
        yield sb
    finally:
        sb.stop()
        _forget_cached_tokens()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str | None]:
    """URL of a fresh PostgreSQL database for this session, or None when no server answers."""
    with ExitStack() as stack:
        try:
            url = stack.enter_context(local_airflow.scratch_postgres(POSTGRES_ADMIN_URL, f"zw_test_{os.getpid()}"))
        except Exception:  # no server (or no rights): the PostgreSQL half of the ledger tests is skipped
            url = None
        yield url


@pytest.fixture(params=["sqlite", "postgres"])
def ledger(request: pytest.FixtureRequest, tmp_path: Path, set_connection: Any, postgres_url: str | None) -> Iterator[Any]:
    """An empty send ledger behind ``reminder_ledger_default``, on SQLite and on PostgreSQL."""
    from zoho_whatsapp.ledger import SendLedger

    if request.param == "sqlite":
        path = tmp_path / "ledger.db"
        set_connection("reminder_ledger_default", {"conn_type": "sqlite", "host": str(path)})
        url = f"sqlite:///{path}"
    else:
        if postgres_url is None:
            if os.environ.get("CI"):
                pytest.fail(f"PostgreSQL is not reachable at {POSTGRES_ADMIN_URL}; `make services` should start it")
            pytest.skip(f"PostgreSQL is not reachable at {POSTGRES_ADMIN_URL}")
        import sqlalchemy as sa

        u = sa.engine.make_url(postgres_url)
        set_connection(
            "reminder_ledger_default",
            {"conn_type": "postgres", "host": u.host, "port": u.port, "login": u.username, "schema": u.database},
        )
        url = postgres_url
    led = SendLedger(url)
    led.reset()
    try:
        yield led
    finally:
        led.dispose()


@pytest.fixture
def sqlite_ledger(tmp_path: Path, set_connection: Any) -> Iterator[Any]:
    """The embedded-default kind of ledger only (for tests that need not run on both databases)."""
    from zoho_whatsapp.ledger import SendLedger

    path = tmp_path / "ledger.db"
    set_connection("reminder_ledger_default", {"conn_type": "sqlite", "host": str(path)})
    led = SendLedger(f"sqlite:///{path}")
    led.migrate()
    try:
        yield led
    finally:
        led.dispose()


@pytest.fixture
def run_dag(airflow_db: Path) -> Any:
    """Run a DAG of dags/ once with ``dag.test()``; returns {task_id[map_index]: state} and the run."""

    def _run(
        dag_id: str, logical_date: Any = None, conf: dict[str, Any] | None = None, *, manual: bool = False
    ) -> dict[str, Any]:
        """``manual``: no logical date, as the UI's Trigger form and the REST API start a run."""
        import pendulum

        dag = local_airflow.load_dag(dag_id)
        when = None if manual else (
            logical_date or pendulum.now("Asia/Kolkata").replace(hour=9, minute=0, second=0, microsecond=0)
        )
        # dag.test() runs mapped batches one after another, so give each batch the whole rate.
        dr = dag.test(logical_date=when, run_conf={"messages_per_second": 200, **(conf or {})})
        return {"run": dr, "states": task_states(dr), "state": str(dr.state)}

    return _run


def task_states(dr: Any) -> dict[str, str]:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        tis = session.query(TaskInstance).filter(
            TaskInstance.dag_id == dr.dag_id, TaskInstance.run_id == dr.run_id
        ).all()
        return {
            (ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]"): str(ti.state) for ti in tis
        }


def xcom_result(dr: Any, task_id: str) -> Any:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = (
            session.query(XComModel)
            .filter(XComModel.dag_id == dr.dag_id, XComModel.run_id == dr.run_id, XComModel.task_id == task_id,
                    XComModel.key == "return_value")
            .first()
        )
        value = XComModel.deserialize_value(row) if row is not None else None
        return json.loads(value) if isinstance(value, str) else value
