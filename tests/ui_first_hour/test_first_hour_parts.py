"""The parts behind the first-hour fixes, each on its own (the whole is in test_first_hour.py)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from zoho_whatsapp.connection_test import PortlessConnectionTest
from zoho_whatsapp.ledger import SendKey
from zoho_whatsapp.rules.golive import GO_LIVE_VARIABLE, run_mode
from zoho_whatsapp.whatsapp.batch import BatchRef


def _through(middleware_enabled: bool, path: str, body: bytes) -> tuple[bytes, dict[bytes, bytes]]:
    """What the app behind the middleware receives for one POST: its body and headers."""
    seen: dict[str, Any] = {}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        seen["body"], seen["headers"] = b"".join(chunks), dict(scope["headers"])

    parts = [body[:10], body[10:]]  # as a client may send it: in pieces

    async def receive() -> dict[str, Any]:
        chunk = parts.pop(0)
        return {"type": "http.request", "body": chunk, "more_body": bool(parts)}

    scope = {"type": "http", "method": "POST", "path": path,
             "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]}
    asyncio.run(PortlessConnectionTest(app, enabled=middleware_enabled)(scope, receive, lambda m: None))
    return seen["body"], seen["headers"]


def test_the_ui_port_zero_reaches_airflow_as_no_port() -> None:
    body = json.dumps({"connection_id": "zoho_books_default", "conn_type": "zoho_books", "host": "", "port": 0,
                       "password": "***"}).encode()
    received, headers = _through(True, "/api/v2/connections/test", body)
    assert json.loads(received) == {"connection_id": "zoho_books_default", "conn_type": "zoho_books", "host": "",
                                    "password": "***"}
    assert headers[b"content-length"] == str(len(received)).encode()


@pytest.mark.parametrize("path, port", [
    ("/api/v2/connections/test", 5432),  # a real port: untouched, Airflow compares it with the stored one
    ("/api/v2/connections/test", False),  # JSON false is not 0
    ("/api/v2/connections", 0),  # only the test endpoint
])
def test_everything_else_passes_untouched(path: str, port: Any) -> None:
    body = json.dumps({"connection_id": "x", "conn_type": "http", "host": "db", "port": port}).encode()
    assert _through(True, path, body)[0] == body


def test_the_middleware_is_off_where_airflow_takes_port_zero() -> None:
    body = json.dumps({"connection_id": "x", "conn_type": "http", "port": 0}).encode()
    assert _through(False, "/api/v2/connections/test", body)[0] == body


def test_airflow_3_3_2_still_needs_it() -> None:
    """When this fails, Airflow treats port 0 as unset itself (apache/airflow#73298): the middleware is
    switched off on its own, and connection_test.py can go."""
    from zoho_whatsapp.connection_test import airflow_rejects_port_zero

    assert airflow_rejects_port_zero()


@pytest.mark.parametrize("run_type, requested, variable, dry", [
    ("scheduled", False, None, True),  # a new installation: the scheduler's run rehearses
    ("scheduled", False, "false", True),
    ("scheduled", False, "TRUE", False),  # live
    ("scheduled", True, "true", True),  # the param still wins
    ("manual", False, None, False),  # a person triggered it and left dry_run off
    ("backfill", False, None, False),
    ("manual", True, None, True),
])
def test_run_mode(run_type: str, requested: bool, variable: str | None, dry: bool) -> None:
    mode = run_mode(requested_dry_run=requested, run_type=run_type, go_live=variable)
    assert mode.dry_run is dry
    if run_type == "scheduled" and dry and not requested:
        assert GO_LIVE_VARIABLE in mode.why and "Admin -> Variables" in mode.why


def test_batch_label_is_what_the_grid_shows() -> None:
    key = SendKey("60353343398", "payment_reminder", "2026-11-29")
    ref = BatchRef(key, 1, 4, messages=80, batches=4)
    assert ref.label == "batch 2/4 · 80 messages"
    assert BatchRef.from_dict(ref.to_dict()).label == "batch 2/4 · 80 messages"
    assert BatchRef(key, 0, messages=1, batches=1).label == "batch 1/1 · 1 message"
    older = {k: v for k, v in ref.to_dict().items() if k not in ("messages", "batches")}
    assert BatchRef.from_dict(older).label == "batch 2"  # planned before batches carried their size
    assert ref == BatchRef(key, 1, 4)  # the size names the batch; it is not part of what it is


def test_webhook_connection_has_a_test(set_connection: Any) -> None:
    from zoho_whatsapp.webhooks.hook import ZohoBooksWebhookHook

    set_connection("zoho_books_webhook", {"conn_type": "zoho_books_webhook", "password": "s" * 40,
                                          "extra": {"max_pending_events": 50, "max_event_age_seconds": 3600}})
    ok, message = ZohoBooksWebhookHook().test_connection()
    assert ok, message
    assert "40-character secret in X-Zoho-Webhook-Secret" in message and "1 h" in message and "50 events" in message
    set_connection("zoho_books_webhook", {"conn_type": "zoho_books_webhook", "password": "short"})
    ok, message = ZohoBooksWebhookHook().test_connection()
    assert not ok and "shorter than 32 characters" in message


def test_webhook_connection_type_is_registered_and_testable() -> None:
    from airflow.api_fastapi.core_api.services.ui.connections import HookMetaService
    from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime

    hook = ProvidersManagerTaskRuntime().hooks["zoho_books_webhook"]
    assert hook.hook_class_name == "zoho_whatsapp.webhooks.hook.ZohoBooksWebhookHook" and hook.connection_testable
    meta = {m.connection_type: m for m in HookMetaService.hook_meta_data()}["zoho_books_webhook"]
    assert meta.standard_fields.password.title == "Shared secret" and meta.standard_fields.port.hidden
    assert set(meta.extra_fields) == {"signing_secret", "max_pending_events", "max_event_age_seconds"}
