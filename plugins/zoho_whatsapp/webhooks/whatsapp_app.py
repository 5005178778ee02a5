"""The callback endpoint Meta's WhatsApp Cloud API calls, served by the Airflow API server.

The plugin mounts this app at ``/whatsapp``, so Meta's callback URL is
``https://<airflow-host>/whatsapp/webhook`` (set-up steps: ``docs/whatsapp-webhooks.md``).

* ``GET /webhook`` — Meta's verification handshake: ``hub.mode=subscribe`` and ``hub.verify_token``
  equal to the connection's ``verify_token`` → ``hub.challenge`` as ``text/plain``; anything else 403.
* ``POST /webhook`` — a notification (statuses, inbound messages, user preferences). Airflow does not
  authenticate plugin apps; Meta signs every POST with the app secret instead:
  ``X-Hub-Signature-256: sha256=<HMAC-SHA256(app secret, raw body)>``. The signature is checked, in
  constant time, on the raw bytes before anything parses them; then the events are stored in the
  ledger database (de-duplicated: Meta retries failed deliveries for up to 7 days) and applied
  (:mod:`zoho_whatsapp.ledger.delivery`) before the answer.

Connection ``whatsapp_default`` (the one the sender uses) holds the secrets as extras ``app_secret``
(App Dashboard → App settings → Basic → App secret) and ``verify_token`` (any long random string,
typed into Meta's webhook configuration too); Airflow masks extras named like that, and this module
never logs them. Optional extras ``opt_out_keywords`` / ``opt_in_keywords`` (a list or a
comma-separated string) replace the default reply keywords of :mod:`zoho_whatsapp.rules.consent`.
The connection is read at most once per ``secret_max_age`` seconds; a wrong signature may force an
early re-read (the secret may just have been rotated), one at a time and at most once per
``secret_min_refresh`` seconds, so forged requests cannot hammer the metadata database.

Answers (nothing is stored unless 200; bad input never gets a 5xx):

=====  ==========================================================================================
200    stored and applied (``stored``, ``duplicates``, ``ignored`` counts); also for a signed
       notification whose items are all of kinds the product does not use
400    signed, but not JSON (or duplicate keys, NaN, nesting deeper than 32)
401    ``X-Hub-Signature-256`` missing, malformed or not the HMAC of this body with the app secret
413    body over ``max_body_bytes``
422    signed JSON that is not a WhatsApp Business Account notification
503    ``app_secret`` not configured, or the ledger unreachable (Meta retries); a generic text, the
       cause is logged
=====  ==========================================================================================
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import threading
import time
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.concurrency import run_in_threadpool

from zoho_whatsapp.rules.consent import DEFAULT_OPT_IN_KEYWORDS, DEFAULT_OPT_OUT_KEYWORDS, keyword_list
from zoho_whatsapp.webhooks.common import (
    BodyError,
    CachedLookup,
    WebhookNotConfigured,
    private_app,
    read_body,
    strict_json_object,
)
from zoho_whatsapp.webhooks.whatsapp_events import NotificationError, parse_notification

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Hub-Signature-256"
DEFAULT_CONN_ID = "whatsapp_default"
MAX_BODY_BYTES = 3 * 1024 * 1024  # Meta's notifications stay under 3 MB, batched ones included
_SIGNATURE = re.compile(r"sha256=([0-9a-fA-F]{64})")
_CHALLENGE = re.compile(r"[A-Za-z0-9._~\-]{1,256}")
_UNAVAILABLE = "temporarily unavailable; retry later"


@dataclass(frozen=True)
class WhatsAppWebhookSettings:
    """Where the endpoint finds its secrets and its ledger, and how much it reads."""

    conn_id: str = DEFAULT_CONN_ID
    ledger_conn_id: str = "reminder_ledger_default"
    max_body_bytes: int = MAX_BODY_BYTES
    secret_max_age: float = 30.0  # a rotated secret is picked up within this time ...
    secret_min_refresh: float = 5.0  # ... or sooner, when a signature fails, but not more often than this


@dataclass(frozen=True)
class WebhookSecrets:
    app_secret: bytes | None
    verify_token: str | None
    opt_out: tuple[str, ...]
    opt_in: tuple[str, ...]


def read_secrets(conn_id: str) -> WebhookSecrets:
    """The endpoint's part of the connection (never logged)."""
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        conn = BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        raise WebhookNotConfigured(f"connection {conn_id!r} is not defined") from None
    extra = conn.extra_dejson
    app_secret = str(extra.get("app_secret") or "").strip()
    verify_token = str(extra.get("verify_token") or "").strip()
    try:
        from airflow.sdk.log import mask_secret

        for value in (app_secret, verify_token):
            if value:
                mask_secret(value)
    except Exception:  # masking is best effort here: nothing below logs the values anyway
        pass
    return WebhookSecrets(
        app_secret=app_secret.encode() if app_secret else None,
        verify_token=verify_token or None,
        opt_out=keyword_list(extra.get("opt_out_keywords"), DEFAULT_OPT_OUT_KEYWORDS),
        opt_in=keyword_list(extra.get("opt_in_keywords"), DEFAULT_OPT_IN_KEYWORDS),
    )


