"""Hundreds of generated hostile requests at the real endpoint over real HTTP, on SQLite and PostgreSQL:
never a 5xx, never stored, never sent."""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.webhooks.helpers import (
    INVOICES,
    PAYMENTS,
    flat_invoice_body,
    headers,
    inbox_rows,
    install_secret,
    live_server,
)
from zoho_whatsapp.webhooks.app import MAX_BODY_BYTES

JSON = "application/json"
# Characters no stored or sent text may hold (control, bidi override, zero-width, BOM, tags, surrogates, ...).
UNSAFE = ["\x00", "\x1b", "\x7f", "\u202e", "\u202d", "\u2066", "\u200b", "\u2060", "\ufeff", "\u00ad",
          "\U000e0001", "\U000e0041", "\U000e007f", "\ud800", "\udbff", "\udc00", "\u2028", "\u2029",
          "\ue000", "\U000f0000"]
# Ordinary text from the scripts Indian customers' names are written in, to hide the unsafe character in.
SCRIPTS = "Priya Textiles प्रिया टेक्सटाइल्स ப்ரியா ప్రియ ಪ್ರಿಯಾ প্রিয়া ਪ੍ਰਿਯਾ ഫ്രിയ 😀 Ünïcödé"

SEED = 20261125
REQUIRED = {  # (path, wrapper key or None) -> fields a valid body cannot do without
    (INVOICES, None): ("customer_name", "total", "due_date"),
    (INVOICES, "invoice"): ("customer_name", "total", "due_date"),
    (PAYMENTS, None): ("payment_id", "amount"),
    (PAYMENTS, "payment"): ("payment_id", "amount"),
}
# Values that make each kind of field wrong (never merely unusual: each one must be refused).
WRONG = {
    "text": [[], {}, True, 1.5, "x" * 300, "bad\x00name", {"name": "A"}],
    "amount": ["abc", "1,000", "NaN", "Infinity", -5, [], {}, True, "", "1e99999", "0x10"],
    "date": ["2026-13-45", "tomorrow", 20260707, "07/07/2026", [], True, "2026-02-30"],
    "id": [[], {}, True, 1.5, "x" * 100, "a\nb"],
}
KIND_OF = {"customer_name": "text", "total": "amount", "amount": "amount", "due_date": "date", "payment_id": "id"}


@pytest.fixture
def secret(sandbox, set_connection) -> str:
    value = sandbox.credentials["webhook_secret"]
    install_secret(set_connection, value)
    return value


def valid_bodies(sandbox: Any) -> dict[tuple[str, str | None], dict[str, Any]]:
    invoice = sandbox.invoices("sent")[0]
    payment = sandbox.add_payment(invoice["invoice_id"], amount=100)
    return {
        (INVOICES, None): flat_invoice_body(invoice, "9820012345"),
        (INVOICES, "invoice"): {"invoice": sandbox.invoice(invoice["invoice_id"])},
        (PAYMENTS, None): {"payment_id": payment["payment_id"], "amount": 100, "invoice_id": invoice["invoice_number"],
                           "customer_name": invoice["customer_name"], "mobile": "9820012345"},
        (PAYMENTS, "payment"): {"payment": payment},
    }


def random_json(rng: random.Random, depth: int = 0) -> Any:
    """Any JSON value: nested containers, huge and tiny numbers, wrong types, unicode."""
    roll = rng.random()
    if depth < 6 and roll < 0.2:
        return [random_json(rng, depth + 1) for _ in range(rng.randrange(4))]
    if depth < 6 and roll < 0.4:
        return {random_text(rng, 12): random_json(rng, depth + 1) for _ in range(rng.randrange(4))}
    return rng.choice([
        None, True, False, 0, -1, 10 ** rng.randrange(15, 400), -(10 ** rng.randrange(1, 40)), rng.random() * 1e300,
        5e-324, random_text(rng, 30), "", " ", "1e999", "0x1F", "١٢٣", "½",
    ])


def random_text(rng: random.Random, length: int) -> str:
    return "".join(rng.choice(SCRIPTS) for _ in range(rng.randrange(1, length)))


def hostile_requests(sandbox: Any, rng: random.Random) -> Iterator[tuple[str, str, bytes, str | None]]:
    """(path, what was broken, body, content type): the review's classes plus random JSON."""
    for path, what, body in bad_bodies(sandbox, rng):
        yield path, what, body, JSON
    valid = valid_bodies(sandbox)

    def record_of(key: tuple[str, str | None], body: dict[str, Any]) -> dict[str, Any]:
        return body[key[1]] if key[1] else body

    texts = {INVOICES: ("customer_name", "invoice_number", "customer_id", "mobile", "status"),
             PAYMENTS: ("customer_name", "payment_id", "customer_id", "mobile")}
    for key, body in valid.items():
        path = key[0]
        for field in texts[path]:
            for _ in range(4):  # an unsafe character hidden among ordinary text
                broken = json.loads(json.dumps(body))
                text = random_text(rng, 20)
                cut = rng.randrange(len(text) + 1)
                record_of(key, broken)[field] = text[:cut] + rng.choice(UNSAFE) + text[cut:] + "x"
                yield path, f"unsafe character in {field}", json.dumps(broken).encode(), JSON
        for width in (33, 40, 64, 65, 200):
            broken = json.loads(json.dumps(body))
            broken["organization_id"] = "6" * width
            yield path, f"organization_id of {width}", json.dumps(broken).encode(), JSON
        text = json.dumps(body)
        for _ in range(5):  # a key repeated (at the top or in the record)
            field = rng.choice(REQUIRED[key])
            doubled = text.replace(f'"{field}": ', f'"{field}": {json.dumps(random_json(rng))}, "{field}": ', 1)
            yield path, f"duplicate {field}", doubled.encode(), JSON
        for literal in ("NaN", "Infinity", "-Infinity", "1e400", "-1e400", "9" * 4500):
            field = rng.choice([f for f in REQUIRED[key] if KIND_OF[f] == "amount"])
            broken = json.loads(text)
            record_of(key, broken)[field] = "@@"
            yield path, f"{field}={literal[:12]}", json.dumps(broken).replace('"@@"', literal).encode(), JSON
        for _ in range(25):  # random JSON in place of required fields, among random junk
            broken = json.loads(text)
            record = record_of(key, broken)
            for field in rng.sample(REQUIRED[key], rng.randrange(1, len(REQUIRED[key]) + 1)):
                value = random_json(rng)
                if isinstance(value, str) or (isinstance(value, int | float) and not isinstance(value, bool)):
                    del record[field]  # a random string or number might happen to be right: leave it out
                else:
                    record[field] = value
            for _ in range(rng.randrange(6)):
                record[f"x_{random_text(rng, 8)}"] = random_json(rng)
            yield path, "random JSON in required fields", _dumps(broken), JSON
        for content_type in (None, "", "text/plain", "text/json", "application/xml", "application/json-patch+json",
                             "application/x-www-form-urlencoded", "multipart/form-data; boundary=zz",
                             "application/json; charset=utf-16", "application/json; q=1", "json"):
            yield path, f"content type {content_type!r}", text.encode(), content_type
        yield path, "oversized, chunked", _dumps({**body, "padding": "p" * MAX_BODY_BYTES}), JSON
    for path in (INVOICES, PAYMENTS):
        for _ in range(30):  # random documents of any shape
            document = random_json(rng)
            if not isinstance(document, dict):
                yield path, f"random JSON {type(document).__name__}", _dumps(document), JSON
            else:
                yield path, "random JSON object", _dumps({**document, "due_date": [], "amount": {}}), JSON


