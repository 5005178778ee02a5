"""Hundreds of generated bodies at the real endpoint: never a 5xx, nothing stored for an invalid one."""

from __future__ import annotations

import copy
import json
import random
from collections import Counter
from collections.abc import Iterator
from typing import Any

from tests.delivery.helpers import add_row, envelope, preference, reply, row, sign, signed, status, table

SEED = 20261129
VALID = {
    "status": status("wamid.FUZZ", "delivered", opaque="60012345678:payment_reminder:982000000000001:2026-11-25"),
    "failed": status("wamid.FUZZ", "failed", code=131026),
    "reply": reply("919820012345", "STOP", message_id="wamid.INFUZZ"),
    "preference": preference("919820012345", "stop"),
}
# Values that make each field of an item wrong (the item must then be left out).
WRONG = {
    "id": [None, 5, 1.5, True, [], {}, "", "has space", "x" * 129, "wamid.\u202eA", "wamid.\x00", "\ud800"],
    "status": [None, "", "DELIVERED", "deleted", "warning", 1, [], {"s": 1}],
    "timestamp": [None, "", "abc", "-5", "1e9", "12345", "99999999999999", -1, 10**20, 1.5, [], "１７８００００００"],
    "recipient_id": [5, "", "+919820012345", "91 98200", "12345", "9" * 16, "٩١٩٨٢", [], {}],
    "from": [None, 5, "", "abc", "+919820012345", "9" * 16, []],
    "type": [None, "", "TEXT", "te xt", 5, "x" * 41],
    "wa_id": [None, 5, "", "abc", "9" * 16],
    "value": [None, "", "STOP", "pause", 1],
    "category": [None, "", "Marketing Messages", 5, "x" * 41],
}
ITEM_FIELDS = {"status": ("id", "status", "timestamp", "recipient_id"), "failed": ("id", "timestamp"),
               "reply": ("id", "from", "type", "timestamp"), "preference": ("wa_id", "value", "category", "timestamp")}


def _items(document: dict[str, Any]) -> list[dict[str, Any]]:
    value = document["entry"][0]["changes"][0]["value"]
    return value.get("statuses") or value.get("messages") or value.get("user_preferences")


def invalid_bodies(rng: random.Random) -> Iterator[tuple[str, bytes, dict[str, str], set[int]]]:
    """(what, body, headers, acceptable answers) — none of them may store anything."""
    good, headers = signed(VALID["status"])
    other, _ = signed(VALID["reply"])
    # 1. not signed by the app secret: 401 before the body is looked at
    for _ in range(40):
        blob = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 200)))
        forged = f"sha256={rng.getrandbits(256):064x}"
        yield "random bytes, random signature", blob, {"X-Hub-Signature-256": forged}, {401}
    for _ in range(30):
        flipped = bytearray(good)
        flipped[rng.randrange(len(flipped))] ^= 1 << rng.randrange(8)
        yield "one bit flipped", bytes(flipped), headers, {401}
    for secret in ("", "wrong", "3f1c0d9e8b7a65544332211000ffeeddccbbaa9", "3F1C0D9E8B7A65544332211000FFEEDDCCBBAA99"):
        yield f"secret {secret!r}", good, {"X-Hub-Signature-256": sign(good, secret or "x")}, {401}
    for value in ("", "sha256=", "sha256", "SHA256=" + sign(good)[7:], sign(other), sign(good) + "00",
                  "sha256=" + sign(good)[7:].upper().replace("A", "G"), sign(good).replace("sha256", "sha512")):
        yield f"signature header {value[:16]!r}", good, {"X-Hub-Signature-256": value}, {401}
    yield "no signature header", good, {}, {401}
    # 2. signed, but not a notification: 400/413/422 and nothing stored
    text = json.dumps(VALID["status"]).encode()
    junk = [b"", b" ", b"{", b"[]", b"null", b"42", b'"x"', b"\xef\xbb\xbf", b"{'a': 1}", b'{"a":NaN}',
            b'{"a": Infinity}', b'{"a":-Infinity}', b'{"object":"whatsapp_business_account","object":"x","entry":[]}',
            b"[" * 3000, b'{"a":' + b"9" * 5000 + b"}", text.replace(b'"', b'"\xff', 1), b"\x00" * 20]
    for blob in junk:
        yield f"junk {blob[:12]!r}", blob, signed(blob)[1], {400, 413, 422}
    for _ in range(30):
        cut = text[: rng.randrange(1, len(text))]
        yield "truncated JSON", cut, signed(cut)[1], {400}
    for _ in range(20):
        blob = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300)))
        yield "signed random bytes", blob, signed(blob)[1], {400, 422}
    for obj in ({}, {"object": "page", "entry": []}, {"object": "whatsapp_business_account"},
                {"object": "whatsapp_business_account", "entry": {}}, {"object": "whatsapp_business_account", "entry": "x"},
                {"object": ["whatsapp_business_account"], "entry": []}, {"object": None, "entry": [{}]}):
        yield f"not a notification {str(obj)[:30]}", *signed(obj), {422}
    deep: Any = "x"
    for _ in range(40):
        deep = {"a": deep}
    yield "nested 40 deep", *signed({**VALID["status"], "deep": deep}), {400}
    big = json.dumps({**VALID["status"], "pad": "p" * (3 * 1024 * 1024)}).encode()
    yield "over 3 MiB", big, signed(big)[1], {413}
    # 3. a signed notification whose every item breaks the documented shape: 200, nothing stored
    for kind, fields in ITEM_FIELDS.items():
        for name in fields:
            for value in WRONG[name if not (kind == "failed" and name == "id") else "id"]:
                document = copy.deepcopy(VALID[kind])
                item = _items(document)[0]
                if value is None:
                    item.pop(name, None)
                else:
                    item[name] = value
                yield f"{kind}.{name}={value!r:.20}", *signed(document), {200}
        for not_item in (None, 1, "x", [], True):
            document = copy.deepcopy(VALID[kind])
            _items(document)[0] = not_item
            yield f"{kind} item {not_item!r}", *signed(document), {200}
    for value in ({"statuses": "x"}, {"messages": {}}, {"statuses": [[]]}, {}):
        yield f"value {str(value)[:20]}", *signed(envelope(value)), {200}
    for change in ([], [None], [{"field": "messages"}], [{"field": "messages", "value": []}],
                   [{"field": "account_update", "value": {"statuses": [{}]}}]):
        document = {"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": change}]}
        yield f"changes {str(change)[:30]}", *signed(document), {200}


