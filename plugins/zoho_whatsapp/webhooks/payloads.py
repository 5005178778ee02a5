"""Read and validate the bodies Zoho Books workflow-rule webhooks POST. Pure functions: no I/O.

Two shapes are accepted for each event:

* the integration guide's flat custom payload (a JSON body the rule builds from placeholders)::

    {"invoice_id": "INV-000142", "customer_name": "Priya Textiles", "mobile": "9820012345",
     "total": 48500.00, "balance": 48500.00, "due_date": "2026-07-07", "status": "sent",
     "currency_code": "INR"}

  (there ``invoice_id`` holds the invoice *number*; Zoho's own ids are long digit strings, so a
  value that is not all digits is read as the number), and for payments
  ``{"payment_id": ..., "amount": ..., "invoice_id": ..., "customer_name": ..., "mobile": ...}``;
* Zoho's "Default Payload": the module's fields as JSON, nested under ``invoice`` (Invoices) or
  ``payment`` / ``customerpayment`` (Customer Payments).

Anything else is a :class:`PayloadError` carrying the HTTP status to answer (400 unreadable,
422 readable but wrong) and the fields at fault. What is accepted is what the ledger can store and a
WhatsApp template can carry: every field fits its column in :mod:`zoho_whatsapp.ledger.schema`
(the limits below are read from there), Zoho's ids are digits (they end up in Zoho API paths), and
no text holds control, invisible formatting or bidi-override characters or lone surrogates
(Unicode categories Cc, Cf, Cs, Co, Zl, Zp: RLO U+202E, ZWSP U+200B, BOM U+FEFF, tag characters
U+E0000..). A duplicated JSON key is refused too: two readers could take different copies.

>>> event = parse_event("invoice_created", b'{"invoice_id": "INV-000142", "customer_name": "Priya Textiles",'
...                     b' "total": 48500, "due_date": "2026-07-07"}')
>>> event.invoice_number, event.invoice_id, event.event_key
('INV-000142', None, 'invoice_created:-:number:INV-000142')
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from zoho_whatsapp.ledger.schema import messages, webhook_events
from zoho_whatsapp.rules.alerts import INVOICE_CREATED, PAYMENT_RECEIVED, UNANNOUNCED_STATUSES
from zoho_whatsapp.rules.money import parse_amount
from zoho_whatsapp.webhooks.common import BodyError, strict_json

__all__ = [
    "EVENT_PATHS",
    "INVOICE_CREATED",
    "PAYMENT_RECEIVED",
    "UNANNOUNCED_STATUSES",
    "AlertEvent",
    "PayloadError",
    "parse_event",
]

# URL segment under /zoho-books/webhooks/ -> the event it receives
EVENT_PATHS = {"invoices": INVOICE_CREATED, "payments": PAYMENT_RECEIVED}

# Default Payload wrappers: which key holds the record for each event.
_WRAPPERS = {INVOICE_CREATED: ("invoice",), PAYMENT_RECEIVED: ("payment", "customerpayment", "customer_payment")}
# Modules a misrouted workflow rule may send; named in the 422 so the user sees the rule's mistake.
_OTHER_MODULES = frozenset(
    {
        "estimate", "salesorder", "sales_order", "creditnote", "credit_note", "bill", "purchaseorder",
        "purchase_order", "contact", "customer", "vendor", "expense", "item", "project", "retainerinvoice",
        "retainer_invoice", "recurring_invoice", "recurringinvoice", "vendorpayment", "vendor_payment",
        "journal", "deliverychallan", "delivery_challan", "invoice", "payment", "customerpayment",
        "customer_payment",
    }
)
# Zoho record ids are long digit strings (15-19 digits); invoice numbers are shorter or carry a prefix.
_ZOHO_ID = re.compile(r"[0-9]{12,64}")
_DIGITS = re.compile(r"[0-9]{1,64}")
_ISO_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}(?![0-9])")
_CURRENCY = re.compile(r"[A-Za-z]{3}")
_STATUS = re.compile(r"[A-Za-z_]{1,32}")
# Control, format (RLO, ZWSP, BOM, tags), surrogate, private-use, line/paragraph separator characters.
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Zl", "Zp"})
# Zero-width (non-)joiner shape Indic scripts and emoji: a business name may need them, an identifier never.
_NAME_JOINERS = frozenset({"\u200c", "\u200d"})


def _width(*columns: Any) -> int:
    return min(int(column.type.length) for column in columns)


MAX_ORGANIZATION_CHARS = _width(messages.c.organization_id, webhook_events.c.organization_id)  # 32
MAX_ID_CHARS = _width(messages.c.invoice_id, messages.c.invoice_number, messages.c.customer_id)  # 64
MAX_NAME_CHARS = _width(messages.c.customer_name)  # 255
MAX_PHONE_CHARS = 40  # what a person types, with separators; the send uses E.164 (column recipient)
# Zoho record timestamps that tell when the record last changed (the newest one is used).
_CHANGE_TIMES = ("last_modified_time", "updated_time", "created_time")


class PayloadError(ValueError):
    """A webhook body the endpoint refuses; ``status`` is the HTTP answer, ``fields`` what is wrong."""

    def __init__(self, status: int, message: str, *, fields: Iterable[str] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.fields = tuple(fields)

    def as_dict(self) -> dict[str, Any]:
        answer: dict[str, Any] = {"error": str(self)}
        if self.fields:
            answer["fields"] = list(self.fields)
        return answer


@dataclass(frozen=True)
class AppliedInvoice:
    """One invoice a payment was applied to, as the payload tells it."""

    invoice_id: str | None
    invoice_number: str | None
    amount_applied: str | None  # Decimal as text


@dataclass(frozen=True)
class AlertEvent:
    """What one workflow webhook says happened, validated and normalised.

    Amounts are kept as decimal strings so the event survives a JSON round trip exactly.
    """

    kind: str
    payload_format: str  # "flat" or "default"
    organization_id: str | None = None
    invoice_id: str | None = None  # Zoho's numeric id, when the payload has it
    invoice_number: str | None = None
    payment_id: str | None = None
    customer_id: str | None = None
    customer_name: str | None = None
    phones: tuple[str, ...] = ()  # numbers the payload carries, most specific first
    currency_code: str | None = None
    total: str | None = None
    balance: str | None = None
    amount: str | None = None
    due_date: str | None = None  # ISO date
    date: str | None = None
    status: str | None = None
    applied: tuple[AppliedInvoice, ...] = field(default_factory=tuple)
    # When the record last changed, as the body claims (ISO 8601, UTC). Used only to refuse stale
    # deliveries (a claim can make an event look older, never give it any power).
    changed_at: str | None = None

    @property
    def reference(self) -> str:
        """The record the event is about: the payment, else the invoice id, else its number."""
        if self.kind == PAYMENT_RECEIVED:
            return f"payment:{self.payment_id}"
        return self.invoice_id or f"number:{self.invoice_number}"

    @property
    def event_key(self) -> str:
        """Same record, same event: Zoho's retries and repeated deliveries share this key.

        A draft or void invoice gets a key of its own, so the delivery Zoho makes when the draft
        is later issued is a new event (and is announced) rather than a duplicate of the draft's.
        """
        key = f"{self.kind}:{self.organization_id or '-'}:{self.reference.removeprefix('payment:')}"
        status = (self.status or "").lower()
        return f"{key}:{status}" if self.kind == INVOICE_CREATED and status in UNANNOUNCED_STATUSES else key

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> AlertEvent:
        data = json.loads(text)
        data["phones"] = tuple(data.get("phones") or ())
        data["applied"] = tuple(AppliedInvoice(**a) for a in data.get("applied") or ())
        return cls(**data)


def parse_event(kind: str, body: bytes) -> AlertEvent:
    """Validate one webhook body for ``kind`` (``invoice_created`` or ``payment_received``).

    Raises :class:`PayloadError` (400 for a body that is not JSON, 422 for JSON that is not a
    usable event) naming the fields at fault; never any other exception for any input.
    """
    if kind not in _WRAPPERS:
        raise PayloadError(404, f"unknown event {kind!r}")
    document = _decode(body)
    if not isinstance(document, dict):
        raise PayloadError(422, f"expected a JSON object, got {_type_name(document)}")
    record, payload_format = _unwrap(kind, document)
    if kind == INVOICE_CREATED:
        return _invoice_event(record, payload_format, document)
    return _payment_event(record, payload_format, document)


# -- decoding ---------------------------------------------------------------------------------------


def _decode(body: bytes) -> Any:
    # The endpoints' shared JSON rules; a body nested too deep is readable, but wrong: 422 here.
    try:
        return strict_json(body, too_deep_status=422,
                           empty="empty body: send the record as a JSON object (content type application/json)")
    except BodyError as exc:
        raise PayloadError(exc.status, str(exc)) from None


def _type_name(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )


def _unwrap(kind: str, document: dict[str, Any]) -> tuple[dict[str, Any], str]:
    for key in _WRAPPERS[kind]:
        if key in document:
            record = document[key]
            if not isinstance(record, dict):
                raise PayloadError(422, f"{key!r} must be an object (Zoho's Default Payload), got {_type_name(record)}",
                                   fields=[key])
            return record, "default"
    others = [k for k, v in document.items() if isinstance(k, str) and k.lower() in _OTHER_MODULES and isinstance(v, dict)]
    if others:
        wanted = "invoices" if kind == INVOICE_CREATED else "customer payments"
        raise PayloadError(
            422,
            f"unknown event: this URL receives {wanted}, but the body holds {others[0]!r}; "
            "point the workflow rule for that module at its own URL",
            fields=others[:1],
        )
    return document, "flat"


# -- fields -----------------------------------------------------------------------------------------


class _Fields:
    """Collects every problem of one body, so the answer lists them all at once."""

    def __init__(self, record: Mapping[str, Any], prefix: str) -> None:
        self.record = record
        self.prefix = prefix
        self.missing: list[str] = []
        self.wrong: list[tuple[str, str]] = []

    def name(self, key: str) -> str:
        return f"{self.prefix}{key}"

    def present(self, key: str) -> bool:
        value = self.record.get(key)
        return value is not None and not (isinstance(value, str) and not value.strip())

    def text(self, key: str, *, required: bool = False, max_chars: int = MAX_NAME_CHARS,
             joiners: bool = False) -> str | None:
        if not self.present(key):
            if required:
                self.missing.append(self.name(key))
            return None
        value = self.record[key]
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            self.wrong.append((self.name(key), f"must be a string, got {_type_name(value)}"))
            return None
        text = str(value).strip()
        if len(text) > max_chars:
            self.wrong.append((self.name(key), f"is longer than {max_chars} characters"))
            return None
        bad = _unsafe(text, joiners=joiners)
        if bad:
            self.wrong.append((self.name(key), f"contains a control or invisible formatting character ({bad})"))
            return None
        return text

    def identifier(self, key: str, *, required: bool = False, max_chars: int = MAX_ID_CHARS) -> str | None:
        return self.text(key, required=required, max_chars=max_chars)

    def digits(self, key: str, *, required: bool = False, max_chars: int = MAX_ID_CHARS) -> str | None:
        """A Zoho id: digits only, as Zoho issues them (they end up in Zoho API paths)."""
        text = self.text(key, required=required, max_chars=max_chars)
        if text is not None and not _DIGITS.fullmatch(text):
            self.wrong.append((self.name(key), "must be Zoho's numeric id (digits only)"))
            return None
        return text

    def amount(self, key: str, *, required: bool = False, positive: bool = False) -> str | None:
        if not self.present(key):
            if required:
                self.missing.append(self.name(key))
            return None
        try:
            value = parse_amount(self.record[key], self.name(key))
        except ValueError as exc:
            self.wrong.append((self.name(key), str(exc).split(": ", 1)[-1][:120]))
            return None
        if not value.is_finite() or abs(value) >= Decimal("1e15"):
            self.wrong.append((self.name(key), "is not a plausible amount"))
            return None
        if value < 0 or (positive and value == 0):
            self.wrong.append((self.name(key), "must be more than 0" if positive else "must not be negative"))
            return None
        return str(value)

    def day(self, key: str, *, required: bool = False) -> str | None:
        text = self.text(key, required=required, max_chars=40)
        if text is None:
            return None
        try:
            if not _ISO_DAY.match(text):  # date.fromisoformat would also take 20260707
                raise ValueError(text)
            return date.fromisoformat(text[:10]).isoformat()
        except ValueError:
            self.wrong.append((self.name(key), f"must be a date as yyyy-mm-dd, got {text[:40]!r}"))
            return None

    def currency(self, key: str) -> str | None:
        text = self.text(key, max_chars=8)
        if text is not None and not _CURRENCY.fullmatch(text):
            self.wrong.append((self.name(key), f"must be a 3-letter currency code, got {text!r}"))
            return None
        return text.upper() if text else None

    def status(self, key: str) -> str | None:
        text = self.text(key, max_chars=32)
        if text is not None and not _STATUS.fullmatch(text):
            self.wrong.append((self.name(key), f"must be a Zoho status such as 'sent', got {text!r}"))
            return None
        return text

    def changed_at(self) -> str | None:
        """The newest of the record's change timestamps that carries a UTC offset, in UTC.

        A value that is no timestamp, or one without an offset, is left out: the freshness check
        it feeds is only ever a reason to refuse, and event keys already stop replays.
        """
        newest: datetime | None = None
        for key in _CHANGE_TIMES:
            text = self.text(key, max_chars=40)
            try:
                moment = datetime.fromisoformat(text) if text else None
            except ValueError:
                moment = None
            if moment is not None and moment.tzinfo is not None:
                moment = moment.astimezone(UTC)
                newest = moment if newest is None or moment > newest else newest
        return newest.isoformat() if newest else None

    def check(self) -> None:
        if self.missing or self.wrong:
            parts = []
            if self.missing:
                parts.append("missing " + ", ".join(self.missing))
            parts.extend(f"{name} {why}" for name, why in self.wrong)
            raise PayloadError(422, "; ".join(parts), fields=self.missing + [n for n, _ in self.wrong])


def _phones(record: Mapping[str, Any], fields: _Fields) -> tuple[str, ...]:
    """Numbers in the payload, most specific first; bad optional extras are ignored, not fatal."""
    found: list[str | None] = [fields.text("mobile", max_chars=MAX_PHONE_CHARS),
                               fields.text("phone", max_chars=MAX_PHONE_CHARS)]
    persons = record.get("contact_persons_associated") or record.get("contact_persons_details") or []
    if isinstance(persons, list):
        for person in persons[:20]:
            if isinstance(person, dict):
                found.extend(_loose_text(person.get(k)) for k in ("mobile", "phone"))
    billing = record.get("billing_address")
    if isinstance(billing, dict):
        found.append(_loose_text(billing.get("phone")))
    unique: list[str] = []
    for value in found:
        if value and value not in unique:
            unique.append(value)
    return tuple(unique)


def _loose_text(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    text = str(value).strip()
    return text if text and len(text) <= MAX_PHONE_CHARS and not _unsafe(text) else None


def _unsafe(text: str, *, joiners: bool = False) -> str | None:
    """The first character no stored or sent text may hold, as ``U+XXXX``; None when there is none."""
    for char in text:
        if unicodedata.category(char) in _UNSAFE_CATEGORIES and not (joiners and char in _NAME_JOINERS):
            return f"U+{ord(char):04X}"
    return None


def _organization(record: Mapping[str, Any], document: Mapping[str, Any], fields: _Fields) -> str | None:
    if record is not document and fields.present("organization_id"):
        return fields.digits("organization_id", max_chars=MAX_ORGANIZATION_CHARS)
    outer = _Fields(document, "")
    value = outer.digits("organization_id", max_chars=MAX_ORGANIZATION_CHARS)
    fields.wrong.extend(outer.wrong)
    return value


def _invoice_event(record: dict[str, Any], payload_format: str, document: dict[str, Any]) -> AlertEvent:
    fields = _Fields(record, "invoice." if payload_format == "default" else "")
    raw_id = fields.identifier("invoice_id")
    number = fields.identifier("invoice_number")
    invoice_id = raw_id
    if raw_id is not None and not _ZOHO_ID.fullmatch(raw_id):
        # The guide's flat payload puts the invoice number in invoice_id.
        invoice_id, number = None, number or raw_id
    if raw_id is None and number is None and fields.name("invoice_id") not in {n for n, _ in fields.wrong}:
        fields.missing.append(f"{fields.name('invoice_id')} (or {fields.name('invoice_number')})")
    event = AlertEvent(
        kind=INVOICE_CREATED,
        payload_format=payload_format,
        organization_id=_organization(record, document, fields),
        invoice_id=invoice_id,
        invoice_number=number,
        customer_id=fields.digits("customer_id"),
        customer_name=fields.text("customer_name", required=True, joiners=True),
        phones=_phones(record, fields),
        currency_code=fields.currency("currency_code"),
        total=fields.amount("total", required=True),
        balance=fields.amount("balance"),
        due_date=fields.day("due_date", required=True),
        date=fields.day("date"),
        status=fields.status("status"),
        changed_at=fields.changed_at(),
    )
    fields.check()
    return event


def _payment_event(record: dict[str, Any], payload_format: str, document: dict[str, Any]) -> AlertEvent:
    fields = _Fields(record, "payment." if payload_format == "default" else "")
    applied: list[AppliedInvoice] = []
    invoices = record.get("invoices")
    if invoices is not None and not isinstance(invoices, list):
        fields.wrong.append((fields.name("invoices"), f"must be an array, got {_type_name(invoices)}"))
    for index, item in enumerate(invoices if isinstance(invoices, list) else []):
        if index >= 50:
            fields.wrong.append((fields.name("invoices"), "lists more than 50 invoices"))
            break
        if not isinstance(item, dict):
            fields.wrong.append((f"{fields.name('invoices')}[{index}]", f"must be an object, got {_type_name(item)}"))
            continue
        sub = _Fields(item, f"{fields.name('invoices')}[{index}].")
        entry = AppliedInvoice(sub.digits("invoice_id"), sub.identifier("invoice_number"),
                               sub.amount("amount_applied"))
        fields.wrong.extend(sub.wrong)
        if entry.invoice_id or entry.invoice_number:
            applied.append(entry)
    if payload_format == "flat":  # the flat body names one invoice directly
        raw_id = fields.identifier("invoice_id")
        number = fields.identifier("invoice_number")
        if raw_id is not None and not _ZOHO_ID.fullmatch(raw_id):
            raw_id, number = None, number or raw_id
        if raw_id or number:
            applied.insert(0, AppliedInvoice(raw_id, number, None))
    event = AlertEvent(
        kind=PAYMENT_RECEIVED,
        payload_format=payload_format,
        organization_id=_organization(record, document, fields),
        payment_id=fields.digits("payment_id", required=True),
        customer_id=fields.digits("customer_id"),
        customer_name=fields.text("customer_name", joiners=True),
        phones=_phones(record, fields),
        currency_code=fields.currency("currency_code"),
        amount=fields.amount("amount", required=True, positive=True),
        date=fields.day("date"),
        applied=tuple(applied),
        changed_at=fields.changed_at(),
    )
    fields.check()
    return event