def bad_bodies(sandbox: Any, rng: random.Random) -> Iterator[tuple[str, str, bytes]]:
    """(path, what was broken, body) — every one of them must be refused."""
    valid = valid_bodies(sandbox)

    def record_of(key: tuple[str, str | None], body: dict[str, Any]) -> dict[str, Any]:
        return body[key[1]] if key[1] else body

    for key, body in valid.items():
        path = key[0]
        text = json.dumps(body).encode()
        for _ in range(12):  # a proper prefix of a JSON object is never JSON
            cut = rng.randrange(1, len(text))
            yield path, "truncated", text[:cut]
        for field in REQUIRED[key]:
            broken = json.loads(text)
            del record_of(key, broken)[field]
            yield path, f"without {field}", json.dumps(broken).encode()
            for value in WRONG[KIND_OF[field]]:
                broken = json.loads(text)
                record_of(key, broken)[field] = value
                yield path, f"{field}={value!r:.20}", _dumps(broken)
        if key[1]:
            for value in ([], "x", 5, None, True):
                yield path, f"{key[1]} not an object", json.dumps({key[1]: value}).encode()
        for module in ("estimate", "salesorder", "creditnote", "bill", "contact"):
            yield path, f"{module} body", json.dumps({module: record_of(key, json.loads(text))}).encode()
        deep: Any = "x"
        for _ in range(40):
            deep = [deep]
        broken = json.loads(text)
        record_of(key, broken)["custom_fields"] = deep
        yield path, "nested 40 deep", json.dumps(broken).encode()
        yield path, "oversized", _dumps({**json.loads(text), "padding": "p" * MAX_BODY_BYTES})
        yield path, "invalid utf-8", text.replace(b'"', b'"\xff\xfe', 1)
        broken = json.loads(text)
        record_of(key, broken)["currency_code"] = rng.choice(["RUPEES", "₹", "12", "IN"])
        yield path, "bad currency", _dumps(broken)
    for path in (INVOICES, PAYMENTS):
        for _ in range(25):
            blob = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300)))
            if not _is_json_object(blob):
                yield path, "random bytes", blob
        for value in ([], [1, 2], "text", 42, 4.2, None, True, False, [{"invoice_id": "1"}]):
            yield path, f"JSON {type(value).__name__}", json.dumps(value).encode()
        for text in (b"", b"   ", b"\xef\xbb\xbf", b"{", b"}", b'{"a":}', b"{'single': 'quotes'}", b"nul\x00l",
                     b'{"total": -Infinity}', b"[" * 5000, b'{"a":' + b"9" * 5000 + b"}"):
            yield path, f"junk {text[:12]!r}", text
    yield PAYMENTS, "payment_id not numeric", json.dumps({"payment_id": "PAY-1", "amount": 5}).encode()
    yield PAYMENTS, "zero amount", json.dumps({"payment_id": "982000000900001", "amount": 0}).encode()
    yield INVOICES, "no invoice reference", json.dumps({"customer_name": "A", "total": 1, "due_date": "2026-07-07"}).encode()


def _dumps(value: Any) -> bytes:
    return json.dumps(value, allow_nan=True).encode()


def _is_json_object(blob: bytes) -> bool:
    try:
        return isinstance(json.loads(blob), dict)
    except (ValueError, RecursionError):
        return False


def test_generated_hostile_requests_never_500_never_stored_never_sent(sandbox, ledger, secret, run_dag) -> None:
    rng = random.Random(SEED)
    cases = list(hostile_requests(sandbox, rng))
    assert len(cases) >= 500
    answers: Counter[int] = Counter()
    accepted: list[str] = []
    crashed: list[str] = []
    silent: list[str] = []

    def send(case: tuple[str, str, bytes, str | None]) -> tuple[str, httpx.Response]:
        path, what, body, content_type = case
        sent = {**headers(secret), **({"Content-Type": content_type} if content_type is not None else {})}
        if what.startswith("oversized"):
            chunks = (body[i:i + 8192] for i in range(0, len(body), 8192))  # no Content-Length to trust
            return what, http.post(path, content=chunks, headers=sent)
        return what, http.post(path, content=body, headers=sent)

    with live_server() as served, httpx.Client(base_url=served.url, timeout=60) as http:
        with ThreadPoolExecutor(max_workers=4) as pool:
            for what, answer in pool.map(send, cases):
                answers[answer.status_code] += 1
                if answer.status_code >= 500:
                    crashed.append(f"{what}: {answer.status_code} {answer.text[:200]}")
                elif answer.status_code < 400:
                    accepted.append(f"{what}: {answer.status_code}")
                elif not answer.json().get("error"):
                    silent.append(what)  # every refusal says why
    assert crashed == []
    assert accepted == []
    assert silent == []
    assert set(answers) <= {400, 413, 415, 422}, answers
    print(f"FIGURE fuzz ({ledger.engine.dialect.name}, real HTTP): {len(cases)} hostile requests -> "
          f"{dict(sorted(answers.items()))}")
    assert inbox_rows() == []
    assert sandbox.requests() == []  # the endpoint itself asks neither Zoho nor WhatsApp
    result = run_dag("zoho_books_invoice_alerts")
    assert result["state"] == "success"
    assert result["states"] == {"take_events": "success", "send_alert": "skipped"}  # nothing to handle
    assert sandbox.requests(service="whatsapp") == []
    assert sandbox.messages() == []
