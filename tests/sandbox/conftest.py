"""Fixtures for the sandbox's own fidelity tests: a fresh Sandbox per test and small HTTP helpers."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

INCLUDE = Path(__file__).resolve().parents[2] / "include"
if str(INCLUDE) not in sys.path:
    sys.path.insert(0, str(INCLUDE))

from sandbox import Sandbox  # noqa: E402


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    """A sandbox on a free loopback port (overrides the project-wide fixture: no Airflow here)."""
    sb = Sandbox(host="127.0.0.1", port=0, seed=42).start()
    try:
        yield sb
    finally:
        sb.stop()


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


class Zoho:
    """Minimal Zoho client for the tests: token requests and authorised Books calls."""

    def __init__(self, sb: Sandbox, http: requests.Session) -> None:
        self.sb = sb
        self.http = http
        self.creds = sb.credentials
        self._token: str | None = None

    def token_request(self, **form: str) -> requests.Response:
        return self.http.post(f"{self.sb.url}/oauth/v2/token", data=form)

    def refresh(self, refresh_token: str | None = None) -> dict[str, Any]:
        return self.token_request(
            grant_type="refresh_token",
            refresh_token=refresh_token or self.creds["zoho_refresh_token"],
            client_id=self.creds["zoho_client_id"],
            client_secret=self.creds["zoho_client_secret"],
        ).json()

    def exchange(self, code: str, client_secret: str | None = None) -> dict[str, Any]:
        return self.token_request(
            grant_type="authorization_code",
            code=code,
            client_id=self.creds["zoho_client_id"],
            client_secret=client_secret or self.creds["zoho_client_secret"],
            redirect_uri="https://www.zoho.in/books",
        ).json()

    @property
    def token(self) -> str:
        if self._token is None:
            self._token = self.refresh()["access_token"]
        return self._token

    def get(self, path: str, token: str | None = None, org: bool = True, **params: Any) -> requests.Response:
        if org:
            params.setdefault("organization_id", self.creds["organization_id"])
        headers = {"Authorization": f"Zoho-oauthtoken {token or self.token}"}
        return self.http.get(f"{self.sb.url}/books/v3{path}", params=params, headers=headers)

    def post(self, path: str, body: dict[str, Any], **params: Any) -> requests.Response:
        params.setdefault("organization_id", self.creds["organization_id"])
        headers = {"Authorization": f"Zoho-oauthtoken {self.token}"}
        return self.http.post(f"{self.sb.url}/books/v3{path}", params=params, json=body, headers=headers)


@pytest.fixture
def zoho(sandbox: Sandbox, http: requests.Session) -> Zoho:
    return Zoho(sandbox, http)


def reminder_body(to: str = "+919820012345", **overrides: Any) -> dict[str, Any]:
    """A valid payment_reminder send body (named parameters, language with policy)."""
    params = {
        "party_name": "Rajesh Enterprises",
        "invoice_number": "INV-000138",
        "amount_due": "₹22,000.00",
        "due_date": "20 June 2026",
    }
    params.update(overrides)
    return {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": to,
        "type": "template",
        "template": {
            "name": "payment_reminder",
            "language": {"code": "en", "policy": "deterministic"},
            "components": [
                {
                    "type": "body",
                    "parameters": [
                        {"type": "text", "parameter_name": k, "text": v} for k, v in params.items()
                    ],
                }
            ],
        },
    }


@pytest.fixture(name="reminder_body")
def reminder_body_fixture() -> Any:
    """The ``reminder_body(to, **param_overrides)`` builder."""
    return reminder_body


class WhatsApp:
    def __init__(self, sb: Sandbox, http: requests.Session) -> None:
        self.sb = sb
        self.http = http
        self.url = f"{sb.url}/v23.0/{sb.credentials['phone_number_id']}/messages"

    def send(self, body: dict[str, Any] | None = None, token: str | None = None, **kw: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {token or self.sb.credentials['whatsapp_token']}"}
        return self.http.post(self.url, json=body if body is not None else reminder_body(), headers=headers, **kw)


@pytest.fixture
def wa(sandbox: Sandbox, http: requests.Session) -> WhatsApp:
    return WhatsApp(sandbox, http)
