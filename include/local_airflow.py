"""An Airflow of its own, on this machine, for the tests, ``make demo``, ``make bench`` and the live stack.

Airflow reads its configuration from the environment once, when it is first imported. So every
tool that runs Airflow outside a deployment builds that environment here first: its own
AIRFLOW_HOME, this repository's dags/ and plugins/, no example DAGs, and no connection inherited
from the caller's shell (a developer's real ``AIRFLOW_CONN_*`` must never meet the sandbox).
Dev and test tooling only: like the sandbox, it stays out of the production image.

    env = environment(home, extra=connection_env(sandbox.connections()))  # for a child process
    migrate_db(env)

    configure_this_process(home)  # before this process imports Airflow (tests/conftest.py)
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

REPO = Path(__file__).resolve().parents[1]
DAGS_FOLDER = REPO / "dags"
# Where Airflow finds the plugin package at run time, the sandbox, and the repo's own packages (tests, bench).
SOURCE_PATHS = (REPO / "plugins", REPO / "include", REPO)
LEDGER_CONN_ID = "reminder_ledger_default"


def settings(home: Path, *, logging_level: str = "INFO") -> dict[str, str]:
    """The Airflow configuration every local Airflow shares, as environment variables."""
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": logging_level,
        # A rehearsal against the sandbox at 22:00 must not wait for 09:00 IST (tests of the window unset it).
        "ZOHO_WHATSAPP_SEND_WINDOW": "always",
    }


def environment(
    home: Path,
    *,
    logging_level: str = "INFO",
    extra: Mapping[str, str] | None = None,
    drop: tuple[str, ...] = ("AIRFLOW_CONN_",),
) -> dict[str, str]:
    """The environment of a child process running Airflow in ``home`` (created if missing).

    This process's environment without the variables starting with one of ``drop``, then the
    shared settings, then ``extra`` (connections, more ``AIRFLOW__*`` settings).
    """
    home.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.update(settings(home, logging_level=logging_level))
    env["PYTHONPATH"] = os.pathsep.join(str(p) for p in SOURCE_PATHS)
    env.update(extra or {})
    return env


def free_port() -> int:
    """A TCP port nobody listens on at this moment, on loopback."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_settings(port: int, *, executor: str = "LocalExecutor") -> dict[str, str]:
    """What the long-running components (api-server, scheduler, triggerer...) need on loopback ``port``."""
    return {
        "AIRFLOW__CORE__EXECUTOR": executor,
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
    }


def configure_this_process(home: Path, *, logging_level: str = "INFO") -> None:
    """Make this process a local Airflow in ``home``; call it before anything imports Airflow."""
    home.mkdir(parents=True, exist_ok=True)
    for key in [k for k in os.environ if k.startswith("AIRFLOW_CONN_")]:
        del os.environ[key]
    os.environ.update(settings(home, logging_level=logging_level))
    # `airflow db migrate` writes a JWT secret into airflow.cfg, but this process may read its
    # configuration before that (any module importing Airflow): the secret must not depend on the order.
    os.environ.setdefault("AIRFLOW__API_AUTH__JWT_SECRET", secrets.token_hex(32))
    add_source_paths()


def add_source_paths() -> None:
    """Put plugins/, include/ and the repository on ``sys.path``, as PYTHONPATH does for children."""
    for path in reversed(SOURCE_PATHS):
        if str(path) not in sys.path:
            sys.path.insert(0, str(path))


def connection_env(connections: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """``AIRFLOW_CONN_<ID>`` variables (JSON) for ``{conn_id: connection}``, e.g. a sandbox's."""
    return {f"AIRFLOW_CONN_{conn_id.upper()}": json.dumps(dict(conn)) for conn_id, conn in connections.items()}


def sqlite_ledger(path: Path) -> dict[str, dict[str, Any]]:
    """The send ledger connection on a SQLite file (the embedded default of a deployment)."""
    return {LEDGER_CONN_ID: {"conn_type": "sqlite", "host": str(path)}}


def migrate_db(env: Mapping[str, str], *, log: IO[Any] | None = None, timeout: float = 600) -> None:
    """``airflow db migrate`` in ``env``'s AIRFLOW_HOME (``dag.test()`` needs a metadata DB).

    Its output goes to ``log`` when given; otherwise it is shown only if the migration fails.
    """
    airflow = Path(sys.executable).with_name("airflow")
    output: dict[str, Any] = {"stdout": log, "stderr": log} if log else {"capture_output": True, "text": True}
    done = subprocess.run([str(airflow), "db", "migrate"], env=dict(env), timeout=timeout, check=False, **output)
    if done.returncode != 0:
        tail = "" if log else "\n".join((done.stdout + done.stderr).splitlines()[-20:])
        raise RuntimeError(f"`airflow db migrate` failed in {env.get('AIRFLOW_HOME')} (exit {done.returncode})\n{tail}")
    create_send_pool(env, log=log, timeout=timeout)


def create_send_pool(env: Mapping[str, str], *, log: IO[Any] | None = None, timeout: float = 120) -> None:
    """The Airflow pool every organization's WhatsApp send tasks share, as docker-compose.yaml's
    airflow-init creates it: without it the scheduler never starts a send task."""
    add_source_paths()
    from zoho_whatsapp.organizations import (
        WHATSAPP_SENDS_POOL,
        WHATSAPP_SENDS_POOL_DESCRIPTION,
        WHATSAPP_SENDS_SLOTS,
    )

    airflow = Path(sys.executable).with_name("airflow")
    command = [str(airflow), "pools", "set", WHATSAPP_SENDS_POOL, str(WHATSAPP_SENDS_SLOTS),
               WHATSAPP_SENDS_POOL_DESCRIPTION]
    output: dict[str, Any] = {"stdout": log, "stderr": log} if log else {"capture_output": True, "text": True}
    done = subprocess.run(command, env=dict(env), timeout=timeout, check=False, **output)
    if done.returncode != 0:
        tail = "" if log else "\n".join((done.stdout + done.stderr).splitlines()[-20:])
        raise RuntimeError(f"`airflow pools set {WHATSAPP_SENDS_POOL}` failed (exit {done.returncode})\n{tail}")


def load_dag(dag_id: str) -> Any:
    """The DAG ``dag_id`` of dags/, parsed as the dag-processor does; refuses a folder with import errors."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS_FOLDER))
    if bag.import_errors:
        raise RuntimeError(f"DAG import errors: {bag.import_errors}")
    return bag.get_dag(dag_id)


@contextmanager
def scratch_postgres(admin_url: str, name: str) -> Iterator[str]:
    """A fresh PostgreSQL database ``name`` on ``admin_url``'s server, dropped afterwards; yields its URL.

    Named per process by the caller, so that parallel test sessions never drop each other's tables.
    """
    import sqlalchemy as sa

    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    created = False
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        created = True
        yield sa.engine.make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        if created:
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def serve_on_loopback(app: Any, *, start_timeout: float = 10.0) -> Iterator[str]:
    """An ASGI app on a real HTTP server (uvicorn, as Airflow's API server runs it) on a free loopback
    port, in a thread of this process; yields its base URL, ``http://127.0.0.1:<port>``."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + start_timeout
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