class _Resources:
    """Secrets and the ledger, resolved on first use (the API server imports plugins before anything
    is configured), then kept for the life of the worker."""

    def __init__(self, settings: WhatsAppWebhookSettings) -> None:
        self.settings = settings
        self.secrets = CachedLookup(lambda: read_secrets(settings.conn_id), max_age=settings.secret_max_age,
                                    min_refresh=settings.secret_min_refresh)
        self._lock = threading.Lock()
        self._deliveries: Any = None

    def deliveries(self, secrets: WebhookSecrets) -> Any:
        with self._lock:
            if self._deliveries is None:
                from zoho_whatsapp.ledger.delivery import DeliveryLedger

                self._deliveries = DeliveryLedger.from_connection(self.settings.ledger_conn_id)
            self._deliveries.opt_out, self._deliveries.opt_in = secrets.opt_out, secrets.opt_in
            return self._deliveries

    def dispose(self) -> None:
        with self._lock:
            if self._deliveries is not None:
                self._deliveries.dispose()
                self._deliveries = None


def _error(status: int, message: str) -> JSONResponse:
    headers = {"Retry-After": "60"} if status == 503 else None
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def signature_matches(header: str, body: bytes, app_secret: bytes) -> bool:
    """Whether ``header`` is ``sha256=`` and the hex HMAC-SHA256 of ``body`` under ``app_secret`` (constant time)."""
    found = _SIGNATURE.fullmatch(header.strip())
    if found is None:
        return False
    expected = hmac.new(app_secret, body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(found.group(1).lower().encode(), expected.encode())


def create_app(settings: WhatsAppWebhookSettings | None = None) -> FastAPI:
    """Build the FastAPI app the plugin mounts at ``/whatsapp``.

    .. code-block:: python

        from starlette.testclient import TestClient

        client = TestClient(create_app())
        client.get("/webhook", params={"hub.mode": "subscribe", "hub.verify_token": token, "hub.challenge": "42"})
    """
    settings = settings or WhatsAppWebhookSettings()
    resources = _Resources(settings)
    app = private_app("WhatsApp Cloud API webhooks", __doc__)
    app.state.resources = resources
    app.state.settings = settings

    @app.get("/webhook")
    async def verify(request: Request) -> Any:
        params = request.query_params
        mode, token, challenge = params.get("hub.mode"), params.get("hub.verify_token") or "", params.get("hub.challenge")
        try:
            secrets = await run_in_threadpool(resources.secrets.get)
            expected = secrets.verify_token
            if expected and not _same(token, expected):
                secrets = await run_in_threadpool(resources.secrets.get, fresh=True)  # maybe just rotated
                expected = secrets.verify_token
        except Exception as exc:  # not configured, or the metadata DB down: no handshake either way
            log.error("WhatsApp webhook verification refused: cannot read connection %r (%s)",
                      settings.conn_id, exc.__class__.__name__)
            expected = None
        if not expected:
            log.error("WhatsApp webhook verification refused: connection %r has no extra verify_token", settings.conn_id)
            return PlainTextResponse("forbidden", status_code=403)
        if mode != "subscribe" or not _same(token, expected):
            log.warning("WhatsApp webhook verification refused from %s: wrong mode or verify token", _client(request))
            return PlainTextResponse("forbidden", status_code=403)
        if challenge is None or not _CHALLENGE.fullmatch(challenge):
            return PlainTextResponse("hub.challenge is missing or malformed", status_code=400)
        log.info("WhatsApp webhook verified by %s", _client(request))
        return PlainTextResponse(challenge)

    @app.post("/webhook")
    async def receive(request: Request) -> JSONResponse:
        started = time.perf_counter()
        try:
            body = await read_body(request, settings.max_body_bytes)
        except BodyError as exc:
            return _error(exc.status, str(exc))
        header = request.headers.get(SIGNATURE_HEADER)
        if not header:
            log.warning("refused a WhatsApp webhook from %s: no %s header", _client(request), SIGNATURE_HEADER)
            return _error(401, f"missing {SIGNATURE_HEADER}")
        try:
            secrets = await run_in_threadpool(resources.secrets.get)
            if secrets.app_secret is None:
                raise WebhookNotConfigured(f"connection {settings.conn_id!r} has no extra app_secret")
            if not signature_matches(header, body, secrets.app_secret):
                fresh = await run_in_threadpool(resources.secrets.get, fresh=True)  # maybe just rotated
                if fresh.app_secret is not None and fresh.app_secret != secrets.app_secret:
                    secrets = fresh
        except Exception as exc:
            log.error("refusing WhatsApp webhooks: %s", exc if isinstance(exc, WebhookNotConfigured)
                      else f"cannot read connection {settings.conn_id!r} ({exc.__class__.__name__})")
            return _error(503, _UNAVAILABLE)
        if secrets.app_secret is None or not signature_matches(header, body, secrets.app_secret):
            log.warning("refused a WhatsApp webhook from %s: wrong signature", _client(request))
            return _error(401, f"{SIGNATURE_HEADER} is not the signature of this body")

        try:
            note = parse_notification(strict_json_object(body))
        except (BodyError, NotificationError) as exc:
            log.info("refused a signed WhatsApp webhook: HTTP %d %s", exc.status, str(exc)[:200])
            return _error(exc.status, str(exc))
        digest = hashlib.sha256(body).hexdigest()
        try:
            recorded = await run_in_threadpool(lambda: resources.deliveries(secrets).record(note.events, digest))
        except Exception as exc:  # ledger unreachable: nothing stored, Meta delivers again later
            log.error("could not store %d WhatsApp webhook event(s): %s", len(note.events), exc.__class__.__name__)
            return _error(503, _UNAVAILABLE)
        elapsed = (time.perf_counter() - started) * 1000
        if note.ignored:
            log.info("WhatsApp webhook: %d item(s) ignored, e.g. %s", len(note.ignored), note.ignored[0])
        log.info("WhatsApp webhook: %d stored, %d duplicate(s), applied %s in %.1f ms",
                 recorded.stored, recorded.duplicates, dict(recorded.outcomes), elapsed)
        return JSONResponse({"status": "ok", "stored": recorded.stored, "duplicates": recorded.duplicates,
                             "ignored": len(note.ignored), "outcomes": dict(recorded.outcomes)})

    return app


def _same(provided: str, expected: str) -> bool:
    # compare_digest on bytes: constant time, and no TypeError for non-ASCII input.
    return bool(provided) and hmac.compare_digest(provided.encode("utf-8", "surrogateescape"), expected.encode())


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"
