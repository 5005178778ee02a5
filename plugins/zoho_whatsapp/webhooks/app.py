"""The webhook endpoint Zoho Books workflow rules POST to, served by the Airflow API server.

``POST /zoho-books/webhooks/invoices`` (Invoices, record created) and
``POST /zoho-books/webhooks/payments`` (Customer Payments, record created). Airflow does not
authenticate plugin apps, so the endpoint authenticates every request itself against the Airflow
connection ``zoho_books_webhook``:

* its *password* is a shared secret Zoho sends in the ``X-Zoho-Webhook-Secret`` header (a custom
  header of the Zoho webhook). Never in the URL: a request with a ``secret`` query parameter is
  refused even when the value is right, because proxies and access logs keep URLs;
* its extra ``signing_secret``, when set, is the secret of the Zoho webhook (API
  ``/settings/webhooks`` field ``secret``, "for signature verification", 12-50 alphanumerics), and
  every request must then carry a valid ``X-Zoho-Webhook-Signature``. **What Zoho Books sends is not
  documented** (checked November 2026: the Books API documents only the ``secret`` field). Two Zoho
  products document the header: Zoho Billing signs the query parameters sorted by key (key then
  value, concatenated) followed by the raw body; Zoho Payments sends ``t=<ms>,v=<hex>`` over
  ``<t>.<raw body>``. Both are HMAC-SHA256 and both are accepted here (hex or base64), compared in
  constant time. Try it with a test delivery from Zoho before relying on the signature alone.

At least one of the two must be configured and each configured one must be at least
``MIN_SECRET_CHARS`` (32) characters, else the endpoint refuses everything (503). The connection
is read at most once per ``secret_cache_seconds``; a request that fails authentication may force
an early re-read (a secret just rotated), but only one at a time and at most once per
``min_refresh_seconds``, so a storm of wrong secrets cannot hammer the metadata database.

**Replay.** A delivery replayed verbatim does nothing new: events are de-duplicated on their key
and inbox rows are never deleted (see :mod:`~zoho_whatsapp.webhooks.inbox`). On top of that, an
event older than the freshness window (extra ``max_event_age_seconds``, default 3 days, 0 turns it
off) is refused and counted: its age is the signature's timestamp when Zoho signs one, else the
newest of the record's ``last_modified_time``/``updated_time``/``created_time``. A body's claim can
only make an event look older, never let it do more; whoever holds the shared secret can write any
body, which is why the alerts DAG reads everything it sends from Zoho itself.

**Flood.** At most ``max_pending_events`` (extra, default 1000) events wait unhandled; a new event
beyond that is answered 429 with ``Retry-After`` and counted. Deliveries of stored events still
answer 200.

The endpoint validates the body, stores the event in the ledger database's inbox and answers; it
holds no Zoho or WhatsApp credentials and sends nothing. The triggerer notices the stored event
and starts the ``zoho_books_invoice_alerts`` DAG, which does the sending. While that DAG is paused
(or not parsed yet) the event waits, and the 202 carries a ``note`` saying so: the caller has proved
it knows the secret by then, and the DAG's pause state (one metadata-DB read per 10 seconds at
most) is all it learns.

Answers (nothing is stored unless 2xx; no bad input ever gets a 5xx):

=====  ==========================================================================================
202    stored (with a ``note`` when the alerts DAG is paused or not loaded: the event waits)
200    duplicate: the event is already stored (Zoho retried, or the record was edited)
400    malformed JSON (not UTF-8, NaN/Infinity, out-of-range number, a duplicated key, ...)
401    missing or wrong secret or signature, or a ``secret`` query parameter
404    unknown event path
413    body over ``max_body_bytes``
415    content type other than ``application/json`` (``charset=utf-8`` allowed)
422    readable but wrong or missing fields (the answer names them), or an event older than the
       freshness window
429    the pending inbox is full (``Retry-After``)
503    not configured, or the metadata or ledger database unreachable (``Retry-After``); the body is
       the same generic text whatever the cause, which is logged
=====  ==========================================================================================
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from zoho_whatsapp.webhooks.common import BodyError, CachedLookup, read_body
from zoho_whatsapp.webhooks.payloads import EVENT_PATHS, AlertEvent, PayloadError, parse_event

log = logging.getLogger(__name__)

SECRET_HEADER = "X-Zoho-Webhook-Secret"
SIGNATURE_HEADER = "X-Zoho-Webhook-Signature"
SECRET_PARAM = "secret"  # refused: a secret in a URL ends up in proxy and access logs
DEFAULT_SECRET_CONN_ID = "zoho_books_webhook"
MAX_BODY_BYTES = 256 * 1024  # a Zoho invoice with a hundred line items is well under this
MIN_SECRET_CHARS = 32
DEFAULT_MAX_PENDING_EVENTS = 1000
DEFAULT_MAX_EVENT_AGE_SECONDS = 3 * 24 * 3600.0  # Zoho's retries, and a long weekend of downtime
UNAVAILABLE = "the webhook endpoint is temporarily unavailable; retry later"
ALERTS_DAG_ID = "zoho_books_invoice_alerts"


class WebhookNotConfigured(Exception):
    """The secret is not set up: the endpoint refuses everything until it is."""


@dataclass(frozen=True)
class WebhookSettings:
    """Where the endpoint finds its secret and its inbox, and how much it reads."""

    secret_conn_id: str = DEFAULT_SECRET_CONN_ID
    ledger_conn_id: str = "reminder_ledger_default"
    max_body_bytes: int = MAX_BODY_BYTES
    secret_cache_seconds: float = 30.0  # how long a read of the connection is trusted
    min_refresh_seconds: float = 5.0  # a failed authentication re-reads it (a rotated secret) at most this often
    alerts_dag_id: str = ALERTS_DAG_ID  # a stored event waits while this DAG is paused: the 202 says so


@dataclass(frozen=True)
class WebhookConfig:
    """What connection ``zoho_books_webhook`` says (secrets as bytes, for constant-time compares)."""

    secret: bytes | None = field(repr=False)
    signing_secret: bytes | None = field(repr=False)
    max_pending_events: int = DEFAULT_MAX_PENDING_EVENTS
    max_event_age_seconds: float = DEFAULT_MAX_EVENT_AGE_SECONDS


def read_config(conn: Any, conn_id: str = DEFAULT_SECRET_CONN_ID) -> WebhookConfig:
    """Check an Airflow connection as the endpoint does; :class:`WebhookNotConfigured` says what is wrong."""
    extra = conn.extra_dejson
    secret = (conn.password or "").strip()
    signing = str(extra.get("signing_secret") or "").strip()
    if not secret and not signing:
        raise WebhookNotConfigured(
            f"connection {conn_id!r} has neither a password (the shared secret Zoho sends in {SECRET_HEADER}) "
            "nor an extra signing_secret: set a long random secret (e.g. `openssl rand -hex 32`)"
        )
    for name, value in (("password", secret), ("extra signing_secret", signing)):
        if value and len(value) < MIN_SECRET_CHARS:
            raise WebhookNotConfigured(
                f"connection {conn_id!r}: the {name} is shorter than {MIN_SECRET_CHARS} characters; "
                "set a long random one (e.g. `openssl rand -hex 20` for Zoho's 50-character limit)"
            )
    return WebhookConfig(
        secret=secret.encode("utf-8") or None,
        signing_secret=signing.encode("utf-8") or None,
        max_pending_events=int(_number(extra, "max_pending_events", DEFAULT_MAX_PENDING_EVENTS, conn_id, minimum=1)),
        max_event_age_seconds=_number(extra, "max_event_age_seconds", DEFAULT_MAX_EVENT_AGE_SECONDS, conn_id),
    )


def _number(extra: dict[str, Any], key: str, default: float, conn_id: str, minimum: float = 0) -> float:
    value = extra.get(key)
    if value is None or value == "":
        return default
    try:
        number = float("nan") if isinstance(value, bool) else float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if not number >= minimum or number == float("inf"):
        raise WebhookNotConfigured(f"connection {conn_id!r}: extra {key} must be a number of at least {minimum}")
    return number


class _Resources:
    """The configuration and the inbox, resolved on first use (never at import: the API server
    imports plugins before anything is configured) and then kept for the life of the worker."""

    def __init__(self, settings: WebhookSettings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._inbox: Any = None
        self.config = CachedLookup(self._read, max_age=max(settings.secret_cache_seconds, settings.min_refresh_seconds),
                                   min_refresh=settings.min_refresh_seconds)
        self.refused: Counter[str] = Counter()  # refusals by reason, since the worker started
        # An unpaused DAG should stop being reported paused soon; only authenticated calls read it.
        self.alerts_paused = CachedLookup(self._alerts_paused, max_age=min(settings.secret_cache_seconds, 10.0),
                                          min_refresh=min(settings.min_refresh_seconds, 5.0))

    def _read(self) -> WebhookConfig:
        from airflow.sdk import BaseHook
        from airflow.sdk.exceptions import AirflowNotFoundException

        conn_id = self.settings.secret_conn_id
        try:
            conn = BaseHook.get_connection(conn_id)
        except AirflowNotFoundException:
            raise WebhookNotConfigured(
                f"connection {conn_id!r} is not defined: create it with a long random secret as its password"
            ) from None
        return read_config(conn, conn_id)

    def _alerts_paused(self) -> bool | None:
        """Whether the alerts DAG is paused (None: not parsed yet); one primary-key read of the metadata DB."""
        import sqlalchemy as sa
        from airflow.models.dag import DagModel
        from airflow.utils.session import create_session

        with create_session() as session:
            return session.scalar(sa.select(DagModel.is_paused).where(DagModel.dag_id == self.settings.alerts_dag_id))

    def waiting_note(self) -> str | None:
        """What a caller who knows the secret should hear when its event will wait; never raises."""
        try:
            paused = self.alerts_paused.get()
        except Exception as exc:  # the answer is still 202: the event is stored either way
            log.debug("could not tell whether %s is paused: %s", self.settings.alerts_dag_id, exc)
            return None
        dag_id = self.settings.alerts_dag_id
        if paused is None:
            return f"the DAG {dag_id} is not loaded yet: the event waits in the inbox until it is"
        if paused:
            return (f"the DAG {dag_id} is paused: the event waits in the inbox and is sent when the DAG is "
                    "unpaused (Airflow UI, DAGs)")
        return None

    def inbox(self) -> Any:
        with self._lock:
            if self._inbox is None:
                from zoho_whatsapp.webhooks.inbox import WebhookInbox

                self._inbox = WebhookInbox.from_connection(self.settings.ledger_conn_id)
            return self._inbox

    def refuse(self, reason: str, message: str, *args: Any) -> int:
        """Count a refusal; log the first one and every hundredth (a flood must not flood the logs)."""
        with self._lock:
            self.refused[reason] += 1
            count = self.refused[reason]
        level = logging.WARNING if count == 1 or count % 100 == 0 else logging.DEBUG
        log.log(level, "refused a webhook (%s, %d so far): " + message, reason, count, *args)
        return count

    def dispose(self) -> None:
        with self._lock:
            if self._inbox is not None:
                self._inbox.dispose()
                self._inbox = None


def _answer(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    # ensure_ascii: an answer quoting hostile input (a lone surrogate) must still encode.
    return Response(json.dumps(body, ensure_ascii=True), status_code=status, headers=headers,
                    media_type="application/json")


def _error(status: int, message: str, **extra: Any) -> Response:
    headers = {"Retry-After": "60"} if status in (429, 503) else None
    return _answer(status, {"error": message, **extra}, headers)


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

    async def configured(fresh: bool = False) -> WebhookConfig | None:
        """The connection's configuration; None (the reason logged, never answered) when unusable."""
        try:
            return await run_in_threadpool(lambda: resources.config.get(fresh=fresh))
        except WebhookNotConfigured as exc:
            log.error("refusing webhooks: %s", exc)
        except Exception as exc:  # metadata DB down: Zoho retries a 503 later
            log.error("refusing webhooks: cannot read connection %r (%s)", settings.secret_conn_id, _reason(exc))
        return None

    @app.post("/webhooks/{event}")
    async def receive(event: str, request: Request) -> Response:
        started = time.perf_counter()
        if SECRET_PARAM in request.query_params:
            resources.refuse("unauthenticated", "a %r query parameter from %s", SECRET_PARAM, _client(request))
            return _error(401, f"the secret is not accepted in the URL (proxies and access logs keep URLs): "
                               f"send it in the {SECRET_HEADER} header")

        try:
            raw = await read_body(request, settings.max_body_bytes)
        except BodyError as exc:
            return _error(exc.status, str(exc))

        config = await configured()
        if config is None:
            return _error(503, UNAVAILABLE)
        authentic, signed_at = _authenticate(config, request, raw)
        if not authentic:  # maybe just rotated: re-read, unless that was done a moment ago
            config = await configured(fresh=True)
            if config is None:
                return _error(503, UNAVAILABLE)
            authentic, signed_at = _authenticate(config, request, raw)
        if not authentic:
            resources.refuse("unauthenticated", "%r from %s: missing or wrong secret or signature",
                              event[:40], _client(request))
            return _error(401, f"missing or wrong webhook secret or signature: send the secret in the "
                               f"{SECRET_HEADER} header")

        kind = EVENT_PATHS.get(event)
        if kind is None:
            return _error(
                404,
                f"unknown event {event[:40]!r}: POST invoices to .../webhooks/invoices and customer payments "
                "to .../webhooks/payments",
            )
        if not _is_json(request.headers.get("content-type")):
            return _error(415, "send the body as JSON with the header Content-Type: application/json")
        try:
            parsed = parse_event(kind, raw)
        except PayloadError as exc:
            log.info("refused a %s webhook: HTTP %d %s", kind, exc.status, str(exc)[:300])
            return _answer(exc.status, exc.as_dict())

        age = _age(parsed, signed_at)
        if config.max_event_age_seconds and age is not None and age > config.max_event_age_seconds:
            resources.refuse("stale", "%s is %.0f s old, over the %.0f-s freshness window",
                             parsed.event_key, age, config.max_event_age_seconds)
            return _error(422, f"the event is {age / 3600:.1f} hours old, older than the "
                               f"{config.max_event_age_seconds / 3600:g}-hour freshness window: not stored")

        from zoho_whatsapp.webhooks.inbox import InboxFull

        digest = hashlib.sha256(raw).hexdigest()
        try:
            stored = await run_in_threadpool(
                lambda: resources.inbox().record(parsed, digest, max_pending=config.max_pending_events)
            )
        except InboxFull as exc:
            resources.refuse("inbox_full", "%s: %s", parsed.event_key, exc)
            return _error(429, "too many events wait to be handled; retry later")
        except Exception as exc:  # ledger unreachable: not stored, so let Zoho deliver again later
            log.error("could not store webhook event %s (%s)", parsed.event_key, _reason(exc))
            return _error(503, UNAVAILABLE)
        elapsed = (time.perf_counter() - started) * 1000
        if stored.duplicate:
            log.info("webhook event %s delivered again (%d deliveries, %s): nothing new, %.1f ms",
                     stored.event_key, stored.deliveries, stored.status, elapsed)
            return _answer(200, {"status": "duplicate", "event_id": stored.event_id, "event_key": stored.event_key,
                                 "deliveries": stored.deliveries, "event_status": stored.status})
        log.info("stored webhook event %s as #%d in %.1f ms", stored.event_key, stored.event_id, elapsed)
        accepted = {"status": "accepted", "event_id": stored.event_id, "event_key": stored.event_key}
        # Only an authenticated caller gets here: it may learn that its events wait.
        note = await run_in_threadpool(resources.waiting_note)
        if note:
            log.warning("webhook event %s stored, but %s", stored.event_key, note)
        return _answer(202, {**accepted, "note": note} if note else accepted)

    return app