def test_generated_bodies_never_500_and_store_nothing_invalid(ledger, endpoint, http) -> None:
    row_id = add_row(ledger.engine, "982000000000001", wamid="wamid.FUZZ")
    before = row(ledger.engine, row_id)
    rng = random.Random(SEED)
    cases = list(invalid_bodies(rng))
    assert len(cases) >= 300
    answers: Counter[int] = Counter()
    wrong: list[str] = []
    for what, body, headers, expected in cases:
        answer = http.post(endpoint, data=body, headers={"Content-Type": "application/json", **headers}, timeout=30)
        answers[answer.status_code] += 1
        if answer.status_code not in expected:
            wrong.append(f"{what}: {answer.status_code} {answer.text[:150]}")
        elif answer.status_code == 200:
            assert answer.json()["stored"] == 0, what
    assert wrong == []
    assert not any(code >= 500 for code in answers)
    print(f"FIGURE whatsapp webhook fuzz ({ledger.engine.dialect.name}): {len(cases)} invalid bodies -> "
          f"{dict(sorted(answers.items()))}, stored 0")
    for name in ("whatsapp_events", "whatsapp_replies", "suppressions"):
        assert table(ledger.engine, name) == [], name
    assert row(ledger.engine, row_id) == before


HOSTILE_TEXT = ["STOP\ud800", "\u202eSTOP", "S\u200bT\u200bO\u200bP", "x" * 5000, "\x00\x01bell\x07", "🙏 paid",
                "", "   ", "बंद\u200d करें"]


def test_hostile_but_valid_items_are_stored_cleanly(ledger, endpoint, http) -> None:
    """Odd values inside well-formed items: stored within the columns' limits, never a 5xx."""
    row_id = add_row(ledger.engine, "982000000000001", wamid="wamid.FUZZ")
    documents = [reply("919820012345", text, message_id=f"wamid.H{n}") for n, text in enumerate(HOSTILE_TEXT)]
    weird = copy.deepcopy(VALID["failed"])
    item = _items(weird)[0]
    item["errors"] = [{"code": 2**40, "title": "t" * 5000 + "\ud800"}]
    item["biz_opaque_callback_data"] = "é" * 300 + ":" * 300
    documents.append(weird)
    answers = []
    for document in documents:
        body, headers = signed(document)
        answers.append(http.post(endpoint, data=body, headers=headers, timeout=30))
    assert [a.status_code for a in answers] == [200] * len(answers), [a.text for a in answers]
    replies = table(ledger.engine, "whatsapp_replies")
    assert [r["text"] for r in replies] == ["STOP", "STOP", "STOP", "x" * 500, "bell", "🙏 paid", None, "   ",
                                            "बंद\u200d करें"]
    assert [r["consent_action"] for r in replies] == ["opt_out"] * 3 + [None] * 5 + ["opt_out"]
    failed = row(ledger.engine, row_id)
    assert failed["delivery_status"] == "failed" and failed["delivery_error_code"] is None  # out of range: dropped
    assert failed["delivery_error_title"] == "t" * 255
