"""Shared by the delivery tests: the WhatsApp webhook app on a real HTTP server, signed bodies, ledger rows."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

# Nothing here imports Airflow at module level: tests/conftest.py fixes AIRFLOW_HOME first.

APP_SECRET = "3f1c0d9e8b7a65544332211000ffeeddccbbaa99"
VERIFY_TOKEN = "verify-6c2f0a1b9d8e7f6a5b4c3d2e1f0a9b8c"
ORG = "60012345678"
KIND = "payment_reminder"
OCCASION = "2026-11-25"


def install_whatsapp(set_connection: Any, base: dict[str, Any] | None = None, **extras: Any) -> None:
    """Connection ``whatsapp_default`` with the webhook secrets in its extras (``None`` drops one)."""
    conn = dict(base or {"conn_type": "whatsapp", "password": "EAAGtoken", "extra": {"phone_number_id": "1061"}})
    extra = {**conn.get("extra", {}), "app_secret": APP_SECRET, "verify_token": VERIFY_TOKEN, **extras}
    conn["extra"] = {k: v for k, v in extra.items() if v is not None}
    set_connection("whatsapp_default", conn)


def sign(body: bytes, secret: str = APP_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def signed(document: Any, secret: str = APP_SECRET) -> tuple[bytes, dict[str, str]]:
    raw = json.dumps(document, separators=(",", ":")).encode() if not isinstance(document, bytes) else document
    return raw, {"Content-Type": "application/json", "X-Hub-Signature-256": sign(raw, secret)}


def envelope(value: dict[str, Any], field: str = "messages") -> dict[str, Any]:
    value = {"messaging_product": "whatsapp",
             "metadata": {"display_phone_number": "912240001234", "phone_number_id": "1061"}, **value}
    return {"object": "whatsapp_business_account", "entry": [{"id": "1022", "changes": [{"value": value, "field": field}]}]}


def unix(moment: datetime | None = None) -> int:
    return int((moment or datetime.now(UTC)).timestamp())


def status(wamid: str, state: str, *, at: int | None = None, recipient: str = "919820012345",
           opaque: str | None = None, code: int | None = None, title: str = "Message Undeliverable.") -> dict[str, Any]:
    item: dict[str, Any] = {"id": wamid, "status": state, "timestamp": str(at or unix()), "recipient_id": recipient}
    if opaque is not None:
        item["biz_opaque_callback_data"] = opaque
    if state == "failed":
        item["errors"] = [{"code": code or 131026, "title": title, "message": title}]
    return envelope({"statuses": [item]})


def reply(sender: str, text: str, *, at: int | None = None, message_id: str | None = None,
          context: str | None = None) -> dict[str, Any]:
    item: dict[str, Any] = {"from": sender, "id": message_id or f"wamid.IN{time.perf_counter_ns()}",
                            "timestamp": str(at or unix()), "type": "text", "text": {"body": text}}
    if context:
        item["context"] = {"from": "912240001234", "id": context}
    return envelope({"contacts": [{"profile": {"name": "Customer"}, "wa_id": sender}], "messages": [item]})


def preference(wa_id: str, value: str, *, at: int | None = None) -> dict[str, Any]:
    item = {"wa_id": wa_id, "detail": f"User requested to {value} marketing messages",
            "category": "marketing_messages", "value": value, "timestamp": at or unix()}
    return envelope({"contacts": [{"profile": {"name": "Customer"}, "wa_id": wa_id}], "user_preferences": [item]},
                    field="user_preferences")


@contextmanager
def serve(**settings: Any) -> Iterator[tuple[str, Any]]:
    """The WhatsApp webhook app (as the plugin builds it) on a real loopback uvicorn server: (base URL, app)."""
    from local_airflow import serve_on_loopback

    from zoho_whatsapp.webhooks.whatsapp_app import WhatsAppWebhookSettings, create_app

    app = create_app(WhatsAppWebhookSettings(**{"secret_max_age": 0.0, "secret_min_refresh": 0.0, **settings}))
    try:
        with serve_on_loopback(app) as base:
            yield base, app
    finally:
        app.state.resources.dispose()


def opaque(invoice_id: str, occasion: str = OCCASION) -> str:
    from zoho_whatsapp.ledger.delivery import callback_data

    return callback_data(ORG, KIND, invoice_id, occasion)


def add_row(engine: sa.Engine, invoice_id: str, *, status: str = "sent", wamid: str | None = None,
            recipient: str = "+919820012345", customer: str = "Priya Textiles", occasion: str = OCCASION) -> int:
    """A ``messages`` row as the sender leaves it (``sent`` with its wamid, ``unknown`` without one, ...)."""
    from zoho_whatsapp.ledger.schema import messages

    now = datetime.now(UTC)
    with engine.begin() as conn:
        return conn.execute(messages.insert().values(
            organization_id=ORG, invoice_id=invoice_id, kind=KIND, occasion=occasion,
            invoice_number=f"INV-{invoice_id[-6:]}", customer_id=f"C{invoice_id[-4:]}", customer_name=customer,
            recipient=recipient, phone_masked="+91 98XXXXXX45", template_name="payment_reminder",
            template_language="en", parameters="{}", status=status, wamid=wamid, attempts=1,
            created_at=now, updated_at=now, settled_at=now if status in ("sent", "unknown") else None,
        )).inserted_primary_key[0]


def row(engine: sa.Engine, row_id: int) -> dict[str, Any]:
    from zoho_whatsapp.ledger.schema import messages

    with engine.connect() as conn:
        return dict(conn.execute(sa.select(messages).where(messages.c.id == row_id)).one()._mapping)


def table(engine: sa.Engine, name: str) -> list[dict[str, Any]]:
    from zoho_whatsapp.ledger import schema

    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.select(getattr(schema, name)))]


def suppression(engine: sa.Engine, recipient: str, **kwargs: Any) -> str | None:
    from zoho_whatsapp.ledger.delivery import suppression_reason

    with engine.connect() as conn:
        return suppression_reason(conn, recipient, **kwargs)


def naive_utc(moment: datetime | None) -> datetime | None:
    """Timestamps as both databases hand them back (SQLite drops the zone)."""
    if moment is None:
        return None
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment
