"""Meta's callbacks over real HTTP: the handshake, signatures, and what each event does to the ledger."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta

import pytest

from tests.delivery.helpers import (
    APP_SECRET,
    VERIFY_TOKEN,
    add_row,
    install_whatsapp,
    naive_utc,
    opaque,
    preference,
    reply,
    row,
    serve,
    sign,
    signed,
    status,
    suppression,
    table,
    unix,
)

NUMBER, WA_ID = "+919820012345", "919820012345"


def post(http, url, document, secret=APP_SECRET):
    raw, headers = signed(document, secret)
    return http.post(url, data=raw, headers=headers, timeout=10)


# -- GET: Meta's verification handshake --------------------------------------------------------------


def test_handshake_echoes_the_challenge_only_for_the_verify_token(sqlite_ledger, secrets, http) -> None:
    with serve() as (base, _):
        url = f"{base}/webhook"
        ok = http.get(url, params={"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1158201444"})
        assert (ok.status_code, ok.text) == (200, "1158201444")
        assert ok.headers["content-type"].startswith("text/plain")
        refused = [
            {"hub.mode": "subscribe", "hub.verify_token": "wrong", "hub.challenge": "1"},
            {"hub.mode": "unsubscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1"},
            {"hub.mode": "subscribe", "hub.challenge": "1"},
            {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN[:-1], "hub.challenge": "1"},
            {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN + "\u00e9", "hub.challenge": "1"},
            {},
        ]
        for params in refused:
            answer = http.get(url, params=params)
            assert answer.status_code == 403, params
            assert "1" not in answer.text
        script = http.get(url, params={"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN,
                                       "hub.challenge": "<script>alert(1)</script>"})
        assert script.status_code == 400 and "<script>" not in script.text


def test_handshake_refused_while_no_verify_token_is_configured(sqlite_ledger, set_connection, http) -> None:
    install_whatsapp(set_connection, verify_token=None)
    with serve() as (base, _):
        answer = http.get(f"{base}/webhook", params={"hub.mode": "subscribe", "hub.verify_token": "", "hub.challenge": "7"})
    assert answer.status_code == 403


# -- POST: the signature ------------------------------------------------------------------------------


def test_only_bodies_signed_with_the_app_secret_are_stored(ledger, endpoint, http) -> None:
    row_id = add_row(ledger.engine, "982000000000001", wamid="wamid.SIG1")
    good, headers = signed(status("wamid.SIG1", "delivered"))
    other, _ = signed(status("wamid.SIG1", "read"))
    forged = [
        ("missing header", good, {"Content-Type": "application/json"}),
        ("tampered body", good.replace(b"delivered", b"read"), headers),
        ("wrong secret", good, {**headers, "X-Hub-Signature-256": sign(good, "not-the-app-secret")}),
        ("signature of another body", good, {**headers, "X-Hub-Signature-256": sign(other)}),
        ("sha1 scheme", good, {**headers, "X-Hub-Signature-256": "sha1=" + sign(good)[7:47]}),
        ("bare hex", good, {**headers, "X-Hub-Signature-256": sign(good)[7:]}),
        ("truncated", good, {**headers, "X-Hub-Signature-256": sign(good)[:-2]}),
        ("non-ascii", good, {**headers, "X-Hub-Signature-256": "sha256=" + "é" * 64}),
        ("empty", good, {**headers, "X-Hub-Signature-256": ""}),
    ]
    for what, body, hdrs in forged:
        answer = http.post(endpoint, data=body, headers=hdrs)
        assert answer.status_code == 401, (what, answer.status_code, answer.text)
        assert APP_SECRET not in answer.text
    assert table(ledger.engine, "whatsapp_events") == []
    assert row(ledger.engine, row_id)["delivery_status"] is None
    accepted = http.post(endpoint, data=good, headers=headers)
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["stored"] == 1
    assert row(ledger.engine, row_id)["delivery_status"] == "delivered"


def test_without_an_app_secret_everything_is_refused_and_nothing_stored(sqlite_ledger, set_connection, http) -> None:
    install_whatsapp(set_connection, app_secret=None)
    with serve() as (base, _):
        raw, headers = signed(status("wamid.X", "delivered"))
        answer = http.post(f"{base}/webhook", data=raw, headers=headers)
    assert answer.status_code == 503 and answer.headers["Retry-After"]
    assert "app_secret" not in answer.text and "whatsapp_default" not in answer.text  # callers learn nothing
    assert table(sqlite_ledger.engine, "whatsapp_events") == []


def test_a_storm_of_forged_signatures_costs_one_lookup_per_interval(sqlite_ledger, secrets, http) -> None:
    with serve(secret_max_age=60.0, secret_min_refresh=60.0) as (base, app):
        raw, headers = signed(status("wamid.X", "delivered"), "forged")
        answers = {http.post(f"{base}/webhook", data=raw, headers=headers).status_code for _ in range(50)}
        lookups = app.state.resources.secrets.lookups
    assert answers == {401}
    assert lookups <= 2  # the first read, then at most one early re-read in the interval


def test_a_rotated_app_secret_is_picked_up_on_the_first_mismatch(sqlite_ledger, set_connection, http) -> None:
    install_whatsapp(set_connection)
    with serve(secret_max_age=3600.0, secret_min_refresh=0.0) as (base, _):
        first = post(http, f"{base}/webhook", status("wamid.R1", "sent"))
        install_whatsapp(set_connection, app_secret="rotated-secret-0123456789abcdef")
        new = post(http, f"{base}/webhook", status("wamid.R2", "sent"), secret="rotated-secret-0123456789abcdef")
        old = post(http, f"{base}/webhook", status("wamid.R3", "sent"))
    assert (first.status_code, new.status_code, old.status_code) == (200, 200, 401)


def test_oversized_bodies_are_refused_before_reading(sqlite_ledger, secrets, http) -> None:
    with serve(max_body_bytes=2048) as (base, _):
        document = status("wamid.BIG", "sent")
        document["padding"] = "x" * 4096
        answer = post(http, f"{base}/webhook", document)
    assert answer.status_code == 413
    assert table(sqlite_ledger.engine, "whatsapp_events") == []


# -- statuses -----------------------------------------------------------------------------------------


def test_duplicates_are_stored_once_and_change_nothing(ledger, endpoint, http) -> None:
    row_id = add_row(ledger.engine, "982000000000002", wamid="wamid.DUP")
    document = status("wamid.DUP", "delivered")
    answers = [post(http, endpoint, document).json() for _ in range(3)]
    assert [(a["stored"], a["duplicates"]) for a in answers] == [(1, 0), (0, 1), (0, 1)]
    [event] = table(ledger.engine, "whatsapp_events")
    assert (event["deliveries"], event["outcome"], event["message_row_id"]) == (3, "delivered", row_id)
    once = row(ledger.engine, row_id)
    post(http, endpoint, document)
    assert row(ledger.engine, row_id) == once


FOUR = ("sent", "delivered", "read", "failed")


def test_every_arrival_order_ends_in_the_same_row(ledger, endpoint, http) -> None:
    """All 24 orders of sent/delivered/read/failed, and all 6 of sent/delivered/read: order never matters."""
    base = unix() - 100
    stamp = {"sent": base, "failed": base + 5, "delivered": base + 10, "read": base + 20}
    cases = []
    for n, order in enumerate(itertools.chain(itertools.permutations(FOUR), itertools.permutations(FOUR[:3]))):
        wamid = f"wamid.ORDER{n:02d}"
        cases.append((order, wamid, add_row(ledger.engine, f"9820000001{n:05d}", wamid=wamid)))
    # Interleaved, as Meta's retries mix messages: every row gets its statuses in its own order.
    for step in range(4):
        for order, wamid, _ in cases:
            if step < len(order):
                answer = post(http, endpoint, status(wamid, order[step], at=stamp[order[step]], code=131049,
                                                        title="Meta chose not to deliver"))
                assert answer.status_code == 200, answer.text
    keep = ("status", "delivery_status", "sent_at", "delivered_at", "read_at", "failed_at",
            "delivery_error_code", "delivery_error_title", "delivery_error_class")
    finals = {}
    for order, _wamid, row_id in cases:
        final = row(ledger.engine, row_id)
        finals[order] = tuple(naive_utc(final[k]) if k.endswith("_at") else final[k] for k in keep)
    with_failed = {v for k, v in finals.items() if "failed" in k}
    without = {v for k, v in finals.items() if "failed" not in k}
    assert len(with_failed) == 1 and len(without) == 1, finals
    [final] = with_failed
    as_dict = dict(zip(keep, final, strict=True))
    assert as_dict["status"] == "sent" and as_dict["delivery_status"] == "read"  # it reached the phone
    assert as_dict["delivered_at"] == naive_utc(datetime.fromtimestamp(stamp["delivered"], UTC))
    assert as_dict["read_at"] == naive_utc(datetime.fromtimestamp(stamp["read"], UTC))
    assert (as_dict["delivery_error_code"], as_dict["delivery_error_class"]) == (131049, "MarketingRefused")
    [plain] = without
    assert dict(zip(keep, plain, strict=True))["delivery_error_code"] is None
    assert dict(zip(keep, plain, strict=True))["delivery_status"] == "read"


def test_delivered_after_read_changes_nothing_but_its_timestamp(ledger, endpoint, http) -> None:
    row_id = add_row(ledger.engine, "982000000000003", wamid="wamid.LATE")
    at = unix() - 60
    post(http, endpoint, status("wamid.LATE", "read", at=at + 30))
    before = row(ledger.engine, row_id)
    answer = post(http, endpoint, status("wamid.LATE", "delivered", at=at)).json()
    after = row(ledger.engine, row_id)
    assert answer["outcomes"] == {"stale": 1}
    assert after["delivery_status"] == "read" and before["delivery_status"] == "read"
    assert naive_utc(after["delivered_at"]) == naive_utc(datetime.fromtimestamp(at, UTC))
    assert {k: v for k, v in after.items() if k not in ("delivered_at", "delivery_updated_at")} == {
        k: v for k, v in before.items() if k not in ("delivered_at", "delivery_updated_at")}


def test_a_failed_status_is_classified_and_the_number_remembered(ledger, endpoint, http) -> None:
    row_id = add_row(ledger.engine, "982000000000004", wamid="wamid.FAIL", recipient="+919811122233")
    answer = post(http, endpoint, status("wamid.FAIL", "failed", recipient="919811122233", code=131026))
    assert answer.status_code == 200
    failed = row(ledger.engine, row_id)
    assert (failed["status"], failed["delivery_status"]) == ("sent", "failed")  # Meta accepted it, then failed it
    assert (failed["delivery_error_code"], failed["delivery_error_class"]) == (131026, "NotOnWhatsApp")
    assert failed["delivery_error_title"] == "Message Undeliverable."
    assert suppression(ledger.engine, "+919811122233") == "not_on_whatsapp"
    later = datetime.now(UTC) + timedelta(days=31)
    assert suppression(ledger.engine, "+919811122233", now=later) is None  # remembered for 30 days by default
    assert suppression(ledger.engine, "+919811122233", now=later, not_on_whatsapp_days=60) == "not_on_whatsapp"
    # Whoever writes to us is on WhatsApp after all.
    post(http, endpoint, reply("919811122233", "hello"))
    assert suppression(ledger.engine, "+919811122233") is None


def test_an_unknown_row_is_resolved_by_its_status_without_resending(ledger, endpoint, http) -> None:
    row_id = add_row(ledger.engine, "982000000000005", status="unknown", wamid=None)
    answer = post(http, endpoint, status("wamid.LOST", "delivered", opaque=opaque("982000000000005")))
    assert answer.json()["outcomes"] == {"resolved_unknown": 1}
    resolved = row(ledger.engine, row_id)
    assert (resolved["status"], resolved["wamid"], resolved["delivery_status"]) == ("sent", "wamid.LOST", "delivered")
    assert resolved["reason"] == "confirmed_by_meta"
    # Later statuses now match by wamid.
    assert post(http, endpoint, status("wamid.LOST", "read")).json()["outcomes"] == {"read": 1}


def test_a_receipt_that_beats_the_send_answer_resolves_the_row_later(ledger, endpoint, http) -> None:
    from zoho_whatsapp.ledger.delivery import delivery_summary, resolve_unknown_by_receipts
    from zoho_whatsapp.ledger.schema import messages

    row_id = add_row(ledger.engine, "982000000000006", status="sending", wamid=None)
    post(http, endpoint, status("wamid.EARLY", "sent", opaque=opaque("982000000000006")))
    assert row(ledger.engine, row_id)["status"] == "sending"  # the claim's holder settles it, not the webhook
    with ledger.engine.begin() as conn:  # ... and its answer was lost
        conn.execute(messages.update().where(messages.c.id == row_id).values(status="unknown", reason="no_answer"))
        assert delivery_summary(conn, occasion="2026-11-25")["unknown_waiting"] == 1
        assert resolve_unknown_by_receipts(conn) == 1
        summary = delivery_summary(conn, occasion="2026-11-25")
    assert row(ledger.engine, row_id)["status"] == "sent"
    assert summary == {"by_delivery": {"sent": 1}, "failed_by_class": {}, "unknown_waiting": 0, "unknown_to_check": 0}


def test_statuses_for_messages_not_in_the_ledger_are_kept_unmatched(ledger, endpoint, http) -> None:
    answer = post(http, endpoint, status("wamid.FOREIGN", "delivered", opaque="not:ours"))
    assert answer.json()["outcomes"] == {"unmatched": 1}
    [event] = table(ledger.engine, "whatsapp_events")
    assert event["outcome"] == "unmatched" and event["applied_at"] is not None


def test_an_event_that_cannot_be_applied_is_kept_and_applied_later(sqlite_ledger, secrets, http, monkeypatch) -> None:
    from zoho_whatsapp.ledger import delivery

    row_id = add_row(sqlite_ledger.engine, "982000000000007", wamid="wamid.RETRY")
    real = delivery.apply_status
    monkeypatch.setattr(delivery, "apply_status", lambda *a, **k: 1 / 0)
    with serve() as (base, _):
        first = post(http, f"{base}/webhook", status("wamid.RETRY", "delivered"))
        assert first.status_code == 200 and first.json()["stored"] == 1  # stored durably, acknowledged
        assert row(sqlite_ledger.engine, row_id)["delivery_status"] is None
        monkeypatch.setattr(delivery, "apply_status", real)
        post(http, f"{base}/webhook", status("wamid.OTHER", "sent"))  # the next delivery applies the backlog
    assert row(sqlite_ledger.engine, row_id)["delivery_status"] == "delivered"
    assert all(e["applied_at"] is not None for e in table(sqlite_ledger.engine, "whatsapp_events"))


# -- replies and opt-outs -----------------------------------------------------------------------------


def test_stop_and_start_change_the_suppression_list(ledger, endpoint, http) -> None:
    add_row(ledger.engine, "982000000000010", wamid="wamid.R10", recipient=NUMBER, customer="Naidu Motors Pvt Ltd")
    now = unix()
    assert suppression(ledger.engine, NUMBER) is None
    assert post(http, endpoint, reply(WA_ID, "  Stop ", at=now)).json()["outcomes"] == {"opt_out": 1}
    assert suppression(ledger.engine, NUMBER) == "opted_out"
    assert post(http, endpoint, reply(WA_ID, "START", at=now + 10)).json()["outcomes"] == {"opt_in": 1}
    assert suppression(ledger.engine, NUMBER) is None
    # A STOP that Meta delivers late (older than the START) does not win.
    assert post(http, endpoint, reply(WA_ID, "stop", at=now + 5)).json()["outcomes"] == {"opt_out_stale": 1}
    assert suppression(ledger.engine, NUMBER) is None
    assert post(http, endpoint, reply(WA_ID, "बंद करें", at=now + 20)).json()["outcomes"] == {"opt_out": 1}
    assert suppression(ledger.engine, NUMBER) == "opted_out"
    replies = table(ledger.engine, "whatsapp_replies")
    assert [r["consent_action"] for r in replies] == ["opt_out", "opt_in", "opt_out", "opt_out"]
    assert {r["customer_name"] for r in replies} == {"Naidu Motors Pvt Ltd"}
    assert {r["phone_masked"] for r in replies} == {"+91 98XXXXXX45"}
    dump = json.dumps([{k: str(v) for k, v in r.items()} for r in replies])
    assert WA_ID not in dump and NUMBER not in dump  # replies keep the masked number only


def test_a_reply_is_kept_for_follow_up_with_its_customer(ledger, endpoint, http) -> None:
    add_row(ledger.engine, "982000000000011", wamid="wamid.A", recipient=NUMBER, customer="Priya Textiles")
    add_row(ledger.engine, "982000000000012", wamid="wamid.B", recipient=NUMBER, customer="Priya Textiles (Unit 2)")
    post(http, endpoint, reply(WA_ID, "paid yesterday", context="wamid.A"))
    post(http, endpoint, reply(WA_ID, "wrong amount " + "x" * 900))
    post(http, endpoint, reply("919900011122", "who is this?"))
    first, second, stranger = table(ledger.engine, "whatsapp_replies")
    assert (first["text"], first["customer_name"], first["invoice_number"]) == ("paid yesterday", "Priya Textiles",
                                                                                   "INV-000011")
    assert first["consent_action"] is None
    assert second["customer_name"] == "Priya Textiles (Unit 2)"  # no context: the latest row to that number
    assert len(second["text"]) == 500 and second["text"].startswith("wrong amount")
    assert stranger["customer_id"] is None and stranger["phone_masked"] == "+91 99XXXXXX22"
    assert suppression(ledger.engine, NUMBER) is None


def test_marketing_preferences_are_recorded_but_do_not_stop_reminders(ledger, endpoint, http) -> None:
    from zoho_whatsapp.ledger.delivery import MARKETING_STOPPED

    now = unix()
    assert post(http, endpoint, preference(WA_ID, "stop", at=now)).json()["outcomes"] == {"marketing_stop": 1}
    assert suppression(ledger.engine, NUMBER) is None
    assert suppression(ledger.engine, NUMBER, reasons=(MARKETING_STOPPED,)) == MARKETING_STOPPED
    post(http, endpoint, preference(WA_ID, "resume", at=now + 1))
    assert suppression(ledger.engine, NUMBER, reasons=(MARKETING_STOPPED,)) is None


def test_bulk_check_for_planning_and_the_opt_out_winning(ledger, endpoint, http) -> None:
    from zoho_whatsapp.ledger.delivery import suppressed_recipients

    post(http, endpoint, reply("919811100001", "UNSUBSCRIBE"))
    post(http, endpoint, status("wamid.NOW", "failed", recipient="919811100002", code=131026))
    post(http, endpoint, status("wamid.BOTH", "failed", recipient="919811100001", code=131026))
    with ledger.engine.connect() as conn:
        found = suppressed_recipients(conn, ["+919811100001", "+919811100002", "+919811100003"])
    assert found == {"+919811100001": "opted_out", "+919811100002": "not_on_whatsapp"}


@pytest.mark.parametrize("keyword", ["STOP REMINDERS", "stop reminders!", "रोकें", "Unsubscribe."])
def test_configured_and_default_keywords(sqlite_ledger, set_connection, http, keyword) -> None:
    install_whatsapp(set_connection, opt_out_keywords="STOP, STOP REMINDERS, UNSUBSCRIBE, रोकें, CANCEL")
    with serve() as (base, _):
        assert post(http, f"{base}/webhook", reply(WA_ID, keyword)).json()["outcomes"] == {"opt_out": 1}
        assert post(http, f"{base}/webhook", reply("919811100009", "cancel")).json()["outcomes"] == {"opt_out": 1}
