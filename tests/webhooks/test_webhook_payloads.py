"""Reading the two payload shapes Zoho workflow webhooks send (pure: no I/O)."""

from __future__ import annotations

import json

import pytest

from zoho_whatsapp.webhooks.payloads import AlertEvent, PayloadError, parse_event

GUIDE_EXAMPLE = {  # the integration guide's "Zoho Books webhook payload — invoice created", verbatim
    "invoice_id": "INV-000142",
    "customer_name": "Priya Textiles",
    "mobile": "9820012345",
    "total": 48500.00,
    "balance": 48500.00,
    "due_date": "2026-07-07",
    "status": "sent",
    "currency_code": "INR",
}


def parse(kind: str, body: object) -> AlertEvent:
    return parse_event(kind, json.dumps(body).encode())


def test_the_guides_flat_payload() -> None:
    event = parse("invoice_created", GUIDE_EXAMPLE)
    assert event.payload_format == "flat"
    assert (event.invoice_id, event.invoice_number) == (None, "INV-000142")  # there invoice_id holds the number
    assert (event.customer_name, event.phones, event.total, event.due_date, event.currency_code) == (
        "Priya Textiles", ("9820012345",), "48500.0", "2026-07-07", "INR")
    assert event.event_key == "invoice_created:-:number:INV-000142"
    assert AlertEvent.from_json(event.to_json()) == event


def test_zoho_ids_and_numbers_are_told_apart() -> None:
    assert parse("invoice_created", {**GUIDE_EXAMPLE, "invoice_id": "982000000501095"}).invoice_id == "982000000501095"
    numeric_number = parse("invoice_created", {**GUIDE_EXAMPLE, "invoice_id": "000142"})
    assert (numeric_number.invoice_id, numeric_number.invoice_number) == (None, "000142")
    both = parse("invoice_created", {**GUIDE_EXAMPLE, "invoice_id": 982000000501095, "invoice_number": "INV-9"})
    assert (both.invoice_id, both.invoice_number) == ("982000000501095", "INV-9")


def test_default_payload_with_contact_persons_and_organization() -> None:
    record = {
        "invoice_id": "982000000501095", "invoice_number": "INV-000365", "customer_id": "982000000010714",
        "customer_name": "Kapoor Traders LLP", "total": "44000.00", "due_date": "2026-12-24", "status": "sent",
        "contact_persons_associated": [{"mobile": "09356293837", "phone": ""}, "junk"],
        "billing_address": {"phone": "+91 22 4000 1234"}, "line_items": [{"name": "x"}],
    }
    event = parse("invoice_created", {"invoice": record, "organization_id": "60012345"})
    assert event.payload_format == "default"
    assert event.phones == ("09356293837", "+91 22 4000 1234")
    assert event.event_key == "invoice_created:60012345:982000000501095"
    assert event.total == "44000.00" and event.customer_id == "982000000010714"


def test_draft_and_void_invoices_have_keys_of_their_own() -> None:
    draft = parse("invoice_created", {**GUIDE_EXAMPLE, "status": "draft"})
    issued = parse("invoice_created", {**GUIDE_EXAMPLE, "status": "sent"})
    assert draft.event_key == issued.event_key + ":draft"
    assert parse("invoice_created", {**GUIDE_EXAMPLE, "status": "Void"}).event_key.endswith(":void")


def test_payments_flat_and_default() -> None:
    flat = parse("payment_received", {"payment_id": "982000000900313", "amount": "10000", "invoice_id": "INV-000364",
                                      "mobile": 9820012345})
    assert flat.applied[0].invoice_number == "INV-000364" and flat.phones == ("9820012345",)
    assert flat.event_key == "payment_received:-:982000000900313"
    default = parse("payment_received", {"payment": {
        "payment_id": "982000000900313", "amount": 10000.0, "customer_id": "1",
        "invoices": [{"invoice_id": "982000000501092", "invoice_number": "INV-000364", "amount_applied": 10000.0,
                      "balance_amount": 18500.0}]}})
    assert default.payload_format == "default" and default.amount == "10000.0"
    assert default.applied[0].invoice_id == "982000000501092"
    assert AlertEvent.from_json(default.to_json()) == default


