"""Zoho Accounts OAuth imitation: ``/oauth/v2/token`` and ``/oauth/v2/token/revoke``.

Behaviour copied from Zoho (see docs/api-facts.md):

* errors come back with **HTTP 200** and ``{"error": "invalid_code"}`` / ``"invalid_client"``;
* grant codes are single-use and expire (``grant_code_ttl_seconds``, default 180 s);
* more than ``oauth_throttle_limit`` (10) token requests per ``oauth_throttle_window_seconds``
  (600 s) for one refresh token (or, for code exchanges, one client) -> HTTP 200
  ``{"error":"Access Denied", ..., "status":"failure"}`` for the rest of the window;
* at most ``max_live_access_tokens`` (10) live access tokens per refresh token: minting one more
  invalidates the oldest;
* tokens look like ``1000.<32 hex>.<32 hex>``.
"""

from __future__ import annotations

import collections
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from .faults import Faults
from .wire import HTML, JSON_ZOHO, Reply, Request, html_page

FULL_SCOPE = "ZohoBooks.fullaccess.all"
THROTTLED = {
    "error": "Access Denied",
    "error_description": "You have made too many requests continuously. Please try again after some time.",
    "status": "failure",
}


def new_token() -> str:
    return f"1000.{secrets.token_hex(16)}.{secrets.token_hex(16)}"


@dataclass
class AccessToken:
    token: str
    refresh_token: str
    scope: str
    expires_at: float
    revoked: bool = False


@dataclass
class RefreshToken:
    token: str
    client_id: str
    scope: str
    created: float
    revoked: bool = False
    access: collections.deque = field(default_factory=collections.deque)


@dataclass
class GrantCode:
    code: str
    scope: str
    expires_at: float
    used: bool = False


class TokenCheck:
    """Outcome of checking a Books ``Authorization`` header."""

    OK = "ok"
    MISSING = "missing"
    INVALID = "invalid"
    EXPIRED = "expired"

    def __init__(self, state: str, token: AccessToken | None = None) -> None:
        self.state = state
        self.token = token


class ZohoOAuth:
    def __init__(self, faults: Faults, client_id: str, client_secret: str, refresh_token: str,
                 api_domain: str = "") -> None:
        self.faults = faults
        self.client_id = client_id
        self.client_secret = client_secret
        self.seed_refresh_token = refresh_token
        self.api_domain = api_domain
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.codes: dict[str, GrantCode] = {}
            self.refresh: dict[str, RefreshToken] = {}
            self.access: dict[str, AccessToken] = {}
            self.throttle: dict[str, collections.deque] = {}
            self.refresh[self.seed_refresh_token] = RefreshToken(
                self.seed_refresh_token, self.client_id, FULL_SCOPE, time.time()
            )

    # ------------------------------------------------------------------ control API
    def issue_grant_code(self, scope: str = FULL_SCOPE, ttl_seconds: float | None = None) -> str:
        """What a user copies from the Self Client console."""
        ttl = self.faults.get("grant_code_ttl_seconds") if ttl_seconds is None else ttl_seconds
        code = new_token()
        with self.lock:
            self.codes[code] = GrantCode(code, scope or FULL_SCOPE, time.monotonic() + float(ttl))
        return code

    def expire_all(self) -> int:
        now = time.monotonic()
        with self.lock:
            for tok in self.access.values():
                tok.expires_at = min(tok.expires_at, now)
            return len(self.access)

    def check(self, authorization: str) -> TokenCheck:
        """Validate ``Authorization: Zoho-oauthtoken <token>`` (``Bearer`` is not accepted)."""
        scheme, _, value = authorization.strip().partition(" ")
        if not scheme:
            return TokenCheck(TokenCheck.MISSING)
        if scheme.lower() != "zoho-oauthtoken" or not value.strip():
            return TokenCheck(TokenCheck.INVALID)
        with self.lock:
            tok = self.access.get(value.strip())
            if tok is None or tok.revoked:
                return TokenCheck(TokenCheck.INVALID)
            if tok.expires_at <= time.monotonic():
                return TokenCheck(TokenCheck.EXPIRED, tok)
            return TokenCheck(TokenCheck.OK, tok)

    # ------------------------------------------------------------------ HTTP
    def handle(self, req: Request) -> Reply:
        path = req.path.rstrip("/")
        if path == "/oauth/v2/token/revoke" and req.method == "POST":
            return self._revoke(req)
        if path == "/oauth/v2/token" and req.method == "POST":
            if self.faults.take("zoho_oauth_5xx"):
                return Reply(500, html_page(500, "Internal Server Error"), HTML)
            return self._token(req)
        if path in ("/oauth/v2/token", "/oauth/v2/token/revoke"):
            return Reply(405, {"error": "invalid_request", "error_description": "Method not allowed"})
        return Reply(404, html_page(404, "Not Found"), HTML)

    def _token(self, req: Request) -> Reply:
        form = req.form()
        grant = form.get("grant_type", "")
        if grant not in ("authorization_code", "refresh_token"):
            return self._ok({"error": "unsupported_grant_type"})
        if form.get("client_id") != self.client_id or form.get("client_secret") != self.client_secret:
            return self._ok({"error": "invalid_client"})
        if grant == "authorization_code":
            return self._exchange_code(form)
        return self._refresh(form)

    def _exchange_code(self, form: dict[str, str]) -> Reply:
        now = time.monotonic()
        with self.lock:
            if not self._throttle_ok("client:" + self.client_id, now):
                return self._ok(dict(THROTTLED))
            grant = self.codes.get(form.get("code", ""))
            if grant is None or grant.used or grant.expires_at <= now:
                return self._ok({"error": "invalid_code"})
            grant.used = True
            rt = RefreshToken(new_token(), self.client_id, grant.scope, time.time())
            self.refresh[rt.token] = rt
            limit = int(self.faults.get("max_refresh_tokens"))
            while len(self.refresh) > limit:
                oldest = min(self.refresh.values(), key=lambda r: r.created)
                self._revoke_refresh(oldest)
                del self.refresh[oldest.token]
            access, ttl = self._mint(rt, now)
        return self._ok(
            {
                "access_token": access.token,
                "refresh_token": rt.token,
                "scope": rt.scope,
                "api_domain": self.api_domain,
                "token_type": "Bearer",
                "expires_in": ttl,
            }
        )

    def _refresh(self, form: dict[str, str]) -> Reply:
        now = time.monotonic()
        with self.lock:
            rt = self.refresh.get(form.get("refresh_token", ""))
            if rt is None or rt.revoked:
                return self._ok({"error": "invalid_code"})
            if not self._throttle_ok("refresh:" + rt.token, now):
                return self._ok(dict(THROTTLED))
            access, ttl = self._mint(rt, now)
        return self._ok(
            {
                "access_token": access.token,
                "scope": rt.scope,
                "api_domain": self.api_domain,
                "token_type": "Bearer",
                "expires_in": ttl,
            }
        )

    def _revoke(self, req: Request) -> Reply:
        token = req.form().get("token", "")
        with self.lock:
            rt = self.refresh.get(token)
            if rt is None or rt.revoked:
                return self._ok({"error": "invalid_code"})
            self._revoke_refresh(rt)
        return self._ok({"status": "success"})

    # ------------------------------------------------------------------ helpers (lock held)
    def _throttle_ok(self, key: str, now: float) -> bool:
        window = float(self.faults.get("oauth_throttle_window_seconds"))
        limit = int(self.faults.get("oauth_throttle_limit"))
        hits = self.throttle.setdefault(key, collections.deque())
        while hits and hits[0] <= now - window:
            hits.popleft()
        if len(hits) >= limit:
            return False
        hits.append(now)
        return True

    def _mint(self, rt: RefreshToken, now: float) -> tuple[AccessToken, int]:
        ttl = self.faults.get("token_ttl_seconds")
        tok = AccessToken(new_token(), rt.token, rt.scope, now + float(ttl))
        self.access[tok.token] = tok
        rt.access.append(tok.token)
        limit = int(self.faults.get("max_live_access_tokens"))
        live = [
            t for t in rt.access
            if t in self.access and not self.access[t].revoked and self.access[t].expires_at > now
        ]
        rt.access = collections.deque(live)
        while len(rt.access) > limit:
            old = rt.access.popleft()
            self.access.pop(old, None)
        return tok, int(ttl) if float(ttl) >= 1 else 1

    def _revoke_refresh(self, rt: RefreshToken) -> None:
        rt.revoked = True
        for t in rt.access:
            tok = self.access.get(t)
            if tok is not None:
                tok.revoked = True

    @staticmethod
    def _ok(body: dict[str, Any]) -> Reply:
        return Reply(200, body, JSON_ZOHO)


def scope_allows(scope: str, module: str, operation: str) -> bool:
    """True when a token's comma-separated scope grants ``ZohoBooks.<module>.<operation>``."""
    wanted = {
        "zohobooks.fullaccess.all",
        f"zohobooks.{module}.all".lower(),
        f"zohobooks.{module}.{operation}".lower(),
    }
    granted = {s.strip().lower() for s in scope.split(",") if s.strip()}
    return bool(granted & wanted)
