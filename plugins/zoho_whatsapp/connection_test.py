"""Make the connection list's **Test** button work for connections without a port (Airflow 3.3.2).

The 3.3 UI builds the test request from the listed connection with ``port: Number(connection.port)``,
and ``Number(null)`` is ``0``. The API (``POST /api/v2/connections/test``) reuses the stored password
and extras only when the request names the stored host and port, and it treats only ``None``/``""``
as "no port", so every connection without a port is answered 400 "The host or port to test differs
from the stored connection": ours hide the port (``zoho_books``, ``whatsapp``, ``zoho_books_webhook``)
and the SQLite ledger has none. Airflow fixed this in the API after 3.3.2 (apache/airflow#73298,
"Fix Test connection rejecting a connection that has no port": nothing addresses port 0).

Until then, this root middleware of the plugin drops a ``"port": 0`` from that one request's body,
so the test runs against the *stored* endpoint (never another one: the host check is untouched and a
missing port cannot point anywhere new). It switches itself off on an Airflow whose API already
treats port 0 as unset. Storing ``port = 0`` instead would not help connections a user creates in
the UI (its form stores a blank port as null), and keeping the port visible would not either.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

TEST_PATH = "/api/v2/connections/test"
MAX_BODY_BYTES = 1024 * 1024  # a connection is a few kB; anything larger is passed on untouched


def airflow_rejects_port_zero() -> bool:
    """Whether this Airflow's test endpoint still takes ``port: 0`` for another destination."""
    try:
        from airflow.api_fastapi.core_api.routes.public.connections import _same_endpoint
    except ImportError:  # moved or gone: dropping a port 0 is harmless either way
        return True
    return not _same_endpoint(0, None)


def without_port_zero(body: bytes) -> bytes | None:
    """``body`` without its ``"port": 0``, or None when it has none (or is not a JSON object).

    >>> without_port_zero(b'{"connection_id": "whatsapp_default", "port": 0, "host": ""}')
    b'{"connection_id": "whatsapp_default", "host": ""}'
    >>> without_port_zero(b'{"connection_id": "pg", "port": 5432}') is None
    True
    """
    try:
        data = json.loads(body)
    except ValueError:
        return None
    port = data.get("port") if isinstance(data, dict) else None
    if port != 0 or isinstance(port, bool):
        return None
    del data["port"]
    return json.dumps(data).encode()


class PortlessConnectionTest:
    """ASGI middleware: the Test button's ``port: 0`` means "no port", as in later Airflow versions."""

    def __init__(self, app: ASGIApp, *, enabled: bool | None = None) -> None:
        self.app = app
        self.enabled = airflow_rejects_port_zero() if enabled is None else enabled

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not (self.enabled and scope.get("type") == "http" and scope.get("method") == "POST"
                and str(scope.get("path", "")).endswith(TEST_PATH)):
            await self.app(scope, receive, send)
            return
        body, messages = b"", []
        while True:
            message = await receive()
            messages.append(message)
            if message.get("type") != "http.request":
                break
            body += message.get("body", b"")
            if not message.get("more_body") or len(body) > MAX_BODY_BYTES:
                break
        rewritten = without_port_zero(body) if not messages[-1].get("more_body") else None
        if rewritten is not None:
            messages = [{"type": "http.request", "body": rewritten, "more_body": False}]
            scope = {**scope, "headers": [(k, v) for k, v in scope.get("headers", []) if k.lower() != b"content-length"]
                     + [(b"content-length", str(len(rewritten)).encode())]}

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)


MIDDLEWARE = {"middleware": PortlessConnectionTest, "args": [], "kwargs": {},
              "name": "Test button for connections without a port (apache/airflow#73298)"}