def _authenticate(config: WebhookConfig, request: Request, body: bytes) -> tuple[bool, datetime | None]:
    """Whether every configured check passes, and when Zoho signed the delivery (if it says)."""
    if config.secret is not None and not _same(request.headers.get(SECRET_HEADER), config.secret):
        return False, None
    if config.signing_secret is None:
        return True, None
    return _verify_signature(config.signing_secret, request.headers.get(SIGNATURE_HEADER) or "",
                             request.query_params.multi_items(), body)


def _verify_signature(key: bytes, header: str, query: list[tuple[str, str]], body: bytes) -> tuple[bool, datetime | None]:
    parts = dict(part.strip().split("=", 1) for part in header.split(",") if "=" in part)
    if "t" in parts and "v" in parts:  # Zoho Payments' form: t=<epoch ms>,v=<hex of HMAC(t + "." + body)>
        stamp = parts["t"].strip()
        if not (stamp.isascii() and stamp.isdigit() and len(stamp) <= 14):  # 14 digits: until the year 5138
            return False, None
        if not _mac_matches(key, stamp.encode() + b"." + body, parts["v"].strip()):
            return False, None
        return True, datetime.fromtimestamp(int(stamp) / 1000, UTC)
    # Zoho Billing's form: the query parameters sorted by key (key, then value), then the raw body.
    message = "".join(k + v for k, v in sorted(query)).encode("utf-8", "surrogateescape") + body
    return _mac_matches(key, message, header.strip()), None


