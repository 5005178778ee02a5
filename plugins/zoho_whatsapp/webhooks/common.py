"""What every webhook endpoint of the plugin needs, whoever calls it: a bounded body, strict JSON,
and a connection lookup that a flood of bad requests cannot turn into a flood of lookups.

The JSON rules are one function for both endpoints (Zoho's, whose payload checks are pure and run
in tasks too, and Meta's), so both refuse the same bodies; each keeps its own HTTP answers.

>>> strict_json_object(b'{"a": 1}')
{'a': 1}
>>> strict_json_object(b'{"a": 1, "a": 2}')
Traceback (most recent call last):
...
zoho_whatsapp.webhooks.common.BodyError: malformed JSON: the key 'a' appears more than once in one object
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:  # the JSON rules are used outside the API server too: no web framework at import
    from fastapi import FastAPI
    from starlette.requests import Request

__all__ = [
    "BodyError", "CachedLookup", "WebhookNotConfigured", "json_depth", "private_app", "read_body", "strict_json",
    "strict_json_object",
]

T = TypeVar("T")
MAX_DEPTH = 32  # webhook bodies are a few levels deep; deeper is an attack or a bug


class WebhookNotConfigured(Exception):
    """The endpoint's connection lacks its secret: it refuses every request until it is set."""


class BodyError(ValueError):
    """A request body the endpoint refuses; ``status`` is the HTTP answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def private_app(title: str, description: str | None) -> FastAPI:
    """A FastAPI app for a webhook endpoint: no docs or OpenAPI pages (unauthenticated callers learn nothing)."""
    from fastapi import FastAPI

    return FastAPI(title=title, description=description, docs_url=None, redoc_url=None, openapi_url=None)


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The raw body, refusing (413) anything over ``max_bytes`` before reading it all into memory."""
    from starlette.requests import ClientDisconnect

    length = request.headers.get("content-length")
    if length is not None:
        try:
            declared = int(length)
        except ValueError:
            raise BodyError(400, "invalid Content-Length header") from None
        if declared > max_bytes:
            raise BodyError(413, f"body of {declared} bytes is over the {max_bytes}-byte limit")
    body = bytearray()
    try:
        async for chunk in request.stream():
            body.extend(chunk)
            if len(body) > max_bytes:
                raise BodyError(413, f"body is over the {max_bytes}-byte limit")
    except ClientDisconnect:
        raise BodyError(400, "the client disconnected before sending the whole body") from None
    return bytes(body)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400 parses as infinity
        raise ValueError(f"the number {text[:40]} is out of range")
    return value


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Two parsers reading the same body must not see two different objects.
    document: dict[str, Any] = {}
    for key, value in pairs:
        if key in document:
            raise ValueError(f"the key {key[:60]!r} appears more than once in one object")
        document[key] = value
    return document


def strict_json(
    body: bytes,
    *,
    max_depth: int = MAX_DEPTH,
    too_deep_status: int = 400,
    empty: str = "empty body: send a JSON object",
) -> Any:
    """The JSON value of ``body``: UTF-8, no duplicate keys, no NaN/Infinity or number out of range, at most
    ``max_depth`` deep. Raises :class:`BodyError`: 400, or ``too_deep_status`` for nesting (``empty``: the
    message for a blank body)."""
    if not body.strip():
        raise BodyError(400, empty)
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BodyError(400, f"malformed JSON: the body is not UTF-8 (byte {exc.start})") from None
    try:
        document = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float,
                              object_pairs_hook=_refuse_duplicates)
    except json.JSONDecodeError as exc:
        raise BodyError(400, f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except (ValueError, RecursionError) as exc:  # NaN, duplicate keys, over-long integers, absurd nesting
        raise BodyError(400, f"malformed JSON: {str(exc)[:200]}") from None
    if json_depth(document, max_depth) > max_depth:
        raise BodyError(too_deep_status, f"the JSON is nested more than {max_depth} levels deep")
    return document


def strict_json_object(body: bytes, *, max_depth: int = MAX_DEPTH) -> dict[str, Any]:
    """A JSON object from ``body`` by the rules of :func:`strict_json`; anything else is a 400."""
    document = strict_json(body, max_depth=max_depth)
    if not isinstance(document, dict):
        raise BodyError(400, "the body must be a JSON object")
    return document


def json_depth(value: Any, limit: int = MAX_DEPTH) -> int:
    """How deep ``value`` nests (stops counting past ``limit``); iterative, so no recursion limit."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        deepest = max(deepest, level)
        if level > limit:
            return level
        if isinstance(item, dict):
            stack.extend((v, level + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, level + 1) for v in item)
    return deepest


class CachedLookup(Generic[T]):
    """A value read from somewhere slow (an Airflow connection), kept ``max_age`` seconds.

    ``get(fresh=True)`` asks for a re-read, e.g. when a signature does not match and the secret may
    have just been rotated; it re-reads at most once per ``min_refresh`` seconds and only one caller
    reads at a time (the others wait and take its result), so a storm of forged requests costs at
    most one lookup per interval. A failed read (connection missing) is remembered the same way.

    .. code-block:: python

        secrets = CachedLookup(lambda: read_connection("whatsapp_default"), max_age=30, min_refresh=5)
        value = secrets.get()
    """

    def __init__(self, load: Callable[[], T], *, max_age: float, min_refresh: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._load = load
        self.max_age = max_age
        self.min_refresh = min_refresh
        self._clock = clock
        self._read_lock = threading.Lock()
        self._value: T | None = None
        self._error: BaseException | None = None
        self._loaded_at: float | None = None
        self.lookups = 0  # how many times the source was read (tests and logs)

    def _cached(self, fresh: bool) -> tuple[bool, T | None]:
        if self._loaded_at is None:
            return False, None
        age = self._clock() - self._loaded_at
        # A failure is retried sooner than a value expires: the connection may just have been created.
        if age < (self.min_refresh if fresh or self._error is not None else self.max_age):
            if self._error is not None:
                raise self._error
            return True, self._value
        return False, None

    def get(self, *, fresh: bool = False) -> T:
        hit, value = self._cached(fresh)
        if hit:
            return value  # type: ignore[return-value]
        with self._read_lock:
            hit, value = self._cached(fresh=True)  # another caller may have just read it
            if hit:
                return value  # type: ignore[return-value]
            self.lookups += 1
            try:
                loaded = self._load()
            except Exception as exc:
                self._value, self._error, self._loaded_at = None, exc, self._clock()
                raise
            self._value, self._error, self._loaded_at = loaded, None, self._clock()
            return loaded
