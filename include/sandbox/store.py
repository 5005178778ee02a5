"""In-memory Zoho Books ledger: seeded records, API renderings, list queries and mutations."""

from __future__ import annotations

import threading
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

from . import scenarios, seed

IST_TZ = timezone(timedelta(hours=5, minutes=30))

INVOICE_STATUS_FILTERS = {
    "all": None,
    "sent": {"sent"},
    "draft": {"draft"},
    "overdue": {"overdue"},
    "paid": {"paid"},
    "void": {"void"},
    "unpaid": {"sent", "overdue", "partially_paid", "viewed"},
    "partially_paid": {"partially_paid"},
    "viewed": {"viewed"},
}
# filter_by=Status.X -> status key above
INVOICE_FILTER_BY = {
    "status.all": "all",
    "status.sent": "sent",
    "status.draft": "draft",
    "status.overdue": "overdue",
    "status.paid": "paid",
    "status.void": "void",
    "status.unpaid": "unpaid",
    "status.partiallypaid": "partially_paid",
    "status.viewed": "viewed",
}
FILTER_LABEL = {
    "all": "Status.All",
    "sent": "Status.Sent",
    "draft": "Status.Draft",
    "overdue": "Status.OverDue",
    "paid": "Status.Paid",
    "void": "Status.Void",
    "unpaid": "Status.Unpaid",
    "partially_paid": "Status.PartiallyPaid",
    "viewed": "Status.Viewed",
}
INVOICE_SORT = ("due_date", "date", "invoice_number", "customer_name", "total", "balance", "created_time")
CONTACT_FILTERS = ("Status.All", "Status.Active", "Status.Inactive", "Invoice.OverDue", "Invoice.Unpaid",
                   "Status.Customers")
# filter_by=Invoice.X -> the invoice statuses that put a customer in the listing (balance > 0)
CONTACT_INVOICE_FILTERS = {"Invoice.OverDue": {"overdue"}, "Invoice.Unpaid": INVOICE_STATUS_FILTERS["unpaid"]}
CONTACT_SORT = (
    "contact_name",
    "customer_name",
    "company_name",
    "outstanding_receivable_amount",
    "created_time",
    "last_modified_time",
)


class QueryError(ValueError):
    """A bad list parameter; ``field`` names it for Zoho's code-2 message."""

    def __init__(self, field: str) -> None:
        super().__init__(f"Invalid value passed for {field}")
        self.field = field


def money(value: Decimal) -> float:
    return float(value.quantize(Decimal("0.01")))


def today_ist() -> date:
    return datetime.now(IST_TZ).date()


def now_stamp() -> str:
    return datetime.now(IST_TZ).strftime("%Y-%m-%dT%H:%M:%S%z")


def due_days(inv: dict[str, Any], today: date) -> str:
    if inv["status"] in ("paid", "void", "draft"):
        return ""
    delta = (date.fromisoformat(inv["due_date"]) - today).days
    if delta < 0:
        return f"Overdue by {-delta} days" if delta < -1 else "Overdue by 1 day"
    if delta == 0:
        return "Due Today"
    return f"Due in {delta} day(s)"


