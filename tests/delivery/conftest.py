"""Fixtures of the delivery tests: the webhook secrets, the endpoint on a real HTTP server, an HTTP session."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.delivery.helpers import install_whatsapp, serve


@pytest.fixture
def secrets(set_connection: Any) -> None:
    install_whatsapp(set_connection)


@pytest.fixture
def endpoint(ledger: Any, secrets: None) -> Iterator[str]:
    """``.../webhook`` of the app served over HTTP, storing into ``ledger`` (SQLite and PostgreSQL)."""
    with serve() as (base, _app):
        yield f"{base}/webhook"


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session
