"""Hundreds of generated bad bodies at the real endpoint: never a 5xx, never stored, never sent."""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.webhooks.helpers import INVOICES, PAYMENTS, client, flat_invoice_body, headers, inbox_rows, install_secret
from zoho_whatsapp.webhooks.app import MAX_BODY_BYTES

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


def test_generated_bad_bodies_never_500_never_stored_never_sent(sandbox, sqlite_ledger, secret, run_dag) -> None:
    rng = random.Random(SEED)
    cases = list(bad_bodies(sandbox, rng))
    assert len(cases) >= 200
    answers: Counter[int] = Counter()
    accepted: list[str] = []
    crashed: list[str] = []
    post: Callable[..., Any]
    with client() as c:
        post = c.post
        for path, what, body in cases:
            answer = post(path, content=body, headers={**headers(secret), "Content-Type": "application/json"})
            answers[answer.status_code] += 1
            if answer.status_code >= 500:
                crashed.append(f"{path} {what}: {answer.status_code} {answer.text[:200]}")
            elif answer.status_code < 400:
                accepted.append(f"{path} {what}: {answer.status_code}")
            else:
                assert answer.json()["error"], what  # every refusal says why
    assert crashed == []
    assert accepted == []
    assert set(answers) <= {400, 413, 422}, answers
    print(f"FIGURE fuzz: {len(cases)} bad bodies -> {dict(sorted(answers.items()))}")
    assert inbox_rows() == []
    sandbox_before = len(sandbox.requests(service="zoho_books"))
    result = run_dag("zoho_books_invoice_alerts")
    assert result["state"] == "success"
    assert result["states"] == {"take_events": "success", "send_alert": "skipped"}  # nothing to handle
    assert sandbox.requests(service="whatsapp") == []
    assert sandbox.messages() == []
    assert len(sandbox.requests(service="zoho_books")) == sandbox_before
