"""A real Airflow API server with this project's plugin, for the audit page's browser tests.

``airflow api-server`` on a free loopback port, in the test session's AIRFLOW_HOME (so the DAG
runs that ``dag.test()`` recorded are there for the page's links), with Airflow's simple auth
manager and one user whose password the test knows.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import local_airflow

USER = "admin"


@dataclass(frozen=True)
class LiveAirflow:
    url: str
    user: str
    password: str
    log: Path

    def token(self) -> str:
        """A JWT for the API, as ``POST /auth/token`` gives it to any client."""
        answer = httpx.post(f"{self.url}/auth/token", json={"username": self.user, "password": self.password}, timeout=30)
        answer.raise_for_status()
        return answer.json()["access_token"]


def _wait(what: str, check: Any, timeout: float, child: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise RuntimeError(f"the API server exited ({child.returncode}) before {what}:\n{_tail(log)}")
        try:
            if check():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"waited {timeout:.0f}s for {what}:\n{_tail(log)}")


def _tail(log: Path, lines: int = 40) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


@contextmanager
def api_server(home: Path, work: Path, connections: Mapping[str, Mapping[str, Any]], *,
               settings: Mapping[str, str] | None = None, components: tuple[str, ...] = ()) -> Iterator[LiveAirflow]:
    """Start ``airflow api-server`` (1 worker) on loopback; stop it (its whole process group) afterwards.

    ``settings``: more ``AIRFLOW__*`` for this server; ``components``: more of Airflow's processes
    started with the same environment (``scheduler``, ``dag-processor``), so their tasks reach it.
    """
    port = local_airflow.free_port()
    password = secrets.token_urlsafe(12)
    passwords = work / "simple_auth_manager_passwords.json"
    passwords.write_text(json.dumps({USER: password}))
    env = local_airflow.environment(home, drop=("AIRFLOW", "PYTEST"), extra={
        **local_airflow.server_settings(port),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USER}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
        **local_airflow.connection_env(connections),
        **(settings or {}),
    })
    log = work / "api-server.log"
    airflow = str(Path(sys.executable).with_name("airflow"))
    with open(log, "wb") as out:
        child = subprocess.Popen([airflow, "api-server", "--port", str(port), "--workers", "1"], env=env,
                                 stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    others = []
    for name in components:
        with open(work / f"{name}.log", "wb") as out:
            others.append(subprocess.Popen([airflow, name], env=env, stdout=out, stderr=subprocess.STDOUT,
                                           start_new_session=True))
    url = f"http://127.0.0.1:{port}"
    try:
        _wait("its health check", lambda: httpx.get(f"{url}/api/v2/monitor/health", timeout=5).status_code == 200,
              180, child, log)
        yield LiveAirflow(url=url, user=USER, password=password, log=log)
    finally:
        for process in [*others, child]:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in [*others, child]:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
