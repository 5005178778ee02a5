"""Deterministic seed data: credentials, organizations, customers, invoices, payments, templates.

Everything is derived from ``random.Random`` instances keyed by the seed, so the same seed gives
the same data (dates are relative to ``today``).  Amounts are ``Decimal``; the store renders them.
"""

from __future__ import annotations

import random
import string
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from .stage_templates import STAGE_TEMPLATES

IST = "+0530"
ORG_NAME = "Sharma Traders Pvt Ltd"
INR_ID = "982000000000064"
USD_ID = "982000000000066"
USD_TO_INR = Decimal("83.25")

# --- WhatsApp templates (all language "en", parameter_format "named") ---------------------
TEMPLATES: dict[str, dict[str, Any]] = {
    "payment_reminder": {
        "name": "payment_reminder",
        "language": "en",
        "category": "UTILITY",
        "status": "APPROVED",
        "parameter_format": "named",
        "parameters": ["party_name", "invoice_number", "amount_due", "due_date"],
        "body": (
            "Dear {{party_name}}, Invoice {{invoice_number}} for {{amount_due}} was due on "
            "{{due_date}}. Kindly arrange payment. Reply here for any queries."
        ),
    },
    "invoice_created": {
        "name": "invoice_created",
        "language": "en",
        "category": "UTILITY",
        "status": "APPROVED",
        "parameter_format": "named",
        "parameters": ["party_name", "invoice_number", "invoice_amount", "due_date"],
        "body": (
            "Dear {{party_name}}, Invoice {{invoice_number}} for {{invoice_amount}} has been "
            "issued and is due on {{due_date}}. Thank you for your business."
        ),
    },
    "payment_received": {
        "name": "payment_received",
        "language": "en",
        "category": "UTILITY",
        "status": "APPROVED",
        "parameter_format": "named",
        "parameters": ["party_name", "amount_received", "invoice_number", "balance_due"],
        "body": (
            "Dear {{party_name}}, we have received {{amount_received}} against Invoice "
            "{{invoice_number}}. Balance due: {{balance_due}}. Thank you!"
        ),
    },
}

# The reminder-stage templates are approved too (a WABA holds them whatever the data).
TEMPLATES.update(STAGE_TEMPLATES)

# --- name parts ------------------------------------------------------------------------
_FIRST = (
    "Rajesh Priya Sharma Gupta Patel Mehta Agarwal Reddy Iyer Nair Kapoor Malhotra Bansal Joshi "
    "Desai Shah Verma Singh Kumar Chopra Bhatia Khanna Saxena Pillai Menon Rao Das Banerjee Ghosh "
    "Jain Sethi Arora Goyal Mittal Kulkarni Deshpande Naidu Hegde Lakshmi Ganesh Shree Sai Balaji "
    "Krishna Vinayak Annapurna Mahalaxmi Sunrise Bharat Navbharat Hindustan Deccan Konark Ashoka"
).split()
_TRADE = (
    "Enterprises|Textiles|Traders|Industries|Agencies|Exports|Steel|Pharma|Electricals|Hardware|"
    "Garments|Foods|Logistics|Motors|Plastics|Chemicals|Packaging|Furnishings|Jewellers|"
    "Constructions|Associates|& Sons|Brothers|Impex|Distributors|Polymers|Auto Parts|Paper Mills|"
    "Spices|Handlooms"
).split("|")
_SUFFIX = ("", "", "", " Pvt Ltd", " LLP", " & Co")
_CITIES = (
    ("Mumbai", "Maharashtra", "MH", "400001"),
    ("Pune", "Maharashtra", "MH", "411001"),
    ("Delhi", "Delhi", "DL", "110001"),
    ("Bengaluru", "Karnataka", "KA", "560001"),
    ("Chennai", "Tamil Nadu", "TN", "600001"),
    ("Hyderabad", "Telangana", "TS", "500001"),
    ("Ahmedabad", "Gujarat", "GJ", "380001"),
    ("Surat", "Gujarat", "GJ", "395003"),
    ("Kolkata", "West Bengal", "WB", "700001"),
    ("Jaipur", "Rajasthan", "RJ", "302001"),
    ("Ludhiana", "Punjab", "PB", "141001"),
    ("Indore", "Madhya Pradesh", "MP", "452001"),
    ("Coimbatore", "Tamil Nadu", "TN", "641001"),
    ("Kochi", "Kerala", "KL", "682001"),
    ("Nagpur", "Maharashtra", "MH", "440001"),
    ("Lucknow", "Uttar Pradesh", "UP", "226001"),
)
_PEOPLE_FIRST = (
    "Rajesh Priya Amit Sunita Vikram Anjali Suresh Kavita Rahul Neha Arjun Pooja Manoj Deepa "
    "Sanjay Ritu Anil Meera Kiran Rohit Swati Prakash Lata Ramesh Geeta Naveen Divya Harish"
).split()
_PEOPLE_LAST = (
    "Sharma Gupta Patel Mehta Agarwal Reddy Iyer Nair Kapoor Joshi Desai Shah Verma Singh Kumar "
    "Rao Das Jain Arora Kulkarni Menon Pillai Banerjee"
).split()

