"""Tunable settings and switchable faults of the sandbox.

Every knob lives in one flat namespace so that ``Sandbox(**kw)``, ``sb.set_faults(**kw)``
and ``POST /_sandbox/faults`` all speak the same names.  Constructor values become the
*baseline*; ``set_faults`` overrides them; ``reset`` returns to the baseline.

Three kinds of knobs:

* settings (limits, latencies, TTLs) stay in force until changed or reset;
* counted faults (``COUNTED``) hit the next N matching requests, then switch themselves off;
* ``whatsapp_errors`` is a list of rules, each counted (``count``) or tied to a recipient (``to``).
"""

from __future__ import annotations

import copy
import threading
from typing import Any

DEFAULTS: dict[str, Any] = {
    # --- Zoho OAuth -------------------------------------------------------------------
    "token_ttl_seconds": 3600,  # lifetime of newly minted access tokens
    "grant_code_ttl_seconds": 180,  # lifetime of Self Client grant codes
    "oauth_throttle_limit": 10,  # token requests allowed per window per refresh token/client
    "oauth_throttle_window_seconds": 600,
    "max_live_access_tokens": 10,  # per refresh token; the oldest is invalidated beyond this
    "max_refresh_tokens": 20,  # per user; the oldest is deleted beyond this
    "zoho_oauth_5xx": 0,  # counted: token endpoint answers HTTP 500 with an HTML page
    # --- Zoho Books -------------------------------------------------------------------
    "zoho_rate_limit_per_minute": 100,
    "zoho_rate_window_seconds": 60.0,
    "zoho_concurrency_limit": 10,
    "zoho_daily_quota": 5000,
    "zoho_latency_ms": 0,
    "zoho_quota_exhausted": False,
    "zoho_duplicate_overdue_row": True,  # repeat the last row of page 1 as the first of page 2
    "zoho_amounts_as_strings": False,  # invoice total/balance/shipping_charge as "22000.00" (contract's type)
    "zoho_expire_tokens_after_requests": 0,  # counted: after N more OK Books calls expire tokens
    "zoho_429": 0,  # counted: HTTP 429 code 44, X-Rate-Limit-Reset: 1
    "zoho_1070": 0,  # counted: HTTP 429 code 1070 (too many concurrent calls)
    "zoho_5xx": 0,  # counted: HTTP zoho_5xx_status
    "zoho_5xx_status": 500,  # 500 -> JSON body {"code":500,...}; 502/503/504 -> HTML body
    "zoho_error_envelope_200": 0,  # counted: HTTP 200 with a non-zero "code"
    "zoho_error_envelope_code": 5,
    "zoho_error_envelope_message": "Invalid URL Passed",
    # --- WhatsApp Cloud API -----------------------------------------------------------
    "whatsapp_latency_ms": 0,
    "whatsapp_rate_cap": 80,  # accepted messages per sliding second
    "whatsapp_rate_limit_status": 400,  # HTTP status of the 130429 answer (Meta: 400 or 429)
    "whatsapp_errors": [],  # [{"code":130429,"count":2}, {"code":131026,"to":"+91..."}]
    "whatsapp_5xx_no_envelope": 0,  # counted: HTTP 502/503 with an HTML page
    "whatsapp_5xx_accepted": False,  # ... and the message was recorded anyway
    "whatsapp_drop_after_accept": 0,  # counted: record, then close the socket with no answer
    "whatsapp_hang_after": None,  # after K accepted sends, delay every answer ...
    "whatsapp_hang_seconds": 30.0,  # ... by this many seconds (message is recorded first)
    # --- WhatsApp webhooks to a receiver (see callbacks.py); off while callback_url is None ---------
    "callback_url": None,  # where Meta-style signed webhooks are POSTed, e.g. http://127.0.0.1:8080/whatsapp/webhook
    "callback_delay_ms": 100,  # after the message is accepted
    "callback_read_percent": 50,  # of delivered messages, also read
    "callback_failed_percent": 5,  # of numbers (chosen by the seed): every message fails asynchronously
    "callback_failed_code": 131026,  # "not on WhatsApp"
    "callback_duplicate_percent": 10,  # of messages, one status POSTed twice
    "callback_reorder_percent": 20,  # of messages, statuses POSTed in reverse order
    "callback_replies": [{"after": 2, "text": "paid yesterday"}, {"after": 5, "text": "STOP"}],
    "callback_retries": 3,  # a POST not answered 2xx is tried again this often
}