@pytest.mark.parametrize(
    ("body", "status", "fields"),
    [
        ({**GUIDE_EXAMPLE, "total": None}, 422, ["total"]),
        ({**GUIDE_EXAMPLE, "due_date": "20260707"}, 422, ["due_date"]),
        ({**GUIDE_EXAMPLE, "currency_code": "Rs"}, 422, ["currency_code"]),
        ({**GUIDE_EXAMPLE, "total": -1}, 422, ["total"]),
        ({k: v for k, v in GUIDE_EXAMPLE.items() if k != "invoice_id"}, 422, ["invoice_id (or invoice_number)"]),
        ({"invoice": {**GUIDE_EXAMPLE, "customer_name": {"first": "P"}}}, 422, ["invoice.customer_name"]),
    ],
)
def test_refusals_name_the_field(body: dict, status: int, fields: list[str]) -> None:
    with pytest.raises(PayloadError) as caught:
        parse("invoice_created", body)
    assert caught.value.status == status and list(caught.value.fields) == fields


def test_unknown_kind_is_a_404() -> None:
    with pytest.raises(PayloadError) as caught:
        parse_event("estimate_created", b"{}")
    assert caught.value.status == 404


def test_the_limits_are_the_ledger_columns() -> None:
    from zoho_whatsapp.ledger.schema import messages, webhook_events
    from zoho_whatsapp.webhooks import payloads

    assert payloads.MAX_ORGANIZATION_CHARS == webhook_events.c.organization_id.type.length == 32
    assert payloads.MAX_ID_CHARS == messages.c.invoice_number.type.length == messages.c.invoice_id.type.length
    assert payloads.MAX_NAME_CHARS == messages.c.customer_name.type.length
    widest = parse("payment_received", {"payment_id": "9" * payloads.MAX_ID_CHARS, "amount": 1,
                                        "organization_id": "6" * payloads.MAX_ORGANIZATION_CHARS})
    assert len(widest.event_key) <= webhook_events.c.event_key.type.length
    assert len(widest.reference) <= webhook_events.c.reference.type.length


@pytest.mark.parametrize(
    ("field", "value", "why"),
    [
        ("customer_name", "Priya\ud800", "U+D800"),
        ("customer_name", "Pay\u202eevil", "U+202E"),
        ("customer_name", "Priya\u200bTextiles", "U+200B"),
        ("customer_name", "Pri\ufeffya", "U+FEFF"),
        ("customer_name", "Priya\U000e0041", "U+E0041"),
        ("customer_name", "a\u2028b", "U+2028"),
        ("invoice_id", "INV-\u200d1", "U+200D"),  # a joiner has a place in a name, never in an identifier
        ("mobile", "98200\u202c12345", "U+202C"),
        ("organization_id", "6" * 33, "longer than 32"),
        ("organization_id", "60012345a", "digits only"),
        ("customer_id", "../contacts/1", "digits only"),
        ("status", "sent\nvoid", "U+000A"),
    ],
)
def test_unsafe_text_is_refused_naming_field_and_character(field: str, value: str, why: str) -> None:
    with pytest.raises(PayloadError) as caught:
        parse("invoice_created", {**GUIDE_EXAMPLE, field: value})
    assert caught.value.status == 422 and list(caught.value.fields) == [field]
    assert why in str(caught.value)


def test_joiners_in_a_name_are_kept() -> None:
    name = "\u0915\u094d\u200d\u0937 Traders"  # Devanagari half form with a zero-width joiner
    assert parse("invoice_created", {**GUIDE_EXAMPLE, "customer_name": name}).customer_name == name


@pytest.mark.parametrize(
    ("body", "mentions"),
    [
        (b'{"invoice_id": "INV-1", "invoice_id": "INV-2", "customer_name": "A", "total": 1, "due_date": "2026-07-07"}',
         "'invoice_id' appears more than once"),
        (b'{"invoice": {"total": 1, "total": 2}}', "'total' appears more than once"),
        (b'{"total": 1e400}', "out of range"),
        (b'{"total": -Infinity}', "-Infinity"),
    ],
)
def test_json_that_two_readers_could_read_differently_is_400(body: bytes, mentions: str) -> None:
    with pytest.raises(PayloadError) as caught:
        parse_event("invoice_created", body)
    assert caught.value.status == 400 and mentions in str(caught.value)


def test_the_record_says_when_it_last_changed() -> None:
    record = {**GUIDE_EXAMPLE, "invoice_id": "982000000501095", "created_time": "2026-07-01T10:00:00+0530",
              "last_modified_time": "2026-07-02T09:30:00+0530"}
    assert parse("invoice_created", {"invoice": record}).changed_at == "2026-07-02T04:00:00+00:00"
    assert parse("invoice_created", GUIDE_EXAMPLE).changed_at is None
    no_offset = parse("invoice_created", {**GUIDE_EXAMPLE, "created_time": "2026-07-01 10:00:00"})
    assert no_offset.changed_at is None  # a time without an offset dates nothing