class Store:
    """All Zoho Books data of the sandbox.  Public methods are thread-safe."""

    def __init__(self, seed_value: int, invoices: int, organizations: int, org_id: str,
                 scenario: str | None = None) -> None:
        self.lock = threading.RLock()
        self.seed = seed_value
        self.today = today_ist()
        data = seed.build(seed_value, invoices, self.today, org_id)
        if scenario:
            data = scenarios.apply(scenario, data, self.today, org_id)
        self.organizations: list[dict[str, Any]] = [seed.make_organization(org_id, seed.ORG_NAME, default=True)]
        self.contacts: dict[str, dict[str, Any]] = {c["contact_id"]: c for c in data["contacts"]}
        self.invoices: dict[str, dict[str, Any]] = {i["invoice_id"]: i for i in data["invoices"]}
        self.payments: dict[str, dict[str, Any]] = {p["payment_id"]: p for p in data["payments"]}
        self.comments: dict[str, list[dict[str, Any]]] = {}
        self.by_customer: dict[str, list[str]] = {}
        for inv in data["invoices"]:
            self.by_customer.setdefault(inv["customer_id"], []).append(inv["invoice_id"])
        self.version = 0
        self._cache: dict[Any, Any] = {}
        self._next_invoice_seq = len(self.invoices) + 1
        for _ in range(1, organizations):  # one Zoho login, several businesses: each with data of its own
            self.add_organization(invoices=invoices)

    # ------------------------------------------------------------------ organizations
    def org(self, org_id: str) -> dict[str, Any] | None:
        with self.lock:
            for org in self.organizations:
                if org["organization_id"] == org_id:
                    return org
        return None

    def add_organization(self, name: str | None = None, *, invoices: int = 0) -> dict[str, Any]:
        """Another organization of the same Zoho login; with ``invoices``, seeded with that many overdue
        invoices of its own customers (ids, names and numbers apart from every other organization's)."""
        with self.lock:
            index = len(self.organizations)
            org_id = seed.second_org_id(self.seed, index)
            org = seed.make_organization(org_id, name or f"Sharma Traders Exports {index + 1}", default=False)
            self.organizations.append(org)
            if invoices:
                data = seed.build(self.seed, invoices, self.today, org_id, index=index)
                self.contacts.update((c["contact_id"], c) for c in data["contacts"])
                self.invoices.update((i["invoice_id"], i) for i in data["invoices"])
                self.payments.update((p["payment_id"], p) for p in data["payments"])
                for inv in data["invoices"]:
                    self.by_customer.setdefault(inv["customer_id"], []).append(inv["invoice_id"])
            self._bump()
            return dict(org)

    # ------------------------------------------------------------------ renderings
    def invoice_row(self, inv: dict[str, Any], today: date | None = None) -> dict[str, Any]:
        """An invoice as it appears in ``GET /invoices`` (fields of the list response schema)."""
        today = today or today_ist()
        row = {
            "invoice_id": inv["invoice_id"],
            "ach_payment_initiated": False,
            "customer_name": inv["customer_name"],
            "customer_id": inv["customer_id"],
            "company_name": inv["customer_name"],
            "status": inv["status"],
            "invoice_number": inv["invoice_number"],
            "reference_number": inv["reference_number"],
            "date": inv["date"],
            "due_date": inv["due_date"],
            "due_days": due_days(inv, today),
            "currency_id": inv["currency_id"],
            "schedule_time": "",
            "currency_code": inv["currency_code"],
            "is_viewed_by_client": inv["is_viewed_by_client"],
            "has_attachment": False,
            "client_viewed_time": "",
            "total": money(inv["total"]),
            "balance": money(inv["balance"]),
            "created_time": inv["created_time"],
            "last_modified_time": inv["last_modified_time"],
            "is_emailed": inv["is_emailed"],
            "reminders_sent": inv["reminders_sent"],
            "last_reminder_sent_date": inv["last_reminder_sent_date"],
            "payment_expected_date": inv.get("payment_expected_date", ""),
            "last_payment_date": inv["last_payment_date"],
            "custom_fields": [dict(f) for f in inv.get("custom_fields", ())],
            "documents": "",
            "salesperson_id": "",
            "salesperson_name": inv["salesperson_name"],
            "shipping_charge": 0.0,
            "adjustment": 0.0,
            "write_off_amount": 0.0,
            "exchange_rate": inv["exchange_rate"],
            "invoice_url": inv["invoice_url"],
        }
        if inv.get("_row_phone"):
            contact = self.contacts.get(inv["customer_id"], {})
            phone = contact.get("phone") or contact.get("mobile") or ""
            row["phone"] = phone
            row["billing_address"] = {"phone": contact.get("billing_address", {}).get("phone", "")}
        return row

    def invoice_detail(self, inv: dict[str, Any]) -> dict[str, Any]:
        """An invoice as ``GET /invoices/{id}`` returns it."""
        contact = self.contacts.get(inv["customer_id"], {})
        total: Decimal = inv["total"]
        usd = inv["currency_code"] == "USD"
        rate = Decimal("1.18") if not usd else Decimal(1)
        sub_total = (total / rate).quantize(Decimal("0.01"))
        tax_total = total - sub_total
        paid = total - inv["balance"]
        detail = self.invoice_row(inv)
        detail.pop("company_name", None)
        detail.update(
            {
                "is_pre_gst": False,
                "place_of_supply": contact.get("place_of_contact", ""),
                "gst_no": contact.get("gst_no", ""),
                "gst_treatment": contact.get("gst_treatment", ""),
                "tax_treatment": contact.get("gst_treatment", ""),
                "is_reverse_charge_applied": False,
                "payment_terms": inv["payment_terms"],
                "payment_terms_label": inv["payment_terms_label"],
                "contact_persons_associated": [
                    {
                        "contact_person_id": p["contact_person_id"],
                        "contact_person_name": f"{p['first_name']} {p['last_name']}".strip(),
                        "first_name": p["first_name"],
                        "last_name": p["last_name"],
                        "contact_person_email": p["email"],
                        "phone": p["phone"],
                        "mobile": p["mobile"],
                        "communication_preference": {
                            "is_email_enabled": p["communication_preference"]["is_email_enabled"],
                            "is_sms_enabled": p["communication_preference"]["is_sms_enabled"],
                            "is_whatsapp_enabled": p["communication_preference"]["is_whatsapp_enabled"],
                        },
                    }
                    for p in contact.get("contact_persons", [])
                ],
                "discount": 0.0,
                "is_discount_before_tax": True,
                "discount_type": "entity_level",
                "is_inclusive_tax": False,
                "recurring_invoice_id": "",
                "line_items": [
                    {
                        "line_item_id": str(int(inv["invoice_id"]) + 1),
                        "item_id": "982000000030049",
                        "name": "Goods as per order",
                        "description": f"Supply against {inv['reference_number'] or 'order'}",
                        "item_order": 1,
                        "bcy_rate": money(sub_total),
                        "rate": money(sub_total),
                        "quantity": 1.0,
                        "unit": "Nos",
                        "discount_amount": 0.0,
                        "discount": 0.0,
                        "tax_id": "" if usd else "982000000010251",
                        "tax_name": "" if usd else "IGST18",
                        "tax_type": "tax",
                        "tax_percentage": 0.0 if usd else 18.0,
                        "item_total": money(sub_total),
                    }
                ],
                "adjustment_description": "",
                "sub_total": money(sub_total),
                "tax_total": money(tax_total),
                "taxes": [] if usd else [{"tax_name": "IGST18 (18%)", "tax_amount": money(tax_total)}],
                "payment_reminder_enabled": inv.get("payment_reminder_enabled", True),
                "payment_made": money(paid),
                "credits_applied": 0.0,
                "tax_amount_withheld": 0.0,
                "allow_partial_payments": True,
                "price_precision": 2,
                "billing_address": {k: v for k, v in contact.get("billing_address", {}).items()},
                "shipping_address": {k: v for k, v in contact.get("shipping_address", {}).items()},
                "notes": "Thanks for your business.",
                "terms": "Interest @18% p.a. will be charged on payments delayed beyond the due date.",
                "template_id": "982000000000143",
                "template_name": "Standard",
                "attachment_name": "",
                "can_send_in_mail": True,
            }
        )
        detail.pop("phone", None)
        return detail

    def outstanding(self, contact_id: str) -> Decimal:
        total = Decimal(0)
        for inv_id in self.by_customer.get(contact_id, ()):
            inv = self.invoices[inv_id]
            if inv["status"] not in ("draft", "void", "paid"):
                total += inv["balance"]
        return total

    def contact_row(self, c: dict[str, Any]) -> dict[str, Any]:
        owed = self.outstanding(c["contact_id"])
        bcy = owed * seed.USD_TO_INR if c["currency_code"] == "USD" else owed
        return {
            "contact_id": c["contact_id"],
            "contact_name": c["contact_name"],
            "customer_name": c["contact_name"],
            "vendor_name": "",
            "company_name": c["company_name"],
            "website": c["website"],
            "language_code": "en",
            "contact_type": c["contact_type"],
            "contact_type_formatted": "Customer",
            "status": c["status"],
            "customer_sub_type": c["customer_sub_type"],
            "source": "user",
            "is_linked_with_zohocrm": False,
            "payment_terms": c["payment_terms"],
            "payment_terms_label": f"Net {c['payment_terms']}",
            "currency_id": c["currency_id"],
            "currency_code": c["currency_code"],
            "outstanding_receivable_amount": money(owed),
            "outstanding_receivable_amount_bcy": money(bcy),
            "unused_credits_receivable_amount": 0.0,
            "unused_credits_receivable_amount_bcy": 0.0,
            "first_name": c["first_name"],
            "last_name": c["last_name"],
            "email": c["email"],
            "phone": c["phone"],
            "mobile": c["mobile"],
            "portal_status": "disabled",
            "created_time": c["created_time"],
            "last_modified_time": c["last_modified_time"],
            "has_attachment": False,
        }

    def contact_detail(self, c: dict[str, Any]) -> dict[str, Any]:
        row = self.contact_row(c)
        for key in ("customer_name", "vendor_name", "contact_type_formatted", "source", "portal_status"):
            row.pop(key, None)
        persons = [dict(p, communication_preference=dict(p["communication_preference"])) for p in c["contact_persons"]]
        row.update(
            {
                "has_transaction": bool(self.by_customer.get(c["contact_id"])),
                "contact_number": "",
                "is_taxable": c["currency_code"] != "USD",
                "place_of_contact": c["place_of_contact"],
                "gst_no": c["gst_no"],
                "gst_treatment": c["gst_treatment"],
                "tax_treatment": c["gst_treatment"],
                "primary_contact_id": c["contact_persons"][0]["contact_person_id"],
                "currency_symbol": c["currency_symbol"],
                "payment_reminder_enabled": c.get("payment_reminder_enabled", True),
                "custom_fields": [],
                "billing_address": dict(c["billing_address"]),
                "shipping_address": dict(c["shipping_address"]),
                "contact_persons": persons,
                "notes": c["notes"],
            }
        )
        return row

    def payment_detail(self, p: dict[str, Any]) -> dict[str, Any]:
        contact = self.contacts.get(p["customer_id"], {})
        return {
            "payment_id": p["payment_id"],
            "payment_number": p["payment_number"],
            "payment_mode": p["payment_mode"],
            "amount": money(p["amount"]),
            "amount_refunded": 0.0,
            "bank_charges": 0.0,
            "date": p["date"],
            "status": "success",
            "reference_number": p["reference_number"],
            "description": "Payment has been added to "
            + ", ".join(i["invoice_number"] for i in p["invoices"]),
            "customer_id": p["customer_id"],
            "customer_name": p["customer_name"],
            "email": contact.get("email", ""),
            "invoices": [
                {
                    "invoice_id": i["invoice_id"],
                    "invoice_number": i["invoice_number"],
                    "date": i["date"],
                    "invoice_amount": money(i["invoice_amount"]),
                    "amount_applied": money(i["amount_applied"]),
                    "balance_amount": money(i["balance_amount"]),
                }
                for i in p["invoices"]
            ],
            "currency_code": p["currency_code"],
            "currency_symbol": "$" if p["currency_code"] == "USD" else "₹",
            "custom_fields": [],
            "created_time": p["created_time"],
            "last_modified_time": p["created_time"],
        }

    def payment_row(self, p: dict[str, Any]) -> dict[str, Any]:
        return {
            "payment_id": p["payment_id"],
            "payment_number": p["payment_number"],
            "payment_mode": p["payment_mode"],
            "date": p["date"],
            "reference_number": p["reference_number"],
            "amount": money(p["amount"]),
            "bcy_amount": money(p["amount"] * (seed.USD_TO_INR if p["currency_code"] == "USD" else 1)),
            "unused_amount": 0.0,
            "customer_id": p["customer_id"],
            "customer_name": p["customer_name"],
            "invoice_numbers": ", ".join(i["invoice_number"] for i in p["invoices"]),
            "currency_code": p["currency_code"],
            "created_time": p["created_time"],
            "last_modified_time": p["created_time"],
        }

    # ------------------------------------------------------------------ queries
    def list_invoices(self, org_id: str, q: dict[str, str]) -> tuple[list[dict[str, Any]], str, str, str]:
        """Filtered, sorted invoice records (no pagination).  Returns (records, filter, col, order)."""
        status_key = "all"
        if q.get("filter_by"):
            key = INVOICE_FILTER_BY.get(q["filter_by"].strip().lower())
            if key is None:
                raise QueryError("filter_by")
            status_key = key
        if q.get("status"):
            key = q["status"].strip().lower()
            if key not in INVOICE_STATUS_FILTERS:
                raise QueryError("status")
            status_key = key
        col = q.get("sort_column") or "created_time"
        if col not in INVOICE_SORT:
            raise QueryError("sort_column")
        order = (q.get("sort_order") or "D").upper()
        if order not in ("A", "D", "ASCENDING", "DESCENDING"):
            raise QueryError("sort_order")
        order = order[0]
        for name in ("due_date_before", "due_date_after", "due_date_start", "due_date_end",
                     "date_before", "date_after", "date_start", "date_end", "due_date", "date"):
            if q.get(name):
                try:
                    date.fromisoformat(q[name])
                except ValueError:
                    raise QueryError(name) from None
        key = ("inv", org_id, status_key, col, order, self.version)
        with self.lock:
            records = self._cache.get(key)
            if records is None:
                wanted = INVOICE_STATUS_FILTERS[status_key]
                records = [
                    inv
                    for inv in self.invoices.values()
                    if inv["_org"] == org_id and (wanted is None or inv["status"] in wanted)
                ]
                records.sort(key=lambda i: i["invoice_id"], reverse=order == "D")
                records.sort(key=_invoice_sort_key(col), reverse=order == "D")
                self._cache = {k: v for k, v in self._cache.items() if k[-1] == self.version}
                self._cache[key] = records
        records = _apply_invoice_filters(records, q)
        return records, FILTER_LABEL[status_key], col, order

    def list_contacts(self, org_id: str, q: dict[str, str]) -> tuple[list[dict[str, Any]], str, str, str]:
        filt = q.get("filter_by") or "Status.All"
        match = {f.lower(): f for f in CONTACT_FILTERS}.get(filt.lower())
        if match is None:
            raise QueryError("filter_by")
        col = q.get("sort_column") or "contact_name"
        if col not in CONTACT_SORT:
            raise QueryError("sort_column")
        order = (q.get("sort_order") or "A").upper()[:1]
        if order not in ("A", "D"):
            raise QueryError("sort_order")
        key = ("con", org_id, match, col, order, self.version)
        with self.lock:
            rows = self._cache.get(key)
            if rows is None:
                overdue_ids = None
                if match in CONTACT_INVOICE_FILTERS:
                    statuses = CONTACT_INVOICE_FILTERS[match]
                    overdue_ids = {
                        inv["customer_id"]
                        for inv in self.invoices.values()
                        if inv["_org"] == org_id and inv["status"] in statuses and inv["balance"] > 0
                    }
                rows = []
                for c in self.contacts.values():
                    if c["_org"] != org_id:
                        continue
                    if match == "Status.Active" and c["status"] != "active":
                        continue
                    if match == "Status.Inactive" and c["status"] != "inactive":
                        continue
                    if overdue_ids is not None and c["contact_id"] not in overdue_ids:
                        continue
                    rows.append(self.contact_row(c))
                rows.sort(key=lambda r: r["contact_id"], reverse=order == "D")
                if col in ("contact_name", "customer_name", "company_name"):
                    rows.sort(key=lambda r: r[col].casefold(), reverse=order == "D")
                else:
                    rows.sort(key=lambda r: r[col], reverse=order == "D")
                self._cache = {k: v for k, v in self._cache.items() if k[-1] == self.version}
                self._cache[key] = rows
        if q.get("contact_name"):
            rows = [r for r in rows if r["contact_name"] == q["contact_name"]]
        if q.get("search_text"):
            needle = q["search_text"].casefold()
            rows = [r for r in rows if needle in r["contact_name"].casefold()]
        return rows, match, col, order

    def list_payments(self, org_id: str, q: dict[str, str]) -> list[dict[str, Any]]:
        with self.lock:
            rows = [self.payment_row(p) for p in self.payments.values() if p["_org"] == org_id]
        if q.get("customer_id"):
            rows = [r for r in rows if r["customer_id"] == q["customer_id"]]
        rows.sort(key=lambda r: (r["date"], r["payment_id"]), reverse=True)
        return rows

    # ------------------------------------------------------------------ mutations
    def add_comment(self, invoice_id: str, description: str, show: bool) -> dict[str, Any]:
        with self.lock:
            comment = {
                "comment_id": str(982000000800000 + sum(len(v) for v in self.comments.values()) * 3 + 3),
                "invoice_id": invoice_id,
                "commented_by": "Rakesh Sharma",
                "comment_type": "internal",
                "description": description,
                "show_comment_to_clients": show,
                "date": today_ist().isoformat(),
                "time": datetime.now(IST_TZ).strftime("%I:%M %p"),
                "operation_type": "Added",
                "transaction_type": "invoice",
            }
            self.comments.setdefault(invoice_id, []).append(comment)
            return dict(comment)

    def patch_invoice(self, invoice_id: str, patch: dict[str, Any]) -> dict[str, Any]:
        """Apply a test's patch (e.g. ``{"balance": 0, "status": "paid"}``); returns the list row."""
        allowed = {"status", "balance", "total", "due_date", "date", "customer_name", "reminders_sent",
                   "last_reminder_sent_date", "reference_number", "currency_code", "payment_expected_date",
                   "payment_reminder_enabled", "custom_fields"}
        bad = set(patch) - allowed
        if bad:
            raise ValueError(f"cannot patch field(s): {sorted(bad)}")
        with self.lock:
            inv = self.invoices.get(invoice_id)
            if inv is None:
                raise KeyError(invoice_id)
            for k, v in patch.items():
                if k in ("balance", "total"):
                    inv[k] = _decimal(v)
                elif k in ("due_date", "date"):
                    inv[k] = date.fromisoformat(str(v)).isoformat()
                else:
                    inv[k] = v
            inv["last_modified_time"] = now_stamp()
            self._bump()
            return self.invoice_row(inv)

    def patch_contact(self, contact_id: str, patch: dict[str, Any]) -> dict[str, Any]:
        """Patch a contact: top-level fields, and ``mobile``/``phone`` also on the primary person."""
        allowed = {"mobile", "phone", "email", "status", "contact_name", "is_whatsapp_enabled",
                   "payment_reminder_enabled"}
        bad = set(patch) - allowed
        if bad:
            raise ValueError(f"cannot patch field(s): {sorted(bad)}")
        with self.lock:
            c = self.contacts.get(contact_id)
            if c is None:
                raise KeyError(contact_id)
            primary = c["contact_persons"][0]
            for k, v in patch.items():
                if k == "is_whatsapp_enabled":
                    primary["communication_preference"]["is_whatsapp_enabled"] = bool(v)
                    continue
                c[k] = v
                if k == "contact_name":
                    c["company_name"] = v
                if k in ("mobile", "phone", "email"):
                    primary[k] = v
            c["last_modified_time"] = now_stamp()
            self._bump()
            return self.contact_detail(c)

    def add_payment(self, invoice_id: str, amount: Any = None, pay_date: str | None = None,
                    payment_mode: str = "banktransfer") -> dict[str, Any]:
        """Record a customer payment against one invoice (default: its full balance)."""
        with self.lock:
            inv = self.invoices.get(invoice_id)
            if inv is None:
                raise KeyError(invoice_id)
            applied = inv["balance"] if amount is None else _decimal(amount)
            if applied <= 0 or applied > inv["balance"]:
                raise ValueError("amount must be > 0 and not more than the invoice balance")
            inv["balance"] = inv["balance"] - applied
            when = pay_date or today_ist().isoformat()
            inv["last_payment_date"] = when
            if inv["balance"] == 0:
                inv["status"] = "paid"
            inv["last_modified_time"] = now_stamp()
            n = len(self.payments) + 1
            pid = str(982000000900000 + n * 3 + 1)
            while pid in self.payments:
                n += 1
                pid = str(982000000900000 + n * 3 + 1)
            payment = {
                "payment_id": pid,
                "payment_number": str(n),
                "customer_id": inv["customer_id"],
                "customer_name": inv["customer_name"],
                "payment_mode": payment_mode,
                "date": when,
                "amount": applied,
                "currency_code": inv["currency_code"],
                "reference_number": "",
                "invoices": [
                    {
                        "invoice_id": inv["invoice_id"],
                        "invoice_number": inv["invoice_number"],
                        "date": inv["date"],
                        "invoice_amount": inv["total"],
                        "amount_applied": applied,
                        "balance_amount": inv["balance"],
                    }
                ],
                "created_time": now_stamp(),
                "_org": inv["_org"],
            }
            self.payments[pid] = payment
            self._bump()
            return self.payment_detail(payment)

    def _bump(self) -> None:
        self.version += 1


