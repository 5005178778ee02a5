"""WhatsApp Cloud API imitation: ``POST /{version}/{phone_number_id}/messages`` and
``GET /{version}/{phone_number_id}``, plus builders for signed status/inbound webhooks.

Recipient normalisation (how ``wa_id`` is derived from ``to``): spaces, hyphens, dots and
parentheses are dropped; a leading ``+`` means the digits already carry a country code; without
``+`` a 10-digit number gets the business number's country code (91) prepended, longer numbers
are taken as already carrying one; a result starting with 0 or outside 8..15 digits is rejected
with code 100.  So ``"+91 98200 12345"``, ``"919820012345"`` and ``"9820012345"`` all reach
``919820012345``, while ``"09820012345"`` and ``"0091 98200 12345"`` are refused.
"""

from __future__ import annotations

import base64
import bisect
import hashlib
import hmac
import json
import re
import secrets
import threading
import time
from datetime import UTC, datetime
from typing import Any

from .faults import Faults
from .seed import TEMPLATES
from .wire import HTML, JSON_META, Reply, Request, html_page

BUSINESS_CC = "91"
WABA_ID = "102290129340398"
DISPLAY_NUMBER = "+91 22 4000 1234"
PARAM_FORMAT_DETAILS = "Param text cannot have new-line/tab characters or more than 4 consecutive spaces"

# code -> (HTTP status, message) for injected errors (``whatsapp_errors``).
ERRORS: dict[int, tuple[int, str]] = {
    0: (401, "(#0) AuthException"),
    1: (500, "An unknown error occurred"),
    2: (503, "(#2) Service temporarily unavailable"),
    4: (400, "(#4) Application request limit reached"),
    10: (403, "(#10) Permission denied"),
    100: (400, "(#100) Invalid parameter"),
    190: (401, "Error validating access token: Session has expired."),
    200: (403, "(#200) Permission error"),
    368: (400, "(#368) Temporarily blocked for policies violations"),
    80007: (400, "(#80007) Rate limit issues"),
    130429: (400, "(#130429) Rate limit hit"),
    130472: (400, "(#130472) User's number is part of an experiment"),
    131000: (500, "(#131000) Something went wrong"),
    131005: (403, "(#131005) Access denied"),
    131008: (400, "(#131008) Required parameter is missing"),
    131009: (400, "(#131009) Parameter value is not valid"),
    131016: (503, "(#131016) Service unavailable"),
    131021: (400, "(#131021) Recipient cannot be sender"),
    131026: (400, "(#131026) Message Undeliverable"),
    131031: (400, "(#131031) Business Account locked"),
    131042: (400, "(#131042) Business eligibility payment issue"),
    131045: (400, "(#131045) Incorrect certificate"),
    131047: (400, "(#131047) Re-engagement message"),
    131049: (400, "(#131049) Meta chose not to deliver"),
    131051: (400, "(#131051) Unsupported message type"),
    131052: (400, "(#131052) Media download error"),
    131053: (400, "(#131053) Media upload error"),
    131056: (400, "(#131056) (Business Account, Consumer Account) pair rate limit hit"),
    132000: (400, "(#132000) Number of parameters does not match the expected number of params"),
    132001: (400, "(#132001) Template name does not exist in the translation"),
    132005: (400, "(#132005) Translated text too long"),
    132007: (400, "(#132007) Template Format Character Policy Violated"),
    132008: (400, "(#132008) Template Parameter Format Mismatch"),
    132012: (400, "(#132012) Template Parameter Format Mismatch"),
    132015: (400, "(#132015) Template is Paused"),
    132016: (400, "(#132016) Template is Disabled"),
    133010: (400, "(#133010) Account not registered"),
}


def fbtrace_id() -> str:
    return "A" + secrets.token_urlsafe(17)[:22]


def error_reply(status: int, code: int, message: str, details: str | None = None,
                type_: str = "OAuthException", subcode: int | None = None) -> Reply:
    err: dict[str, Any] = {"message": message, "type": type_, "code": code}
    if subcode is not None:
        err["error_subcode"] = subcode
    err["error_data"] = {"messaging_product": "whatsapp", "details": details or message}
    err["fbtrace_id"] = fbtrace_id()
    return Reply(status, {"error": err}, JSON_META, {"WWW-Authenticate": 'OAuth "Facebook Platform"'} if status == 401 else {})