COUNTED = frozenset(
    {
        "zoho_oauth_5xx",
        "zoho_expire_tokens_after_requests",
        "zoho_429",
        "zoho_1070",
        "zoho_5xx",
        "zoho_error_envelope_200",
        "whatsapp_5xx_no_envelope",
        "whatsapp_drop_after_accept",
    }
)

_ERROR_RULE_KEYS = frozenset({"code", "count", "to", "status", "message", "details", "type"})


class Faults:
    """Thread-safe holder of settings and faults (see module docstring)."""

    def __init__(self, **baseline: Any) -> None:
        self._lock = threading.Lock()
        self._baseline = copy.deepcopy(DEFAULTS)
        self._baseline.update(self._validated(baseline))
        self._values: dict[str, Any] = {}
        self._hang_accepted = 0
        self.reset()

    # -- public -------------------------------------------------------------------------
    def reset(self) -> None:
        """Return every knob to its baseline (constructor) value."""
        with self._lock:
            self._values = copy.deepcopy(self._baseline)
            self._hang_accepted = 0

    def set(self, **kw: Any) -> dict[str, Any]:
        """Override some knobs; unknown names raise ``ValueError``.  Returns the new snapshot."""
        clean = self._validated(kw)
        with self._lock:
            self._values.update(clean)
            if "whatsapp_hang_after" in clean:
                self._hang_accepted = 0
            return copy.deepcopy(self._values)

    def get(self, name: str) -> Any:
        with self._lock:
            return self._values[name]

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return copy.deepcopy(self._values)

    def take(self, name: str) -> bool:
        """Consume one unit of a counted fault; True when the fault fired."""
        with self._lock:
            left = self._values.get(name) or 0
            if left > 0:
                self._values[name] = left - 1
                return True
            return False

    def tick_expire_countdown(self) -> bool:
        """Count one successful Books call; True when tokens must expire now."""
        with self._lock:
            left = self._values.get("zoho_expire_tokens_after_requests") or 0
            if left <= 0:
                return False
            left -= 1
            self._values["zoho_expire_tokens_after_requests"] = left
            return left == 0

    def take_whatsapp_error(self, wa_id: str, normalise: Any) -> dict[str, Any] | None:
        """Return the first ``whatsapp_errors`` rule matching this send (consuming a count)."""
        with self._lock:
            rules = self._values.get("whatsapp_errors") or []
            for rule in rules:
                target = rule.get("to")
                if target is not None and normalise(str(target)) != wa_id:
                    continue
                count = rule.get("count")
                if count is None and target is None:
                    count = rule["count"] = 1
                if count is not None:
                    if count <= 0:
                        continue
                    rule["count"] = count - 1
                return dict(rule)
            return None

    def whatsapp_should_hang(self) -> float:
        """Called for each accepted send: seconds to delay the answer (0 = answer now)."""
        with self._lock:
            after = self._values.get("whatsapp_hang_after")
            if after is None:
                return 0.0
            self._hang_accepted += 1
            if self._hang_accepted > int(after):
                return float(self._values.get("whatsapp_hang_seconds") or 0.0)
            return 0.0

    # -- helpers ------------------------------------------------------------------------
    @staticmethod
    def _validated(kw: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(kw) - set(DEFAULTS))
        if unknown:
            raise ValueError(f"unknown fault/setting name(s): {', '.join(unknown)}")
        out = copy.deepcopy(kw)
        rules = out.get("whatsapp_errors")
        if rules is not None:
            if isinstance(rules, dict):
                rules = [rules]
            if not isinstance(rules, list):
                raise ValueError("whatsapp_errors must be a list of {code, count|to} objects")
            for rule in rules:
                if not isinstance(rule, dict) or "code" not in rule:
                    raise ValueError("each whatsapp_errors rule needs a 'code'")
                extra = set(rule) - _ERROR_RULE_KEYS
                if extra:
                    raise ValueError(f"unknown whatsapp_errors keys: {sorted(extra)}")
                rule["code"] = int(rule["code"])
            out["whatsapp_errors"] = rules
        replies = out.get("callback_replies")
        if replies is not None:
            if not isinstance(replies, list) or not all(
                isinstance(r, dict) and set(r) == {"after", "text"} and isinstance(r["text"], str) for r in replies
            ):
                raise ValueError('callback_replies must be a list of {"after": n, "text": "..."} objects')
            out["callback_replies"] = [{"after": int(r["after"]), "text": r["text"]} for r in replies]
        for name in COUNTED:
            if name in out:
                value = out[name]
                out[name] = int(value) if value not in (None, False) else 0
        return out
