"""The webhook endpoint Zoho Books workflow rules POST to, served by the Airflow API server.

``POST /zoho-books/webhooks/invoices`` (Invoices, record created) and
``POST /zoho-books/webhooks/payments`` (Customer Payments, record created). Airflow does not
authenticate plugin apps, so every request must carry the shared secret from the Airflow
connection ``zoho_books_webhook`` (its password) in the ``X-Zoho-Webhook-Secret`` header (or the
``secret`` query parameter). The endpoint validates the body, stores the event in the ledger
database's inbox (de-duplicated on the event key) and answers; it holds no Zoho or WhatsApp
credentials and sends nothing. The triggerer notices the stored event and starts the
``zoho_books_invoice_alerts`` DAG, which does the sending.

Answers: 202 stored, 200 duplicate (already stored: Zoho retried), 401 wrong or missing secret,
404 unknown event, 400 malformed JSON, 413 body too large, 422 missing or wrong fields,
503 not configured or ledger unreachable (Zoho retries later). Nothing is stored unless 2xx.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from zoho_whatsapp.webhooks.payloads import EVENT_PATHS, PayloadError, parse_event

log = logging.getLogger(__name__)

SECRET_HEADER = "X-Zoho-Webhook-Secret"
SECRET_PARAM = "secret"
DEFAULT_SECRET_CONN_ID = "zoho_books_webhook"
MAX_BODY_BYTES = 256 * 1024  # a Zoho invoice with a hundred line items is well under this
MIN_SECRET_CHARS = 16


class WebhookNotConfigured(Exception):
    """The shared secret is not set up: the endpoint refuses everything until it is."""


@dataclass(frozen=True)
class WebhookSettings:
    """Where the endpoint finds its secret and its inbox, and how much it reads."""

    secret_conn_id: str = DEFAULT_SECRET_CONN_ID
    ledger_conn_id: str = "reminder_ledger_default"
    max_body_bytes: int = MAX_BODY_BYTES
    secret_cache_seconds: float = 30.0  # a rotated secret is picked up within this time


class _Resources:
    """The secret and the inbox, resolved on first use (never at import: the API server imports
    plugins before anything is configured) and then kept for the life of the worker."""

    def __init__(self, settings: WebhookSettings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._inbox: Any = None
        self._secret: bytes | None = None
        self._secret_at = 0.0

    def secret(self, *, fresh: bool = False) -> bytes:
        now = time.monotonic()
        with self._lock:
            stale = now - self._secret_at > self.settings.secret_cache_seconds
            if self._secret is not None and not stale and not fresh:
                return self._secret
        from airflow.sdk import BaseHook
        from airflow.sdk.exceptions import AirflowNotFoundException

        conn_id = self.settings.secret_conn_id
        try:
            conn = BaseHook.get_connection(conn_id)
        except AirflowNotFoundException:
            raise WebhookNotConfigured(
                f"connection {conn_id!r} is not defined: create it with the shared secret as its password"
            ) from None
        value = (conn.password or "").strip()
        if len(value) < MIN_SECRET_CHARS:
            raise WebhookNotConfigured(
                f"connection {conn_id!r} has no password or one shorter than {MIN_SECRET_CHARS} characters: "
                "set a long random shared secret (e.g. `openssl rand -hex 32`)"
            )
        secret = value.encode("utf-8")
        with self._lock:
            self._secret, self._secret_at = secret, time.monotonic()
        return secret

    def secret_age(self) -> float:
        return time.monotonic() - self._secret_at

    def inbox(self) -> Any:
        with self._lock:
            if self._inbox is None:
                from zoho_whatsapp.webhooks.inbox import WebhookInbox

                self._inbox = WebhookInbox.from_connection(self.settings.ledger_conn_id)
            return self._inbox

    def dispose(self) -> None:
        with self._lock:
            if self._inbox is not None:
                self._inbox.dispose()
                self._inbox = None


def _error(status: int, message: str, **extra: Any) -> JSONResponse:
    headers = {"Retry-After": "60"} if status == 503 else None
    return JSONResponse({"error": message, **extra}, status_code=status, headers=headers)


def create_app(settings: WebhookSettings | None = None) -> FastAPI:
    """Build the FastAPI app the plugin mounts at ``/zoho-books``.

    .. code-block:: python

        from starlette.testclient import TestClient

        client = TestClient(create_app())
        client.post("/webhooks/invoices", json=body, headers={"X-Zoho-Webhook-Secret": secret})
    """
    settings = settings or WebhookSettings()
    resources = _Resources(settings)
    app = FastAPI(
        title="Zoho Books → WhatsApp webhooks",
        description=__doc__,
        docs_url=None,  # unauthenticated callers learn nothing here
        redoc_url=None,
        openapi_url=None,
    )
    app.state.resources = resources
    app.state.settings = settings

    @app.post("/webhooks/{event}")
    async def receive(event: str, request: Request) -> JSONResponse:
        started = time.perf_counter()
        provided = request.headers.get(SECRET_HEADER) or request.query_params.get(SECRET_PARAM) or ""
        try:
            expected = await run_in_threadpool(resources.secret)
            if not _same(provided, expected) and resources.secret_age() > 1.0:
                expected = await run_in_threadpool(resources.secret, fresh=True)  # maybe just rotated
        except WebhookNotConfigured as exc:
            log.error("refusing a webhook: %s", exc)
            return _error(503, f"the webhook endpoint is not configured: {exc}")
        except Exception as exc:  # metadata DB down: Zoho retries a 503 later
            log.exception("cannot read the webhook secret")
            return _error(503, f"cannot read the webhook secret right now ({exc.__class__.__name__})")
        if not _same(provided, expected):
            log.warning("refused a webhook for %r from %s: missing or wrong secret", event, _client(request))
            return _error(401, f"missing or wrong webhook secret: send it in the {SECRET_HEADER} header")

        kind = EVENT_PATHS.get(event)
        if kind is None:
            return _error(
                404,
                f"unknown event {event[:40]!r}: POST invoices to .../webhooks/invoices and customer payments "
                "to .../webhooks/payments",
            )

        length = request.headers.get("content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                return _error(400, "invalid Content-Length header")
            if declared > settings.max_body_bytes:
                return _error(413, f"body of {declared} bytes is over the {settings.max_body_bytes}-byte limit")
        body = bytearray()
        try:
            async for chunk in request.stream():
                body.extend(chunk)
                if len(body) > settings.max_body_bytes:
                    return _error(413, f"body is over the {settings.max_body_bytes}-byte limit")
        except ClientDisconnect:
            return _error(400, "the client disconnected before sending the whole body")

        try:
            parsed = parse_event(kind, bytes(body))
        except PayloadError as exc:
            log.info("refused a %s webhook: HTTP %d %s", kind, exc.status, str(exc)[:300])
            return JSONResponse(exc.as_dict(), status_code=exc.status)

        digest = hashlib.sha256(body).hexdigest()
        try:
            stored = await run_in_threadpool(lambda: resources.inbox().record(parsed, digest))
        except Exception as exc:  # ledger unreachable: not stored, so let Zoho deliver again later
            log.exception("could not store webhook event %s", parsed.event_key)
            return _error(503, f"the event could not be stored ({exc.__class__.__name__}); retry later")
        elapsed = (time.perf_counter() - started) * 1000
        if stored.duplicate:
            log.info("webhook event %s delivered again (%d deliveries, %s): nothing new, %.1f ms",
                     stored.event_key, stored.deliveries, stored.status, elapsed)
            return JSONResponse(
                {"status": "duplicate", "event_id": stored.event_id, "event_key": stored.event_key,
                 "deliveries": stored.deliveries, "event_status": stored.status},
                status_code=200,
            )
        log.info("stored webhook event %s as #%d in %.1f ms", stored.event_key, stored.event_id, elapsed)
        return JSONResponse(
            {"status": "accepted", "event_id": stored.event_id, "event_key": stored.event_key},
            status_code=202,
        )

    return app


def _same(provided: str, expected: bytes) -> bool:
    # compare_digest on bytes: constant time, and no TypeError for non-ASCII input.
    return bool(provided) and hmac.compare_digest(provided.encode("utf-8", "surrogateescape"), expected)


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"
