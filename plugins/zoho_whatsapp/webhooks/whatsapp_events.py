"""Read the notifications Meta POSTs to ``/whatsapp/webhook``. Pure functions: no I/O.

A notification is ``{"object": "whatsapp_business_account", "entry": [{"changes": [{"field", "value"}]}]}``.
The parts the product uses:

* ``field: messages`` → ``value.statuses[]``: what became of a message we sent (``sent``,
  ``delivered``, ``read``, ``failed`` with ``errors[]``), keyed by its ``wamid`` and carrying the
  ``biz_opaque_callback_data`` the send set;
* ``field: messages`` → ``value.messages[]``: what a customer wrote to the business number;
* ``field: user_preferences`` → ``value.user_preferences[]``: a customer stopped or resumed
  *marketing* messages.

Everything else (other fields, message echoes, unknown statuses) is acknowledged and ignored. An
item that breaks the documented shape is left out and named in ``Notification.ignored``; only a
body that is not a WhatsApp Business Account notification at all is refused
(:class:`NotificationError`).

>>> note = parse_notification({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [
...     {"field": "messages", "value": {"statuses": [{"id": "wamid.A", "status": "read",
...      "timestamp": "1780000000", "recipient_id": "919820012345"}]}}]}]})
>>> note.events[0].event_key, note.events[0].recipient
('status:wamid.A:read', '+919820012345')
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "DELIVERY_STATUSES",
    "REPLY_MAX_CHARS",
    "Event",
    "InboundMessage",
    "Notification",
    "NotificationError",
    "PreferenceChange",
    "StatusUpdate",
    "event_from_json",
    "parse_notification",
]

DELIVERY_STATUSES = ("sent", "delivered", "read", "failed")
REPLY_MAX_CHARS = 500  # enough for "paid yesterday, UTR 1234..." ; a reply is kept for follow-up, not archived
MAX_ITEMS = 5000  # Meta batches up to 1000 changes per request; a margin, then refuse
_ID = re.compile(r"[A-Za-z0-9._=+/:\-]{1,128}")
_WA_ID = re.compile(r"[0-9]{6,15}")  # E.164 allows 15 digits after the +
_WORD = re.compile(r"[a-z_]{1,40}")
_EARLIEST, _LATEST = 946_684_800, 4_102_444_800  # 2000-01-01 .. 2100-01-01: anything else is not a time
_INT32 = 2**31 - 1


class NotificationError(ValueError):
    """The body is not a WhatsApp Business Account notification; ``status`` is the HTTP answer."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class StatusUpdate:
    """What Meta says became of one message we sent."""

    wamid: str
    status: str  # sent, delivered, read, failed
    at: datetime
    recipient: str | None  # "+" and the recipient's WhatsApp id (its number)
    callback_data: str | None  # biz_opaque_callback_data, as the send set it
    error_code: int | None = None
    error_title: str | None = None
    kind = "status"

    @property
    def event_key(self) -> str:
        # One event per message and status: Meta's retries of the same status are duplicates.
        return f"status:{self.wamid}:{self.status}"


@dataclass(frozen=True)
class InboundMessage:
    """A message a customer sent to the business number (the text only; media are named, not kept)."""

    message_id: str
    sender: str  # "+" and the sender's WhatsApp id
    at: datetime
    type: str
    text: str | None  # the text, a tapped button's label; truncated to REPLY_MAX_CHARS
    context_wamid: str | None = None  # the message of ours it answers, when the customer used "reply"
    kind = "message"

    @property
    def event_key(self) -> str:
        return f"message:{self.message_id}"


@dataclass(frozen=True)
class PreferenceChange:
    """A customer stopped or resumed a category of messages (Meta reports marketing only)."""

    recipient: str
    category: str  # marketing_messages
    value: str  # stop, resume
    at: datetime
    kind = "preference"

    @property
    def event_key(self) -> str:
        return f"preference:{self.recipient}:{self.category}:{self.value}:{int(self.at.timestamp())}"


Event = StatusUpdate | InboundMessage | PreferenceChange
_KINDS: dict[str, type[Any]] = {"status": StatusUpdate, "message": InboundMessage, "preference": PreferenceChange}


@dataclass
class Notification:
    events: list[Event] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)  # why items were left out (no personal data)


def event_to_json(event: Event) -> str:
    data = asdict(event)
    data["at"] = event.at.isoformat()
    return json.dumps(data, ensure_ascii=True, sort_keys=True)


def event_from_json(kind: str, text: str) -> Event:
    """The event stored by :func:`event_to_json` (re-applying stored events reads them back)."""
    data = json.loads(text)
    data["at"] = datetime.fromisoformat(data["at"])
    return _KINDS[kind](**data)


# -- parsing ----------------------------------------------------------------------------------------