def _mac_matches(key: bytes, message: bytes, given: str) -> bool:
    if not given or not given.isascii():
        return False
    mac = hmac.new(key, message, hashlib.sha256).digest()
    as_hex = hmac.compare_digest(given.lower().encode(), mac.hex().encode())
    as_base64 = hmac.compare_digest(given.encode(), base64.b64encode(mac))
    return as_hex or as_base64


def _age(event: AlertEvent, signed_at: datetime | None) -> float | None:
    """Seconds since Zoho signed the delivery, else since the record last changed; None if unknown."""
    moment = signed_at or (datetime.fromisoformat(event.changed_at) if event.changed_at else None)
    return None if moment is None else (datetime.now(UTC) - moment) / timedelta(seconds=1)


def _is_json(content_type: str | None) -> bool:
    """``application/json``, with at most a UTF-8 charset parameter."""
    media, _, params = (content_type or "").partition(";")
    if media.strip().lower() != "application/json":
        return False
    for param in params.split(";"):
        if not param.strip():
            continue
        name, _, value = param.partition("=")
        if name.strip().lower() != "charset" or value.strip().strip('"').lower() not in ("utf-8", "utf8"):
            return False
    return True


def _same(provided: str | None, expected: bytes) -> bool:
    # compare_digest on bytes: constant time, and no TypeError for non-ASCII input.
    return bool(provided) and hmac.compare_digest(provided.encode("utf-8", "surrogateescape"), expected)


def _reason(exc: Exception) -> str:
    # The driver's own message, not SQLAlchemy's, which would quote the statement's parameters
    # (the event's payload: names and phone numbers do not belong in logs).
    cause = getattr(exc, "orig", None) or exc
    return f"{cause.__class__.__name__}: {str(cause).strip()[:300]}"


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"
