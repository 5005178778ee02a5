"""Shared by the webhook and alert-DAG tests: the secret connection, bodies built from sandbox data."""

from __future__ import annotations

import hashlib
import hmac
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from starlette.testclient import TestClient

from zoho_whatsapp.rules.phone import UnusableNumber, to_whatsapp_number
from zoho_whatsapp.webhooks.app import SECRET_HEADER, WebhookSettings, create_app

# Nothing here imports Airflow at module level: tests/conftest.py must fix AIRFLOW_HOME before the first
# Airflow import, and a test module that imports `tests.conftest` runs it a second time at collection.

SECRET_CONN_ID = "zoho_books_webhook"
INVOICES = "/webhooks/invoices"
PAYMENTS = "/webhooks/payments"


def install_secret(set_connection: Any, secret: str | None, **extra: Any) -> None:
    """The connection the endpoint reads its shared secret from (password) and its ``extra`` settings
    (``signing_secret``, ``max_pending_events``, ``max_event_age_seconds``)."""
    conn: dict[str, Any] = {"conn_type": "generic"}
    if secret is not None:
        conn["password"] = secret
    if extra:
        conn["extra"] = extra
    set_connection(SECRET_CONN_ID, None if secret is None and not extra else conn)


def headers(secret: str) -> dict[str, str]:
    return {SECRET_HEADER: secret}


def json_headers(secret: str) -> dict[str, str]:
    return {SECRET_HEADER: secret, "Content-Type": "application/json"}


def signature(signing_secret: str, body: bytes) -> str:
    """What Zoho Billing documents for ``X-Zoho-Webhook-Signature`` (no query parameters): hex HMAC-SHA256."""
    return hmac.new(signing_secret.encode(), body, hashlib.sha256).hexdigest()


# Tests re-read the connection on every request (they change it between requests); the limits
# that protect the metadata database are tested on their own.
FRESH = {"secret_cache_seconds": 0.0, "min_refresh_seconds": 0.0}


@contextmanager
def client(**settings: Any) -> Iterator[TestClient]:
    """The real FastAPI app, as the plugin builds it, behind Starlette's TestClient."""
    app = create_app(WebhookSettings(**{**FRESH, **settings}))
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client
    app.state.resources.dispose()


def inbox_rows() -> list[dict[str, Any]]:
    from zoho_whatsapp.webhooks.inbox import WebhookInbox

    inbox = WebhookInbox.from_connection()
    try:
        return inbox.rows()
    finally:
        inbox.dispose()


def usable_invoice(sandbox: Any, status: str = "sent", skip: int = 0) -> tuple[dict[str, Any], dict[str, Any], str]:
    """An invoice of ``status`` whose customer has a WhatsApp-able mobile: (invoice row, contact, E.164)."""
    found = 0
    for invoice in sandbox.invoices(status):
        contact = sandbox.contact(invoice["customer_id"])
        try:
            number = to_whatsapp_number(contact.get("mobile"), "IN")
        except UnusableNumber:
            continue
        if found == skip:
            return invoice, contact, number
        found += 1
    raise AssertionError(f"the sandbox has no usable {status} invoice #{skip}")


def flat_invoice_body(invoice: dict[str, Any], mobile: str | None, **overrides: Any) -> dict[str, Any]:
    """The integration guide's custom payload for ``invoice`` (``invoice_id`` holds the number, as there)."""
    body = {
        "invoice_id": invoice["invoice_number"],
        "customer_name": invoice["customer_name"],
        "total": invoice["total"],
        "balance": invoice["balance"],
        "due_date": invoice["due_date"],
        "status": invoice["status"],
        "currency_code": invoice["currency_code"],
    }
    if mobile is not None:
        body["mobile"] = mobile
    body.update(overrides)
    return body


def sha(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


@dataclass(frozen=True)
class Served:
    url: str
    app: Any  # the FastAPI app: app.state.resources holds the refusal counts and connection reads


@contextmanager
def live_server(**settings: Any) -> Iterator[Served]:
    """The app on a real loopback HTTP server (uvicorn, as the API server runs it)."""
    import uvicorn

    app = create_app(WebhookSettings(**{**FRESH, **settings}))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield Served(f"http://127.0.0.1:{port}", app)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
        app.state.resources.dispose()