def _decimal(value: Any) -> Decimal:
    try:
        return Decimal(str(value)).quantize(Decimal("0.01"))
    except InvalidOperation:
        raise ValueError(f"not an amount: {value!r}") from None


def _invoice_sort_key(col: str) -> Any:
    if col == "customer_name":
        return lambda i: i["customer_name"].casefold()
    return lambda i: i[col]


def _apply_invoice_filters(records: list[dict[str, Any]], q: dict[str, str]) -> list[dict[str, Any]]:
    checks = []
    if q.get("customer_id"):
        checks.append(lambda i, v=q["customer_id"]: i["customer_id"] == v)
    if q.get("invoice_number"):
        checks.append(lambda i, v=q["invoice_number"]: i["invoice_number"] == v)
    if q.get("customer_name"):
        checks.append(lambda i, v=q["customer_name"]: i["customer_name"] == v)
    if q.get("search_text"):
        needle = q["search_text"].casefold()
        checks.append(lambda i: needle in i["invoice_number"].casefold() or needle in i["customer_name"].casefold())
    for field in ("due_date", "date"):
        if q.get(field):
            checks.append(lambda i, f=field, v=q[field]: i[f] == v)
        if q.get(f"{field}_before"):
            checks.append(lambda i, f=field, v=q[f"{field}_before"]: i[f] < v)
        if q.get(f"{field}_after"):
            checks.append(lambda i, f=field, v=q[f"{field}_after"]: i[f] > v)
        if q.get(f"{field}_start"):
            checks.append(lambda i, f=field, v=q[f"{field}_start"]: i[f] >= v)
        if q.get(f"{field}_end"):
            checks.append(lambda i, f=field, v=q[f"{field}_end"]: i[f] <= v)
    if q.get("last_modified_time"):
        since = _parse_zoho_time(q["last_modified_time"])
        if since is not None:
            checks.append(lambda i: (_parse_zoho_time(i["last_modified_time"]) or since) >= since)
    if not checks:
        return records
    return [i for i in records if all(check(i) for check in checks)]


def _parse_zoho_time(text: str) -> datetime | None:
    text = text.strip().replace(" ", "+")
    for fmt in ("%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%d"):
        try:
            value = datetime.strptime(text, fmt)
        except ValueError:
            continue
        return value if value.tzinfo else value.replace(tzinfo=IST_TZ)
    return None
