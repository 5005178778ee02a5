"""Helpers for the deployment tests: run the CLI in-process, read what it wrote to the metadata DB."""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Any:
    """``cli("check", "zoho", stdin="secret\\n")`` runs ``zoho_whatsapp.cli.main`` and captures its output."""
    from tests.deploy.helpers import Run
    from zoho_whatsapp.cli import main

    def run(*argv: str, stdin: str = "") -> Run:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))  # not a terminal: secrets come from env or this
        capsys.readouterr()
        code = main(list(argv))
        out, err = capsys.readouterr()
        return Run(code, out, err)

    return run


@pytest.fixture
def fernet_key(airflow_db: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A Fernet key in force in this process, as in any deployment (docker-compose.yaml sets one).

    The test process may have imported Airflow before ``airflow db migrate`` wrote airflow.cfg, and
    then runs without a key; the key of airflow.cfg (if there is one) is kept so that values other
    tests stored stay readable.
    """
    import re

    from airflow.models.crypto import get_fernet
    from cryptography.fernet import Fernet

    cfg = Path(os.environ["AIRFLOW_HOME"]) / "airflow.cfg"
    found = re.search(r"^fernet_key\s*=\s*(\S+)\s*$", cfg.read_text(), re.M) if cfg.exists() else None
    key = Fernet.generate_key().decode() + (f",{found.group(1)}" if found else "")
    monkeypatch.setenv("AIRFLOW__CORE__FERNET_KEY", key)
    get_fernet.cache_clear()
    yield key
    get_fernet.cache_clear()


@pytest.fixture
def stored(fernet_key: str) -> Iterator[list[str]]:
    """Connection ids a test writes to the session's metadata DB; deleted afterwards."""
    ids: list[str] = []
    yield ids
    if ids:
        from tests.deploy.helpers import delete_db_connections

        delete_db_connections(*ids)


@pytest.fixture
def zoho_client(sandbox: Any, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The sandbox's Self Client, handed to the CLI the way README says: environment variables."""
    creds = sandbox.credentials
    monkeypatch.setenv("ZOHO_CLIENT_ID", creds["zoho_client_id"])
    monkeypatch.setenv("ZOHO_CLIENT_SECRET", creds["zoho_client_secret"])
    return creds