# Numbers that turn up in the mobile field of real ledgers.
FOREIGN_NUMBERS = ("+1-925-921-9201", "+44 7911 123456", "+971 50 123 4567")
LANDLINE_NUMBERS = ("022 2345 6789", "080-41234567")
JUNK_NUMBERS = ("N/A", "12345")
# Leading digits of Indian mobile series that libphonenumber fully recognises as MOBILE, so a
# well-typed seeded number is always a valid WhatsApp target (9x weighted as in real ledgers).
MOBILE_PREFIXES = ("98", "99", "97", "96", "95", "94", "93", "92", "91", "90", "98", "99", "90",
                   "70", "72", "74", "84", "85", "69", "60")


def _mobile_styles(m: str) -> list[str]:
    """Ways people type the Indian mobile ``m`` (10 digits)."""
    return [
        m,
        "0" + m,
        "91" + m,
        f"+91 {m[:5]} {m[5:]}",
        f"0091 {m[:5]} {m[5:]}",
        f"(+91) {m[:5]}-{m[5:]}",
        f"{m[:5]}-{m[5:]}",
        "+91" + m,
        f"+91-{m}",
        f"0{m[:5]}-{m[5:]}",
    ]


def make_credentials(seed: int) -> dict[str, str]:
    """Deterministic credentials, so ``--print-connections`` matches a server run with the seed."""
    rng = random.Random(f"credentials:{seed}")
    upper = string.ascii_uppercase + string.digits
    alnum = string.ascii_letters + string.digits
    hexd = "0123456789abcdef"
    return {
        "zoho_client_id": "1000." + "".join(rng.choice(upper) for _ in range(30)),
        "zoho_client_secret": "".join(rng.choice(hexd) for _ in range(42)),
        "zoho_refresh_token": "1000."
        + "".join(rng.choice(hexd) for _ in range(32))
        + "."
        + "".join(rng.choice(hexd) for _ in range(32)),
        "organization_id": str(60000000000 + rng.randrange(10**9)),
        "whatsapp_token": "EAAG" + "".join(rng.choice(alnum) for _ in range(180)),
        "phone_number_id": str(106000000000000 + rng.randrange(10**12)),
        "webhook_secret": "".join(rng.choice(hexd) for _ in range(32)),
    }


def make_organization(org_id: str, name: str, *, default: bool) -> dict[str, Any]:
    slug = "".join(ch for ch in name.lower() if ch.isalnum())[:20]
    return {
        "organization_id": org_id,
        "name": name,
        "contact_name": "Rakesh Sharma",
        "email": f"accounts@{slug}.example.in",
        "is_default_org": default,
        "plan_type": 130,
        "tax_group_enabled": True,
        "zi_migration_status": 0,
        "plan_name": "PROFESSIONAL",
        "plan_period": "Yearly",
        "language_code": "en",
        "fiscal_year_start_month": 3,
        "account_created_date": "2019-04-01",
        "account_created_date_formatted": "01/04/2019",
        "time_zone": "Asia/Calcutta",
        "is_org_active": True,
        "currency_id": INR_ID,
        "currency_code": "INR",
        "currency_symbol": "₹",
        "currency_format": "##,##,##0.00",
        "price_precision": 2,
        "country_code": "IN",
        "country": "India",
        "mode": "production",
        "user_role": "admin",
    }


# Zoho's ids are unique across organizations: another organization's are this far from the main one's.
ORG_ID_STRIDE = 10**7


def second_org_id(seed: int, index: int) -> str:
    rng = random.Random(f"org:{seed}:{index}")
    return str(60000000000 + rng.randrange(10**9))


def _stamp(day: date, rng: random.Random) -> str:
    return f"{day.isoformat()}T{rng.randrange(9, 19):02d}:{rng.randrange(60):02d}:{rng.randrange(60):02d}{IST}"


def _amount(rng: random.Random, usd: bool) -> Decimal:
    if usd:
        return Decimal(rng.randrange(5, 121) * 100)  # 500 .. 12,000 USD
    return Decimal(rng.randrange(10, 501) * 500)  # 5,000 .. 2,50,000 INR