def invalid_param(details: str, message: str = "(#100) Invalid parameter") -> Reply:
    return error_reply(400, 100, message, details)


def normalise_recipient(to: str) -> str | None:
    """``to`` as Meta reads it -> ``wa_id`` digits, or ``None`` when it is not a phone number."""
    text = re.sub(r"[\s\-().]", "", str(to))
    plus = text.startswith("+")
    digits = text[1:] if plus else text
    if not digits.isdigit():
        return None
    if not plus and len(digits) == 10:
        digits = BUSINESS_CC + digits
    if digits.startswith("0") or not 8 <= len(digits) <= 15:
        return None
    return digits


def render(template: dict[str, Any], params: dict[str, str]) -> str:
    text = template["body"]
    for name, value in params.items():
        text = text.replace("{{" + name + "}}", value)
    return text


def new_wamid(wa_id: str) -> str:
    raw = (b"\x1c\x18" + bytes([len(wa_id)]) + wa_id.encode() + b"\x15\x02\x00\x11\x18\x12"
           + secrets.token_hex(9).upper().encode() + b"\x00")
    return "wamid." + base64.b64encode(raw).decode()


class WhatsApp:
    def __init__(self, faults: Faults, token: str, phone_number_id: str, webhook_secret: str,
                 wake: threading.Event) -> None:
        self.faults = faults
        self.token = token
        self.phone_number_id = phone_number_id
        self.webhook_secret = webhook_secret
        self.wake = wake
        self.templates = TEMPLATES
        self.lock = threading.Lock()
        self.on_accept: Any = None  # called with each accepted message's record (the webhook callbacks)
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.messages: list[dict[str, Any]] = []
            self.window: list[float] = []  # arrival times (epoch seconds) of accepted messages, in order
            self._five_toggle = 0

    def sent(self) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(m, parameters=dict(m["parameters"])) for m in self.messages]

    # ------------------------------------------------------------------ HTTP
    def handle(self, req: Request) -> Reply:
        parts = req.path.strip("/").split("/")
        if not re.fullmatch(r"v\d+\.\d+", parts[0]) or len(parts) > 3 or len(parts) < 2:
            return self._unknown(req.path)
        object_id = parts[1]
        if len(parts) == 3 and parts[2] != "messages":
            return self._unknown(req.path)
        auth = self._auth(req)
        if auth is not None:
            return auth
        verb = "post" if req.method == "POST" else req.method.lower()
        if object_id != self.phone_number_id or (len(parts) == 2) != (req.method == "GET"):
            return error_reply(
                400, 100,
                f"Unsupported {verb} request. Object with ID '{object_id}' does not exist, cannot be loaded due "
                "to missing permissions, or does not support this operation. Please read the Graph API "
                "documentation at https://developers.facebook.com/docs/graph-api",
                type_="GraphMethodException", subcode=33,
            )
        if len(parts) == 2:
            return self._phone_info(req)
        return self._send(req)

    def _unknown(self, path: str) -> Reply:
        return error_reply(404, 2500, f"Unknown path components: {path}")

    def _auth(self, req: Request) -> Reply | None:
        header = req.header("authorization")
        scheme, _, value = header.strip().partition(" ")
        token = value.strip() if scheme.lower() == "bearer" else ""
        if not header:
            token = req.query.get("access_token", "")
        if token and hmac.compare_digest(token, self.token):
            return None
        if not token:
            return error_reply(401, 190, "Invalid OAuth access token - Cannot parse access token")
        stamp = datetime.now(UTC).strftime("%A, %d-%b-%y %H:%M:%S PDT")
        return error_reply(
            401, 190,
            f"Error validating access token: Session has expired on {stamp}. The current time is {stamp}.",
            subcode=463,
        )

    def _phone_info(self, req: Request) -> Reply:
        info = {
            "verified_name": "Sharma Traders",
            "code_verification_status": "VERIFIED",
            "display_phone_number": DISPLAY_NUMBER,
            "quality_rating": "GREEN",
            "platform_type": "CLOUD_API",
            "throughput": {"level": "STANDARD"},
            "messaging_limit_tier": "TIER_1K",
            "name_status": "APPROVED",
            "id": self.phone_number_id,
        }
        fields = [f.strip() for f in req.query.get("fields", "").split(",") if f.strip()]
        if fields:
            info = {k: v for k, v in info.items() if k in fields or k == "id"}
        return Reply(200, info, JSON_META)

    # ------------------------------------------------------------------ send
    def _send(self, req: Request) -> Reply:
        # Meta counts a message when it arrives: the kernel's receive time of the request (server.py), not
        # when this process got round to it, nor after the latency below (its work and the way back).
        # Counting later would count the sandbox's own delays on a busy CPU as the sender's bursts.
        arrived = req.received
        arrived_at = datetime.fromtimestamp(arrived, UTC)
        latency = float(self.faults.get("whatsapp_latency_ms") or 0) / 1000.0
        if latency > 0:
            self.wake.wait(latency)
        try:
            body = req.json()
        except ValueError:
            return invalid_param("Request body must be a JSON object")
        if not isinstance(body, dict):
            return invalid_param("Request body must be a JSON object")
        parsed = self.validate(body)
        if isinstance(parsed, Reply):
            return parsed
        rule = self.faults.take_whatsapp_error(parsed["wa_id"], normalise_recipient)
        if rule is not None:
            return self._injected(rule)
        cap = int(self.faults.get("whatsapp_rate_cap"))
        with self.lock:
            if self._over_cap(arrived, cap, keep=latency + 2.0):
                status = int(self.faults.get("whatsapp_rate_limit_status") or 400)
                return error_reply(status, 130429, "(#130429) Rate limit hit",
                                   "Cloud API message throughput has been reached.")
            five = self.faults.take("whatsapp_5xx_no_envelope")
            if five:
                self._five_toggle += 1
                status = 502 if self._five_toggle % 2 else 503
                gateway = Reply(status, html_page(status, "Bad Gateway" if status == 502 else
                                                  "Service Unavailable"), HTML)
                if not self.faults.get("whatsapp_5xx_accepted"):
                    return gateway
            record = self._record(parsed, arrived, arrived_at)
        if self.on_accept is not None:  # accepted, whatever the answer says: Meta reports on it
            self.on_accept(record)
        if five:
            return gateway
        if self.faults.take("whatsapp_drop_after_accept"):
            return Reply(0, drop=True)
        delay = self.faults.whatsapp_should_hang()
        reply = Reply(
            200,
            {
                "messaging_product": "whatsapp",
                "contacts": [{"input": parsed["to"], "wa_id": parsed["wa_id"]}],
                "messages": [{"id": record["wamid"], "message_status": "accepted"}],
            },
            JSON_META,
            delay=delay,
        )
        return reply

    def _over_cap(self, arrived: float, cap: int, *, keep: float) -> bool:
        """Whether accepting a message that arrived at ``arrived`` puts more than ``cap`` accepted messages
        into some sliding second (caller holds ``self.lock``). Requests finish in another order than they
        arrived (each waits the latency on its own thread): every second that would hold this one counts,
        those ending at a later arrival already accepted too. Arrivals older than ``keep`` are forgotten."""
        window = self.window
        del window[:bisect.bisect_right(window, arrived - keep)]
        ends = [arrived, *window[bisect.bisect_right(window, arrived):bisect.bisect_left(window, arrived + 1.0)]]
        return any(bisect.bisect_right(window, end) - bisect.bisect_right(window, end - 1.0) + 1 > cap
                   for end in ends)

    def _record(self, parsed: dict[str, Any], arrived: float, arrived_at: datetime) -> dict[str, Any]:
        """Store an accepted message (caller holds ``self.lock``)."""
        bisect.insort(self.window, arrived)
        record = {
            "wamid": new_wamid(parsed["wa_id"]),
            "to": parsed["to"],
            "wa_id": parsed["wa_id"],
            "type": parsed["type"],
            "template": parsed.get("template"),
            "language": parsed.get("language"),
            "parameters": parsed.get("parameters", {}),
            "text": parsed["text"],
            "biz_opaque_callback_data": parsed.get("biz_opaque_callback_data"),
            "received_at": arrived_at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "phone_number_id": self.phone_number_id,
        }
        self.messages.append(record)
        return record

    def _injected(self, rule: dict[str, Any]) -> Reply:
        code = int(rule["code"])
        status, message = ERRORS.get(code, (400, f"(#{code}) Error"))
        status = int(rule.get("status") or status)
        message = rule.get("message") or message
        type_ = rule.get("type") or "OAuthException"
        return error_reply(status, code, message, rule.get("details") or message, type_=type_)

    def validate(self, body: dict[str, Any]) -> dict[str, Any] | Reply:
        """Check a send body like Meta does; returns the parsed message or an error ``Reply``."""
        if "messaging_product" not in body:
            return invalid_param("The parameter messaging_product is required.",
                                 "(#100) The parameter messaging_product is required.")
        if body["messaging_product"] != "whatsapp":
            return invalid_param(f"Param messaging_product must be one of {{WHATSAPP}} - got \"{body['messaging_product']}\".")
        if body.get("recipient_type", "individual") != "individual":
            return invalid_param("Param recipient_type must be individual for this phone number.")
        to = body.get("to")
        if to is None or to == "":
            return invalid_param("The parameter to is required.", "(#100) The parameter to is required.")
        wa_id = normalise_recipient(to) if isinstance(to, str) else None
        if wa_id is None:
            return invalid_param(f"Invalid parameter 'to': {to!r} is not a valid phone number.")
        mtype = body.get("type", "text")
        parsed: dict[str, Any] = {"to": to, "wa_id": wa_id, "type": mtype}
        if isinstance(body.get("biz_opaque_callback_data"), str):
            if len(body["biz_opaque_callback_data"].encode()) > 512:
                return invalid_param("biz_opaque_callback_data must be at most 512 bytes.")
            parsed["biz_opaque_callback_data"] = body["biz_opaque_callback_data"]
        if mtype == "text":
            text = body.get("text")
            if not isinstance(text, dict) or not isinstance(text.get("body"), str) or not text["body"].strip():
                return invalid_param("The parameter text['body'] is required.",
                                     "(#100) The parameter text['body'] is required.")
            if len(text["body"]) > 4096:
                return invalid_param("Text body must be at most 4096 characters.")
            parsed["text"] = text["body"]
            return parsed
        if mtype != "template":
            return invalid_param(f"Param type must be one of {{TEXT, TEMPLATE}} in this sandbox - got \"{mtype}\".")
        return self._validate_template(body.get("template"), parsed)

    def _validate_template(self, tpl: Any, parsed: dict[str, Any]) -> dict[str, Any] | Reply:
        if not isinstance(tpl, dict) or not tpl.get("name"):
            return invalid_param("The parameter template['name'] is required.",
                                 "(#100) The parameter template['name'] is required.")
        lang = tpl.get("language")
        if not isinstance(lang, dict) or not lang.get("code"):
            return invalid_param("The parameter template['language']['code'] is required.",
                                 "(#100) The parameter template['language']['code'] is required.")
        if lang.get("policy", "deterministic") != "deterministic":
            return invalid_param("Param template['language']['policy'] must be one of {DETERMINISTIC}.")
        name, code = tpl["name"], lang["code"]
        template = self.templates.get(name)
        if template is None or template["language"] != code:
            return error_reply(400, 132001, ERRORS[132001][1], f"template name ({name}) does not exist in {code}")
        components = tpl.get("components", [])
        if not isinstance(components, list):
            return invalid_param("Param template['components'] must be an array.")
        expected = template["parameters"]
        given: list[Any] = []
        for comp in components:
            if not isinstance(comp, dict):
                return invalid_param("Each template component must be an object.")
            ctype = str(comp.get("type", "")).lower()
            params = comp.get("parameters", [])
            if ctype == "body":
                if not isinstance(params, list):
                    return invalid_param("Param template['components'][body]['parameters'] must be an array.")
                given.extend(params)
            elif ctype in ("header", "button"):
                return error_reply(400, 132000, ERRORS[132000][1],
                                   f"{ctype}: number of localizable_params ({len(params) if isinstance(params, list) else 0}) "
                                   "does not match the expected number of params (0)")
            else:
                return invalid_param(f"Param template['components'][type] must be one of {{HEADER, BODY, BUTTON}} - got \"{ctype}\".")
        if len(given) != len(expected):
            return error_reply(400, 132000, ERRORS[132000][1],
                               f"body: number of localizable_params ({len(given)}) does not match the expected "
                               f"number of params ({len(expected)})")
        values: dict[str, str] = {}
        for p in given:
            if not isinstance(p, dict) or p.get("type") != "text":
                return invalid_param("Parameter type must be 'text' for this template.")
            pname = p.get("parameter_name")
            if not isinstance(pname, str) or not pname:
                return invalid_param("Parameter name is missing or empty; this template uses named parameters.")
            if pname not in expected or pname in values:
                return error_reply(400, 132000, ERRORS[132000][1],
                                   f"body: parameter name '{pname}' does not match the expected params "
                                   f"({', '.join(expected)})")
            text = p.get("text")
            if not isinstance(text, str) or not text.strip():
                return invalid_param(f"Parameter '{pname}' text cannot be empty.")
            if "\n" in text or "\t" in text or "     " in text:
                return invalid_param(PARAM_FORMAT_DETAILS)
            values[pname] = text
        rendered = render(template, values)
        if len(rendered) > 1024:
            return error_reply(400, 132005, ERRORS[132005][1], "Rendered body exceeds 1024 characters.")
        parsed.update(template=name, language=code, parameters=values, text=rendered)
        return parsed

    # ------------------------------------------------------------------ webhooks
    def _sign(self, payload: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
        raw = json.dumps(payload, separators=(",", ":")).encode()
        sig = hmac.new(self.webhook_secret.encode(), raw, hashlib.sha256).hexdigest()
        return raw, {"Content-Type": "application/json", "X-Hub-Signature-256": "sha256=" + sig}

    def _envelope(self, value: dict[str, Any]) -> dict[str, Any]:
        value = {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": re.sub(r"\D", "", DISPLAY_NUMBER),
                         "phone_number_id": self.phone_number_id},
            **value,
        }
        return {"object": "whatsapp_business_account",
                "entry": [{"id": WABA_ID, "changes": [{"value": value, "field": "messages"}]}]}

    def status_webhook(self, wamid: str, status: str = "delivered",
                       error_code: int | None = None, timestamp: int | None = None) -> tuple[bytes, dict[str, str]]:
        """A signed status webhook (raw body, headers) as Meta would POST it for ``wamid``."""
        with self.lock:
            msg = next((m for m in self.messages if m["wamid"] == wamid), None)
        return self.status_webhook_for(msg or {"wamid": wamid}, status, error_code=error_code, timestamp=timestamp)

    def status_webhook_for(self, msg: dict[str, Any], status: str, *, error_code: int | None = None,
                           timestamp: int | None = None) -> tuple[bytes, dict[str, str]]:
        """The signed status webhook for an accepted message's record (``timestamp``: when it happened)."""
        item: dict[str, Any] = {
            "id": msg["wamid"],
            "status": status,
            "timestamp": str(int(time.time()) if timestamp is None else int(timestamp)),
            "recipient_id": msg.get("wa_id") or "",
        }
        if msg.get("biz_opaque_callback_data"):
            item["biz_opaque_callback_data"] = msg["biz_opaque_callback_data"]
        if status == "failed":
            code = error_code or 131026
            title = ERRORS.get(code, (400, "Error"))[1].split(") ", 1)[-1]
            item["errors"] = [{"code": code, "title": title, "message": title,
                               "error_data": {"details": title}}]
        return self._sign(self._envelope({"statuses": [item]}))

    def inbound_webhook(self, from_wa_id: str, text: str, name: str = "") -> tuple[bytes, dict[str, str]]:
        """A signed inbound text message webhook (e.g. a customer replying STOP)."""
        value = {
            "contacts": [{"profile": {"name": name or from_wa_id}, "wa_id": from_wa_id}],
            "messages": [{"from": from_wa_id, "id": new_wamid(from_wa_id), "timestamp": str(int(time.time())),
                          "type": "text", "text": {"body": text}}],
        }
        return self._sign(self._envelope(value))
