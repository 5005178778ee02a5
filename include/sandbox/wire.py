"""Transport-neutral request/reply objects passed between the HTTP handler and the services."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

JSON_ZOHO = "application/json;charset=UTF-8"
JSON_META = "application/json; charset=UTF-8"
HTML = "text/html; charset=UTF-8"


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: bytes = b""
    received: float = field(default_factory=time.time)
    raw_headers: list[tuple[str, str]] = field(default_factory=list)  # as sent, for the log

    def header(self, name: str, default: str = "") -> str:
        return self.headers.get(name.lower(), default)

    def json(self) -> Any:
        """Parsed JSON body; raises ``ValueError`` when the body is not JSON."""
        if not self.body:
            raise ValueError("empty body")
        return json.loads(self.body.decode("utf-8"))

    def form(self) -> dict[str, str]:
        """Form-encoded body merged over the query string (Zoho accepts both)."""
        merged = dict(self.query)
        if self.body:
            try:
                text = self.body.decode("utf-8")
            except UnicodeDecodeError:
                text = ""
            merged.update({k: v[0] for k, v in parse_qs(text, keep_blank_values=True).items()})
        return merged


@dataclass
class Reply:
    status: int
    body: Any = None  # dict/list -> JSON, str -> text, bytes -> raw, None -> empty
    content_type: str = JSON_ZOHO
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False  # close the TCP connection without writing anything
    delay: float = 0.0  # seconds to wait (interruptibly) before writing the answer

    def payload(self) -> bytes:
        if self.body is None:
            return b""
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str):
            return self.body.encode("utf-8")
        return json.dumps(self.body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    def envelope_code(self) -> Any:
        """The service-level code of the answer (Zoho ``code``, OAuth ``error``, Meta ``error.code``)."""
        body = self.body
        if not isinstance(body, dict):
            return None
        if "code" in body:
            return body["code"]
        err = body.get("error")
        if isinstance(err, dict):
            return err.get("code")
        if isinstance(err, str):
            return err
        return None


def fingerprint(secret: str) -> str:
    """A short, stable, non-reversible stand-in for a secret in logs."""
    return "sha256:" + hashlib.sha256(secret.encode("utf-8")).hexdigest()[:12]


def redact_authorization(value: str) -> str:
    scheme, _, token = value.partition(" ")
    if not token:
        return fingerprint(scheme) if scheme else ""
    return f"{scheme} {fingerprint(token.strip())}"


def html_page(status: int, title: str) -> str:
    return (
        f"<html><head><title>{status} {title}</title></head><body>"
        f"<center><h1>{status} {title}</h1></center><hr><center>nginx</center></body></html>\n"
    )