class _Names:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.used: set[str] = set()

    def take(self, preferred: str | None = None) -> str:
        if preferred and preferred not in self.used:
            self.used.add(preferred)
            return preferred
        rng = self.rng
        base = f"{rng.choice(_FIRST)} {rng.choice(_TRADE)}"
        suffix = rng.choice(_SUFFIX)
        name = base + suffix
        if name in self.used:
            name = f"{base} {rng.choice(_CITIES)[0]}{suffix}"
        n = 2
        while name in self.used:
            name = f"{base} ({n}){suffix}"
            n += 1
        self.used.add(name)
        return name


def build(seed: int, invoices: int, today: date, org_id: str, *, index: int = 0) -> dict[str, Any]:
    """Build contacts, invoices and payments for the organization ``index`` (0: the main one).

    ``invoices`` is the number of invoices with status ``overdue`` (what the overdue listing
    returns, without its duplicated row).  Besides those the ledger holds paid invoices, sent
    invoices not yet due (one due today), drafts, and a few customers without overdue invoices.
    Another organization's data is drawn apart (its own customers, numbers and ids; invoice
    numbers start at INV-000001 again, as each Zoho organization numbers its own).
    """
    rng = random.Random(f"data:{seed}" if not index else f"data:{seed}:org{index}")
    n_overdue = max(0, int(invoices))
    n_cust = max(1, min(n_overdue, round(n_overdue / 2.5))) if n_overdue else 1
    n_extra_cust = max(2, n_cust // 20)
    names = _Names(rng)

    # ---- phone numbers for customers -------------------------------------------------
    total_cust = n_cust + n_extra_cust
    mobiles: list[str] = []
    seen: set[str] = {"9820012345"}
    while len(mobiles) < total_cust:
        m = rng.choice(MOBILE_PREFIXES) + "".join(rng.choice(string.digits) for _ in range(8))
        if m not in seen:
            seen.add(m)
            mobiles.append(m)
    if n_cust >= 2 and not index:
        mobiles[1] = "9820012345"  # "Priya Textiles", as in the integration guide

    specials: dict[int, tuple[str, str]] = {}
    order = list(range(2, n_cust))
    rng.shuffle(order)
    n_empty = max(1, round(n_cust * 0.05)) if n_cust >= 20 else (1 if n_cust >= 3 else 0)
    plan = [("empty", "")] * n_empty
    plan += [("foreign", num) for num in FOREIGN_NUMBERS]
    plan += [("landline", num) for num in LANDLINE_NUMBERS]
    plan += [("junk", num) for num in JUNK_NUMBERS]
    plan += [("shared", "")]
    for idx, item in zip(order, plan, strict=False):
        specials[idx] = item
    shared_with = mobiles[0]

    contacts: list[dict[str, Any]] = []
    base_id = 982000000010000 + index * ORG_ID_STRIDE
    for i in range(total_cust):
        preferred = {0: "Rajesh Enterprises", 1: "Priya Textiles"}.get(i) if not index else None
        name = names.take(preferred)
        city, state, state_code, pin = rng.choice(_CITIES)
        pfirst, plast = rng.choice(_PEOPLE_FIRST), rng.choice(_PEOPLE_LAST)
        kind, special = specials.get(i, ("mobile", ""))
        m = mobiles[i]
        styles = _mobile_styles(m)
        mobile = styles[rng.randrange(len(styles))] if i > 1 else (m if i == 1 else styles[3])
        phone = ""
        if rng.random() < 0.35:
            phone = f"0{rng.choice(('22', '20', '11', '80', '44', '40'))} {rng.randrange(2000, 9999)} {rng.randrange(1000, 9999)}"
        usd = False
        if kind == "empty":
            mobile = ""
            if rng.random() < 0.5:
                phone = styles[0]  # the mobile was typed into the phone field
        elif kind == "foreign":
            mobile = special
            usd = special.startswith("+1")
        elif kind in ("landline", "junk"):
            mobile = special
        elif kind == "shared":
            mobile = f"{shared_with[:5]}-{shared_with[5:]}"  # same owner, two firms, typed differently
        whatsapp = rng.random() > 0.1
        cid = str(base_id + i * 7)
        slug = "".join(ch for ch in name.lower() if ch.isalnum())[:18]
        created = today - timedelta(days=rng.randrange(200, 1500))
        person = {
            "contact_person_id": str(int(cid) + 2),
            "salutation": rng.choice(("Mr.", "Ms.", "")),
            "first_name": pfirst,
            "last_name": plast,
            "email": f"{pfirst.lower()}.{plast.lower()}@{slug}.example.in",
            "phone": phone,
            "mobile": mobile,
            "designation": rng.choice(("Proprietor", "Partner", "Director", "Accounts Manager")),
            "department": "",
            "skype": "",
            "is_primary_contact": True,
            "communication_preference": {
                "is_email_enabled": True,
                "is_sms_enabled": False,
                "is_whatsapp_enabled": whatsapp,
            },
            "enable_portal": False,
        }
        persons = [person]
        if rng.random() < 0.15:
            am = rng.choice(MOBILE_PREFIXES) + "".join(rng.choice(string.digits) for _ in range(8))
            persons.append(
                {
                    **person,
                    "contact_person_id": str(int(cid) + 4),
                    "salutation": "",
                    "first_name": "Accounts",
                    "last_name": "Dept",
                    "email": f"accounts@{slug}.example.in",
                    "phone": "",
                    "mobile": am,
                    "designation": "Accountant",
                    "is_primary_contact": False,
                    "communication_preference": {
                        "is_email_enabled": True,
                        "is_sms_enabled": False,
                        "is_whatsapp_enabled": True,
                    },
                }
            )
        address = {
            "attention": f"{pfirst} {plast}",
            "address": f"{rng.randrange(1, 400)}, {rng.choice(('MG Road', 'Station Road', 'Market Yard', 'Industrial Estate', 'Ring Road'))}",
            "street2": "",
            "city": city,
            "state": state,
            "state_code": state_code,
            "zip": pin,
            "country": "India" if not usd else "U.S.A",
            "fax": "",
            "phone": phone if rng.random() < 0.6 else "",
        }
        contacts.append(
            {
                "contact_id": cid,
                "contact_name": name,
                "company_name": name,
                "first_name": pfirst,
                "last_name": plast,
                "email": person["email"],
                "phone": phone,
                "mobile": mobile,
                "contact_type": "customer",
                "customer_sub_type": "business",
                "status": "inactive" if (i > 1 and rng.random() < 0.02) else "active",
                "payment_terms": rng.choice((15, 30, 45)),
                "currency_code": "USD" if usd else "INR",
                "currency_id": USD_ID if usd else INR_ID,
                "currency_symbol": "$" if usd else "₹",
                "gst_no": "" if usd else f"{rng.randrange(10, 37)}AAACS{rng.randrange(1000, 9999)}A1Z{rng.randrange(10)}",
                "gst_treatment": "overseas" if usd else "business_gst",
                "place_of_contact": "" if usd else state_code,
                "website": "",
                "contact_persons": persons,
                "billing_address": address,
                "shipping_address": dict(address),
                "notes": "",
                "created_time": _stamp(created, rng),
                "last_modified_time": _stamp(created + timedelta(days=rng.randrange(0, 150)), rng),
                "_kind": kind,
                "_org": org_id,
            }
        )
    # a second USD customer if the ledger is big enough
    if n_cust > 30:
        c = contacts[order[-1]] if order else contacts[0]
        if c["_kind"] == "mobile":
            c.update(currency_code="USD", currency_id=USD_ID, currency_symbol="$", gst_no="", gst_treatment="overseas")

    # ---- invoices ----------------------------------------------------------------------
    raw: list[dict[str, Any]] = []

    def add(customer: dict[str, Any], status: str, due: date, terms: int) -> dict[str, Any]:
        usd = customer["currency_code"] == "USD"
        total = _amount(rng, usd)
        inv = {
            "customer_id": customer["contact_id"],
            "customer_name": customer["contact_name"],
            "status": status,
            "date": due - timedelta(days=terms),
            "due_date": due,
            "payment_terms": terms,
            "currency_code": customer["currency_code"],
            "currency_id": customer["currency_id"],
            "total": total,
            "balance": total,
            "_org": org_id,
        }
        raw.append(inv)
        return inv

    overdue_customers = contacts[:n_cust]
    extra_customers = contacts[n_cust:]
    for k in range(n_overdue):
        cust = overdue_customers[k] if k < n_cust else overdue_customers[rng.randrange(n_cust)]
        terms = cust["payment_terms"]
        inv = add(cust, "overdue", today - timedelta(days=rng.randrange(1, 121)), terms)
        if rng.random() < 0.2:  # part-paid
            paid = (inv["total"] * Decimal(rng.randrange(10, 90)) / 100).quantize(Decimal("100"))
            if Decimal(0) < paid < inv["total"]:
                inv["balance"] = inv["total"] - paid
    overdue_rows = [r for r in raw if r["status"] == "overdue"]
    if len(overdue_rows) >= 10:
        for inv in rng.sample(overdue_rows, 2):  # stale status: overdue but fully paid
            inv["balance"] = Decimal(0)
            inv["_stale_status"] = True

    everyone = overdue_customers + extra_customers
    for _ in range(max(2, n_overdue // 10)):
        cust = rng.choice(everyone)
        inv = add(cust, "paid", today - timedelta(days=rng.randrange(5, 200)), cust["payment_terms"])
        inv["balance"] = Decimal(0)
    for j in range(max(2, n_overdue // 40)):
        cust = extra_customers[j % len(extra_customers)] if j < len(extra_customers) else rng.choice(everyone)
        add(cust, "sent", today + timedelta(days=rng.randrange(1, 31)), cust["payment_terms"])
    add(extra_customers[0], "sent", today, extra_customers[0]["payment_terms"])  # due today: not overdue
    for _ in range(max(1, n_overdue // 80)):
        cust = rng.choice(everyone)
        add(cust, "draft", today + timedelta(days=rng.randrange(5, 45)), cust["payment_terms"])

    raw.sort(key=lambda r: (r["date"], r["customer_id"]))
    inv_base = 982000000500000 + index * ORG_ID_STRIDE
    invoices_out: list[dict[str, Any]] = []
    payments: list[dict[str, Any]] = []
    pay_base = 982000000900000 + index * ORG_ID_STRIDE
    for n, r in enumerate(raw, start=1):
        created = _stamp(r["date"], rng)
        inv_id = str(inv_base + n * 3)
        reminders = rng.randrange(0, 3) if r["status"] == "overdue" else 0
        last_rem = (r["due_date"] + timedelta(days=rng.randrange(1, 4))).isoformat() if reminders else ""
        inv = {
            "invoice_id": inv_id,
            "invoice_number": f"INV-{n:06d}",
            "customer_id": r["customer_id"],
            "customer_name": r["customer_name"],
            "status": r["status"],
            "date": r["date"].isoformat(),
            "due_date": r["due_date"].isoformat(),
            "payment_terms": r["payment_terms"],
            "payment_terms_label": f"Net {r['payment_terms']}",
            "currency_id": r["currency_id"],
            "currency_code": r["currency_code"],
            "total": r["total"],
            "balance": r["balance"],
            "created_time": created,
            "last_modified_time": created,
            "reminders_sent": reminders,
            "last_reminder_sent_date": last_rem,
            "reference_number": f"PO-{rng.randrange(1000, 99999)}" if rng.random() < 0.4 else "",
            "is_emailed": r["status"] != "draft",
            "is_viewed_by_client": rng.random() < 0.3,
            "salesperson_name": "",
            "exchange_rate": float(USD_TO_INR) if r["currency_code"] == "USD" else 1.0,
            "invoice_url": f"https://books.zoho.in/SecurePayment?CInvoiceID={rng.getrandbits(160):040x}",
            "last_payment_date": "",
            "_org": r["_org"],
        }
        if r["status"] not in ("draft",) and rng.random() < 0.04:
            inv["_row_phone"] = True  # this list row carries phone + billing_address.phone
        invoices_out.append(inv)
        paid_amount = r["total"] - r["balance"]
        if paid_amount > 0:
            pdate = min(today, r["date"] + timedelta(days=rng.randrange(1, 40)))
            inv["last_payment_date"] = pdate.isoformat()
            if r.get("_stale_status"):
                inv["last_modified_time"] = _stamp(pdate, rng)
            payments.append(
                {
                    "payment_id": str(pay_base + (len(payments) + 1) * 3),
                    "payment_number": str(len(payments) + 1),
                    "customer_id": r["customer_id"],
                    "customer_name": r["customer_name"],
                    "payment_mode": rng.choice(("banktransfer", "cash", "check", "UPI")),
                    "date": pdate.isoformat(),
                    "amount": paid_amount,
                    "currency_code": r["currency_code"],
                    "reference_number": f"UTR{rng.randrange(10**11, 10**12)}",
                    "invoices": [
                        {
                            "invoice_id": inv_id,
                            "invoice_number": inv["invoice_number"],
                            "date": inv["date"],
                            "invoice_amount": r["total"],
                            "amount_applied": paid_amount,
                            "balance_amount": r["balance"],
                        }
                    ],
                    "created_time": _stamp(pdate, rng),
                    "_org": r["_org"],
                }
            )
    return {"contacts": contacts, "invoices": invoices_out, "payments": payments}
