"""The alert rules on Zoho's records: what each alert says, to whom, and when there is none."""

from __future__ import annotations

import pytest

from zoho_whatsapp.rules.alerts import AlertContext, NothingToAlert, invoice_created, payment_received
from zoho_whatsapp.rules.messages import Planned, Skip
from zoho_whatsapp.rules.templates import load_templates
from zoho_whatsapp.zoho.contacts import contact_numbers

ORG = AlertContext(region="IN", currency="INR")
TEMPLATES = load_templates()
INVOICE = {"invoice_id": "982000000500001", "invoice_number": "INV-000142", "customer_id": "982000000000101",
           "customer_name": "Priya Textiles", "status": "sent", "total": 48500.0, "balance": 28500.0,
           "due_date": "2026-07-07", "currency_code": "INR", "invoice_url": "https://books.zoho.in/SecurePayment?x"}


def numbers(*found: str):  # noqa: ANN201
    asked: list[int] = []

    def lookup() -> tuple[str, ...]:
        asked.append(1)
        return found

    lookup.asked = asked  # type: ignore[attr-defined]
    return lookup


def test_an_issued_invoice_is_announced_to_the_contacts_mobile_with_zohos_facts() -> None:
    alert = invoice_created(INVOICE, numbers("022 2345 6789", "98200 12345"), TEMPLATES["invoice_created"], ORG,
                            named="INV-000142")
    assert alert.decision == Planned("+919820012345", "+91 98XXXXXX45", "invoice_created", "en", {
        "party_name": "Priya Textiles", "invoice_number": "INV-000142", "invoice_amount": "₹48,500.00",
        "due_date": "7 July 2026"})
    assert alert.record == {"invoice_id": "982000000500001", "invoice_number": "INV-000142",
                            "customer_id": "982000000000101", "customer_name": "Priya Textiles", "status": "sent",
                            "total": 48500.0, "due_date": "2026-07-07", "currency_code": "INR"}


@pytest.mark.parametrize("status", ["draft", "void", "Draft"])
def test_drafts_and_void_invoices_are_not_announced_and_cost_no_contact_lookup(status: str) -> None:
    lookup = numbers("9820012345")
    alert = invoice_created({**INVOICE, "status": status}, lookup, TEMPLATES["invoice_created"], ORG, named="x")
    assert alert.decision.reason == f"invoice_{status.lower()}"
    assert lookup.asked == []


def test_an_invoice_zoho_does_not_have_is_nothing_to_alert() -> None:
    for missing in (None, {}):
        with pytest.raises(NothingToAlert) as info:
            invoice_created(missing, numbers(), TEMPLATES["invoice_created"], ORG, named="982000000999001")
        assert info.value.reason == "not_in_zoho" and "982000000999001" in str(info.value)


def test_an_unusable_number_is_a_skip_that_shows_the_number_masked() -> None:
    alert = invoice_created(INVOICE, numbers("022 2345 6789"), TEMPLATES["invoice_created"], ORG, named="x")
    assert isinstance(alert.decision, Skip) and alert.decision.reason == "not_mobile"
    assert "2345 6789" not in alert.decision.detail and "02XXXXXXX89" in alert.decision.detail


def test_a_payment_alert_per_applied_invoice_with_its_live_balance() -> None:
    payment = {"payment_id": "982000000900001", "payment_number": "PMT-7", "customer_id": "982000000000101",
               "customer_name": "Priya Textiles", "amount": 25000.0, "currency_code": "INR",
               "invoices": [{"invoice_id": INVOICE["invoice_id"], "amount_applied": 20000.0},
                            {"invoice_id": "982000000500002", "invoice_number": "INV-000143", "amount_applied": 5000.0}]}
    live = {INVOICE["invoice_id"]: {**INVOICE, "balance": -3.0}, "982000000500002": None}
    first, gone = payment_received(payment, live, numbers("9820012345"), TEMPLATES["payment_received"], ORG,
                                   named=payment["payment_id"])
    assert first.decision.parameters == {"party_name": "Priya Textiles", "amount_received": "₹20,000.00",
                                         "invoice_number": "INV-000142", "balance_due": "₹0.00"}
    assert first.record["live_balance"] == -3.0 and first.record["payment_number"] == "PMT-7"
    assert (gone.decision.reason, gone.record["invoice_number"]) == ("not_in_zoho", "INV-000143")
    with pytest.raises(NothingToAlert, match="not applied") as info:
        payment_received({**payment, "invoices": []}, {}, numbers(), TEMPLATES["payment_received"], ORG, named="p")
    assert info.value.reason == "not_applied"
    with pytest.raises(NothingToAlert) as info:
        payment_received(None, {}, numbers(), TEMPLATES["payment_received"], ORG, named="p")
    assert info.value.reason == "not_in_zoho"


def test_contact_numbers_fall_back_to_the_primary_person() -> None:
    person = {"mobile": "9820012345", "phone": "022 2345 6789", "is_primary_contact": True}
    assert contact_numbers({"mobile": "", "contact_persons": [{"mobile": "1"}, person]}) == ("9820012345", "022 2345 6789")
    assert contact_numbers({"mobile": 9820012345, "phone": 9820012345}) == ("9820012345",)
    assert contact_numbers(None) == () and contact_numbers({}) == ()