def parse_notification(document: Any) -> Notification:
    """The events in one webhook body (already JSON-decoded)."""
    if not isinstance(document, dict):
        raise NotificationError("the body must be a JSON object")
    if document.get("object") != "whatsapp_business_account":
        raise NotificationError("not a WhatsApp Business Account notification: 'object' must be whatsapp_business_account")
    entries = document.get("entry")
    if not isinstance(entries, list):
        raise NotificationError("'entry' must be an array")
    note = Notification()
    items = 0
    for entry in entries:
        changes = entry.get("changes") if isinstance(entry, dict) else None
        if not isinstance(changes, list):
            note.ignored.append("an entry without a 'changes' array")
            continue
        for change in changes:
            if not isinstance(change, dict) or not isinstance(change.get("value"), dict):
                note.ignored.append("a change without a 'value' object")
                continue
            value, kind = change["value"], change.get("field")
            if kind == "messages":
                parts = [("statuses", _status), ("messages", _message)]
            elif kind == "user_preferences":
                parts = [("user_preferences", _preference)]
            else:
                note.ignored.append(f"field {str(kind)[:40]!r} is not used")
                continue
            for key, parse in parts:
                listed = value.get(key, [])
                if not isinstance(listed, list):
                    note.ignored.append(f"'{key}' is not an array")
                    continue
                for item in listed:
                    items += 1
                    if items > MAX_ITEMS:
                        raise NotificationError(f"more than {MAX_ITEMS} items in one notification", 413)
                    try:
                        note.events.append(parse(item))
                    except _Skip as why:
                        note.ignored.append(f"{key}: {why}")
    return note


class _Skip(ValueError):
    """One item that breaks the documented shape; the rest of the notification still counts."""


def _status(item: Any) -> StatusUpdate:
    if not isinstance(item, dict):
        raise _Skip("an item that is not an object")
    status = item.get("status")
    if status not in DELIVERY_STATUSES:
        raise _Skip(f"status {str(status)[:20]!r} is not one the ledger tracks")
    code, title = None, None
    errors = item.get("errors")
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        raw = errors[0].get("code")
        if isinstance(raw, int) and not isinstance(raw, bool) and 0 <= raw <= _INT32:
            code = raw
        title = _text(errors[0].get("title") or errors[0].get("message"), 255)
    opaque = item.get("biz_opaque_callback_data")
    return StatusUpdate(
        wamid=_identifier(item.get("id"), "id"),
        status=status,
        at=_timestamp(item.get("timestamp")),
        recipient=_number(item.get("recipient_id"), "recipient_id", required=False),
        callback_data=_text(opaque, 512) if isinstance(opaque, str) else None,
        error_code=code,
        error_title=title,
    )


def _message(item: Any) -> InboundMessage:
    if not isinstance(item, dict):
        raise _Skip("an item that is not an object")
    kind = item.get("type")
    if not isinstance(kind, str) or not _WORD.fullmatch(kind):
        raise _Skip("a message without a valid 'type'")
    text: Any = None
    if kind == "text" and isinstance(item.get("text"), dict):
        text = item["text"].get("body")
    elif kind == "button" and isinstance(item.get("button"), dict):
        text = item["button"].get("text") or item["button"].get("payload")
    elif kind == "interactive" and isinstance(item.get("interactive"), dict):
        reply = item["interactive"].get("button_reply") or item["interactive"].get("list_reply")
        text = reply.get("title") if isinstance(reply, dict) else None
    context = item.get("context")
    context_id = context.get("id") if isinstance(context, dict) else None
    return InboundMessage(
        message_id=_identifier(item.get("id"), "id"),
        sender=_number(item.get("from"), "from"),  # type: ignore[arg-type]
        at=_timestamp(item.get("timestamp")),
        type=kind,
        text=_text(text, REPLY_MAX_CHARS) if isinstance(text, str) else None,
        context_wamid=context_id if isinstance(context_id, str) and _ID.fullmatch(context_id) else None,
    )


def _preference(item: Any) -> PreferenceChange:
    if not isinstance(item, dict):
        raise _Skip("an item that is not an object")
    category, value = item.get("category"), item.get("value")
    if not isinstance(category, str) or not _WORD.fullmatch(category):
        raise _Skip("a preference without a valid 'category'")
    if value not in ("stop", "resume"):
        raise _Skip(f"preference value {str(value)[:20]!r} is neither stop nor resume")
    return PreferenceChange(
        recipient=_number(item.get("wa_id"), "wa_id"),  # type: ignore[arg-type]
        category=category,
        value=value,
        at=_timestamp(item.get("timestamp")),
    )


def _identifier(value: Any, name: str) -> str:
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise _Skip(f"'{name}' is missing or not a WhatsApp id")
    return value


def _number(value: Any, name: str, *, required: bool = True) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or not _WA_ID.fullmatch(value):
        raise _Skip(f"'{name}' is missing or not a WhatsApp id of digits")
    return "+" + value


def _timestamp(value: Any) -> datetime:
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 12:
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not _EARLIEST <= value <= _LATEST:
        raise _Skip("'timestamp' is missing or not a Unix time")
    return datetime.fromtimestamp(value, UTC)


def _text(value: Any, limit: int) -> str | None:
    """Text as the ledger can store and a person can read it, at most ``limit`` characters: no lone
    surrogates (unstorable), controls, or format characters that reorder or hide text (U+202E, U+200B)
    — except the zero-width (non-)joiners Indic scripts spell with."""
    if not isinstance(value, str):
        return None
    clean = "".join(
        ch for ch in value
        if ch in "\n\t\u200c\u200d" or unicodedata.category(ch) not in ("Cc", "Cf", "Cs", "Co")
    )
    return clean[:limit] or None
