"""Optional data added on top of the default seed: ``Sandbox(scenario="collections")``.

The collections scenario exercises every reminder-policy rule with customers whose names say
what they test: 1, 2, 11 and 40 open invoices, two currencies for one customer, promises to pay
in the past, today and the future, reminders switched off on a contact, on an invoice and by a
custom field, invoices due in 1-3 days and today (status ``sent``), one invoice at each stage
(-3, 0, +1, +7, +15, +30 and the +45 repeat), balances below the minimum, and invoices not due
for a week. Dates are relative to ``today`` (IST); the default seed is left exactly as it is.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from . import seed

__all__ = ["COLLECTIONS", "SCENARIOS", "REMINDERS_FIELD", "ScenarioCustomer", "ScenarioInvoice", "apply"]

REMINDERS_FIELD = {"customfield_id": 982000000099001, "label": "WhatsApp reminders",
                   "api_name": "cf_whatsapp_reminders", "data_type": "dropdown", "index": 1, "show_on_pdf": False}
_CONTACT_BASE = 982000000070000
_INVOICE_BASE = 982000000500000  # the seed's base: numbering simply continues after its invoices


@dataclass(frozen=True)
class ScenarioInvoice:
    days: int  # days past due today (negative: due in that many days)
    amount: str
    currency: str = "INR"
    paid: str = "0"  # already paid towards it (a part-paid invoice)
    promised_in: int | None = None  # payment_expected_date = today + promised_in
    reminders_enabled: bool = True  # payment_reminder_enabled on the invoice detail
    reminders_field: str | None = None  # value of the cf_whatsapp_reminders custom field


@dataclass(frozen=True)
class ScenarioCustomer:
    name: str
    invoices: tuple[ScenarioInvoice, ...]
    reminders_enabled: bool = True  # payment_reminder_enabled on the contact detail
    currency: str = "INR"
    tags: tuple[str, ...] = field(default=())


def _many(days: list[int], base: int) -> tuple[ScenarioInvoice, ...]:
    return tuple(ScenarioInvoice(d, str(base + 1250 * i)) for i, d in enumerate(days))


I = ScenarioInvoice  # noqa: E741 - the table below reads better with a short name
COLLECTIONS: tuple[ScenarioCustomer, ...] = (
    ScenarioCustomer("Aarav Single Invoice Traders", (I(7, "12000"),), tags=("one_invoice", "stage_+7")),
    ScenarioCustomer("Bhavna Two Invoice Textiles", (I(1, "8500"), I(15, "23000")), tags=("two_invoices",)),
    ScenarioCustomer("Chitra Eleven Invoice Exports",
                     _many([2, 3, 5, 8, 9, 12, 16, 20, 25, 33, 40], 14000)[:-1]
                     + (I(40, "60000", paid="25000"),), tags=("eleven_invoices", "part_paid")),
    ScenarioCustomer("Deccan Forty Invoice Industries", _many(list(range(1, 80, 2)), 5000), tags=("forty_invoices",)),
    ScenarioCustomer("Eshan Dual Currency Impex",
                     (I(7, "50000"), I(20, "15000"), I(10, "1200", "USD"), I(3, "800", "USD"),
                      I(10, "0.40", "USD")), tags=("two_currencies", "below_minimum")),
    ScenarioCustomer("Farida Promised Payments",
                     (I(10, "30000", promised_in=5), I(12, "18000", promised_in=0), I(9, "22000", promised_in=-2)),
                     tags=("promised",)),
    ScenarioCustomer("Gokul Reminders Off Agencies", (I(8, "40000"), I(16, "9000")), reminders_enabled=False,
                     tags=("contact_reminders_off",)),
    ScenarioCustomer("Harsh Mixed Switches Hardware",
                     (I(7, "10000", reminders_enabled=False), I(7, "11000", reminders_field="Off"),
                      I(7, "12000", reminders_field="On"), I(15, "13000")), tags=("invoice_reminders_off",)),
    ScenarioCustomer("Indira Due Soon Foods", (I(-1, "5000"), I(-2, "6000"), I(-3, "7000"), I(0, "9000")),
                     tags=("due_soon", "stage_0")),
    ScenarioCustomer("Jatin Courtesy Steel", (I(-3, "25000"),), tags=("stage_-3",)),
    ScenarioCustomer("Kavya Due Today Pharma", (I(0, "18000"),), tags=("stage_0",)),
    ScenarioCustomer("Lalit Overdue One Day Motors", (I(1, "21000"),), tags=("stage_+1",)),
    ScenarioCustomer("Meera Fortnight Electricals", (I(15, "27500"),), tags=("stage_+15",)),
    ScenarioCustomer("Naveen Final Notice Plastics", (I(30, "42000"),), tags=("stage_+30",)),
    ScenarioCustomer("Omkar Repeat Notice Chemicals", (I(45, "16000"),), tags=("stage_+45",)),
    ScenarioCustomer("Pooja Between Stages Garments", (I(4, "9900"),), tags=("between_stages",)),
    ScenarioCustomer("Rohan Small Balances Packaging", (I(7, "0.50"), I(7, "0.99"), I(7, "1.00")),
                     tags=("below_minimum",)),
    ScenarioCustomer("Sunita Not Yet Due Logistics", (I(-5, "14000"), I(-20, "3000")), tags=("not_due",)),
)
del I

SCENARIOS = {"collections": COLLECTIONS}


def _mobile(index: int, taken: set[str]) -> str:
    rng = random.Random(f"collections-mobile:{index}")
    while True:
        number = rng.choice(("98", "97", "99", "90", "70", "84")) + "".join(rng.choice("0123456789") for _ in range(8))
        if number not in taken:
            taken.add(number)
            return number


def _contact(index: int, spec: ScenarioCustomer, mobile: str, today: date, org_id: str) -> dict[str, Any]:
    cid = str(_CONTACT_BASE + index * 7)
    slug = "".join(ch for ch in spec.name.lower() if ch.isalnum())[:18]
    first, last = spec.name.split()[0], "Accounts"
    usd = spec.currency == "USD"
    stamp = f"{(today - timedelta(days=400)).isoformat()}T10:00:00{seed.IST}"
    person = {
        "contact_person_id": str(int(cid) + 2), "salutation": "", "first_name": first, "last_name": last,
        "email": f"accounts@{slug}.example.in", "phone": "", "mobile": f"+91 {mobile[:5]} {mobile[5:]}",
        "designation": "Accounts Manager", "department": "", "skype": "", "is_primary_contact": True,
        "communication_preference": {"is_email_enabled": True, "is_sms_enabled": False, "is_whatsapp_enabled": True},
        "enable_portal": False,
    }
    address = {"attention": f"{first} {last}", "address": "12, Station Road", "street2": "", "city": "Pune",
               "state": "Maharashtra", "state_code": "MH", "zip": "411001", "country": "India", "fax": "", "phone": ""}
    return {
        "contact_id": cid, "contact_name": spec.name, "company_name": spec.name, "first_name": first,
        "last_name": last, "email": person["email"], "phone": "", "mobile": person["mobile"],
        "contact_type": "customer", "customer_sub_type": "business", "status": "active", "payment_terms": 30,
        "currency_code": spec.currency, "currency_id": seed.USD_ID if usd else seed.INR_ID,
        "currency_symbol": "$" if usd else "₹", "gst_no": "" if usd else f"27AACCS{1000 + index}A1Z5",
        "gst_treatment": "overseas" if usd else "business_gst", "place_of_contact": "" if usd else "MH",
        "website": "", "contact_persons": [person], "billing_address": address, "shipping_address": dict(address),
        "notes": "", "created_time": stamp, "last_modified_time": stamp,
        "payment_reminder_enabled": spec.reminders_enabled,
        "_kind": "mobile", "_org": org_id, "_scenario": "collections",
    }


def _invoice(n: int, spec: ScenarioInvoice, contact: dict[str, Any], today: date, org_id: str) -> dict[str, Any]:
    due = today - timedelta(days=spec.days)
    issued = due - timedelta(days=30)
    total = Decimal(spec.amount)
    balance = total - Decimal(spec.paid)
    usd = spec.currency == "USD"
    stamp = f"{issued.isoformat()}T11:00:00{seed.IST}"
    invoice: dict[str, Any] = {
        "invoice_id": str(_INVOICE_BASE + n * 3), "invoice_number": f"INV-{n:06d}",
        "customer_id": contact["contact_id"], "customer_name": contact["contact_name"],
        # Zoho turns an invoice overdue the day after its due date; due today it is still "sent".
        "status": "overdue" if spec.days > 0 else "sent",
        "date": issued.isoformat(), "due_date": due.isoformat(), "payment_terms": 30,
        "payment_terms_label": "Net 30", "currency_id": seed.USD_ID if usd else seed.INR_ID,
        "currency_code": spec.currency, "total": total, "balance": balance, "created_time": stamp,
        "last_modified_time": stamp, "reminders_sent": 0, "last_reminder_sent_date": "",
        "reference_number": "", "is_emailed": True, "is_viewed_by_client": False, "salesperson_name": "",
        "exchange_rate": float(seed.USD_TO_INR) if usd else 1.0,
        "invoice_url": f"https://books.zoho.in/SecurePayment?CInvoiceID={n:040x}",
        "last_payment_date": (issued + timedelta(days=10)).isoformat() if spec.paid != "0" else "",
        "payment_expected_date": (today + timedelta(days=spec.promised_in)).isoformat()
        if spec.promised_in is not None else "",
        "payment_reminder_enabled": spec.reminders_enabled,
        "custom_fields": [dict(REMINDERS_FIELD, value=spec.reminders_field)] if spec.reminders_field else [],
        "_org": org_id, "_scenario": "collections",
    }
    return invoice


def apply(name: str, data: dict[str, Any], today: date, org_id: str) -> dict[str, Any]:
    """Add scenario ``name``'s contacts and invoices to seeded ``data`` (returned, extended)."""
    if name not in SCENARIOS:
        raise ValueError(f"unknown sandbox scenario {name!r}: one of {sorted(SCENARIOS)}")
    taken = {"".join(ch for ch in str(c.get("mobile")) if ch.isdigit())[-10:] for c in data["contacts"]}
    n = len(data["invoices"])
    for index, spec in enumerate(SCENARIOS[name]):
        contact = _contact(index, spec, _mobile(index, taken), today, org_id)
        data["contacts"].append(contact)
        for invoice_spec in spec.invoices:
            n += 1
            invoice = _invoice(n, invoice_spec, contact, today, org_id)
            data["invoices"].append(invoice)
            if invoice["total"] != invoice["balance"]:
                data["payments"].append(_payment(len(data["payments"]) + 1, invoice))
    return data


def _payment(n: int, invoice: dict[str, Any]) -> dict[str, Any]:
    paid = invoice["total"] - invoice["balance"]
    return {
        "payment_id": str(982000000970000 + n * 3), "payment_number": f"C{n}",
        "customer_id": invoice["customer_id"], "customer_name": invoice["customer_name"],
        "payment_mode": "banktransfer", "date": invoice["last_payment_date"], "amount": paid,
        "currency_code": invoice["currency_code"], "reference_number": f"UTR{900000000000 + n}",
        "invoices": [{"invoice_id": invoice["invoice_id"], "invoice_number": invoice["invoice_number"],
                      "date": invoice["date"], "invoice_amount": invoice["total"], "amount_applied": paid,
                      "balance_amount": invoice["balance"]}],
        "created_time": f"{invoice['last_payment_date']}T12:00:00{seed.IST}", "_org": invoice["_org"],
    }
