"""WhatsApp Cloud API imitation: auth, validation like Meta, success shape, recording, rate cap."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
import requests


def error_of(response: requests.Response) -> dict:
    body = response.json()
    assert set(body) == {"error"}
    err = body["error"]
    assert {"message", "type", "code", "error_data", "fbtrace_id"} <= set(err)
    assert err["error_data"]["messaging_product"] == "whatsapp" and err["error_data"]["details"]
    assert err["fbtrace_id"].startswith("A")
    return err


def test_success_shape_and_recording(wa, sandbox) -> None:
    response = wa.send()
    assert response.status_code == 200
    body = response.json()
    assert body["messaging_product"] == "whatsapp"
    assert body["contacts"] == [{"input": "+919820012345", "wa_id": "919820012345"}]
    [message] = body["messages"]
    assert message["id"].startswith("wamid.") and message["message_status"] == "accepted"
    [received] = sandbox.messages()
    assert received["wamid"] == message["id"]
    assert received["to"] == "+919820012345" and received["wa_id"] == "919820012345"
    assert received["template"] == "payment_reminder" and received["language"] == "en"
    assert received["parameters"] == {"party_name": "Rajesh Enterprises", "invoice_number": "INV-000138",
                                      "amount_due": "₹22,000.00", "due_date": "20 June 2026"}
    assert received["text"] == ("Dear Rajesh Enterprises, Invoice INV-000138 for ₹22,000.00 was due on "
                                "20 June 2026. Kindly arrange payment. Reply here for any queries.")
    assert received["phone_number_id"] == sandbox.credentials["phone_number_id"]
    assert received["received_at"].endswith("Z")


def test_wamids_are_unique(wa, sandbox) -> None:
    ids = {wa.send().json()["messages"][0]["id"] for _ in range(20)}
    assert len(ids) == 20


def test_messages_control_endpoint(wa, sandbox, http) -> None:
    wa.send()
    assert http.get(f"{sandbox.url}/_sandbox/messages").json() == {"messages": sandbox.messages()}


def test_language_without_policy_and_text_messages_are_accepted(wa, reminder_body) -> None:
    body = reminder_body()
    del body["template"]["language"]["policy"]
    assert wa.send(body).status_code == 200
    text = {"messaging_product": "whatsapp", "to": "+919820012345", "type": "text", "text": {"body": "Hello"}}
    assert wa.send(text).status_code == 200


@pytest.mark.parametrize(("to", "wa_id"), [
    ("+91 98200 12345", "919820012345"),
    ("(+91) 98200-12345", "919820012345"),
    ("919820012345", "919820012345"),
    ("9820012345", "919820012345"),  # no '+': the business number's country code is prepended
    ("+1-925-921-9201", "19259219201"),
])
def test_recipient_normalisation(wa, reminder_body, to: str, wa_id: str) -> None:
    response = wa.send(reminder_body(to=to))
    assert response.status_code == 200
    assert response.json()["contacts"] == [{"input": to, "wa_id": wa_id}]


@pytest.mark.parametrize("to", ["N/A", "12345", "09820012345", "+91 98200 1234x", ""])
def test_unparseable_recipient_is_code_100(wa, reminder_body, sandbox, to: str) -> None:
    response = wa.send(reminder_body(to=to))
    assert response.status_code == 400
    assert error_of(response)["code"] == 100
    assert sandbox.messages() == []


def test_bad_and_missing_token_is_190(wa, sandbox, http) -> None:
    for headers in ({"Authorization": "Bearer EAAGnope"}, {}, {"Authorization": f"OAuth {sandbox.credentials['whatsapp_token']}"}):
        response = http.post(wa.url, json={}, headers=headers)
        assert response.status_code == 401
        err = error_of(response)
        assert err["code"] == 190 and err["type"] == "OAuthException"
    assert "Error validating access token" in error_of(wa.send(token="EAAGnope"))["message"]


def test_unknown_phone_number_id_is_100_graph_method_exception(sandbox, http) -> None:
    response = http.post(f"{sandbox.url}/v23.0/123456789/messages", json={},
                         headers={"Authorization": f"Bearer {sandbox.credentials['whatsapp_token']}"})
    assert response.status_code == 400
    err = error_of(response)
    assert err["code"] == 100 and err["type"] == "GraphMethodException"
    assert "Object with ID '123456789' does not exist" in err["message"]


def mutate(body: dict, path: list, value: object = None, delete: bool = False) -> dict:
    body = copy.deepcopy(body)
    target = body
    for key in path[:-1]:
        target = target[key]
    if delete:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return body


PARAMS = ["template", "components", 0, "parameters"]


@pytest.mark.parametrize(("change", "code"), [
    (lambda b: mutate(b, ["messaging_product"], delete=True), 100),
    (lambda b: mutate(b, ["messaging_product"], "sms"), 100),
    (lambda b: mutate(b, ["to"], delete=True), 100),
    (lambda b: mutate(b, ["type"], "sticker"), 100),
    (lambda b: mutate(b, ["template", "name"], "payment_reminder_v2"), 132001),
    (lambda b: mutate(b, ["template", "language", "code"], "hi"), 132001),
    (lambda b: mutate(b, PARAMS, b["template"]["components"][0]["parameters"][:3]), 132000),
    (lambda b: mutate(b, PARAMS + [0, "parameter_name"], "customer"), 132000),
    (lambda b: mutate(b, ["template", "components"], []), 132000),
    (lambda b: mutate(b, PARAMS + [0, "parameter_name"], delete=True), 100),
    (lambda b: mutate(b, PARAMS + [0, "text"], ""), 100),
    (lambda b: mutate(b, PARAMS + [0, "text"], "Rajesh\nEnterprises"), 100),
    (lambda b: mutate(b, PARAMS + [0, "text"], "Rajesh\tEnterprises"), 100),
    (lambda b: mutate(b, PARAMS + [0, "text"], "Rajesh     Enterprises"), 100),
    (lambda b: mutate(b, ["template", "language", "policy"], "fallback"), 100),
])
def test_validation_errors_like_meta(wa, sandbox, reminder_body, change, code: int) -> None:
    response = wa.send(change(reminder_body()))
    assert response.status_code == 400
    assert error_of(response)["code"] == code
    assert sandbox.messages() == []


def test_four_spaces_are_still_fine(wa, reminder_body) -> None:
    assert wa.send(reminder_body(party_name="Rajesh    Enterprises")).status_code == 200


def test_error_details_explain(wa, reminder_body) -> None:
    body = mutate(reminder_body(), PARAMS + [0, "text"], "line\nbreak")
    details = error_of(wa.send(body))["error_data"]["details"]
    assert "new-line/tab" in details and "4 consecutive spaces" in details
    wrong_count = mutate(reminder_body(), PARAMS, [])
    assert "expected number of params (4)" in error_of(wa.send(wrong_count))["error_data"]["details"]


def test_invalid_json_body(wa, sandbox, http) -> None:
    response = http.post(wa.url, data=b"{not json", headers={
        "Authorization": f"Bearer {sandbox.credentials['whatsapp_token']}", "Content-Type": "application/json"})
    assert response.status_code == 400 and error_of(response)["code"] == 100


def test_seeded_templates(sandbox) -> None:
    templates = sandbox.templates()
    stages = {name for name in templates if name.startswith("reminder_")}
    assert set(templates) - stages == {"payment_reminder", "invoice_created", "payment_received"}
    assert len(stages) == 12  # 6 stages x (one invoice, several): tests/rules checks them against the YAML
    for spec in templates.values():
        assert spec["language"] == "en" and spec["parameter_format"] == "named"
        for name in spec["parameters"]:
            assert "{{" + name + "}}" in spec["body"]
    assert templates["payment_received"]["parameters"] == ["party_name", "amount_received", "invoice_number",
                                                           "balance_due"]


def test_rate_cap_is_130429_and_nothing_recorded(sandbox, reminder_body) -> None:
    sandbox.set_faults(whatsapp_rate_cap=10)
    url = f"{sandbox.url}/v23.0/{sandbox.credentials['phone_number_id']}/messages"
    headers = {"Authorization": f"Bearer {sandbox.credentials['whatsapp_token']}"}

    def send(i: int) -> requests.Response:
        return requests.post(url, json=reminder_body(to=f"+9198200{i:05d}"), headers=headers, timeout=10)

    with ThreadPoolExecutor(max_workers=20) as pool:
        responses = list(pool.map(send, range(20)))
    ok = [r for r in responses if r.status_code == 200]
    limited = [r for r in responses if r.status_code != 200]
    assert len(ok) == 10 and len(limited) == 10
    for r in limited:
        assert r.status_code == 400 and error_of(r)["code"] == 130429
    assert len(sandbox.messages()) == 10


def test_a_message_counts_when_it_arrives_not_when_its_latency_is_over(sandbox, wa) -> None:
    """Meta counts throughput at arrival: the sandbox's own latency wait (late on a busy CPU) is not the sender's."""
    sandbox.set_faults(whatsapp_latency_ms=400)
    before = datetime.now(UTC)
    assert wa.send().status_code == 200
    after = datetime.now(UTC)
    (message,) = sandbox.messages()
    arrived = datetime.fromisoformat(message["received_at"].replace("Z", "+00:00"))
    assert before - timedelta(milliseconds=1) <= arrived < before + timedelta(milliseconds=200) < after


def test_every_sliding_second_holding_a_late_finished_request_stays_under_the_cap(sandbox) -> None:
    """Requests finish out of order (each waits on its own thread): one that arrived at 0.5 s and finished
    last is refused, as the second ending at the 0.9 s arrival would otherwise hold three under a cap of 2."""
    whatsapp = sandbox.whatsapp
    assert not whatsapp._over_cap(100.0, 2, keep=2.0)
    whatsapp.window[:] = [100.0, 100.9]
    assert whatsapp._over_cap(100.5, 2, keep=2.0)
    assert not whatsapp._over_cap(101.85, 2, keep=2.0)  # the second (100.85, 101.85] holds 100.9 only
    assert whatsapp.window == [100.0, 100.9]
    assert not whatsapp._over_cap(103.5, 2, keep=2.0) and whatsapp.window == []  # forgotten past ``keep``


def test_rate_cap_status_can_be_429(sandbox, wa) -> None:
    sandbox.set_faults(whatsapp_rate_cap=1, whatsapp_rate_limit_status=429)
    assert wa.send().status_code == 200
    limited = wa.send()
    assert limited.status_code == 429 and error_of(limited)["code"] == 130429


def test_handles_a_hundred_concurrent_sends(sandbox, reminder_body) -> None:
    sandbox.set_faults(whatsapp_latency_ms=200, whatsapp_rate_cap=1000)
    url = f"{sandbox.url}/v23.0/{sandbox.credentials['phone_number_id']}/messages"
    headers = {"Authorization": f"Bearer {sandbox.credentials['whatsapp_token']}"}

    def send(i: int) -> int:
        return requests.post(url, json=reminder_body(to=f"+9198201{i:05d}"), headers=headers, timeout=10).status_code

    with ThreadPoolExecutor(max_workers=120) as pool:
        statuses = list(pool.map(send, range(120)))
    assert statuses == [200] * 120
    assert len(sandbox.messages()) == 120


def test_phone_number_info(sandbox, http) -> None:
    url = f"{sandbox.url}/v23.0/{sandbox.credentials['phone_number_id']}"
    info = http.get(url, headers={"Authorization": f"Bearer {sandbox.credentials['whatsapp_token']}"}).json()
    assert info["verified_name"] == "Sharma Traders"
    assert info["display_phone_number"] == "+91 22 4000 1234"
    assert info["quality_rating"] == "GREEN" and info["id"] == sandbox.credentials["phone_number_id"]
    bad = http.get(url, headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 401 and error_of(bad)["code"] == 190


def test_unknown_graph_path_is_404(sandbox, http) -> None:
    response = http.get(f"{sandbox.url}/v23.0/{sandbox.credentials['phone_number_id']}/whatever",
                        headers={"Authorization": f"Bearer {sandbox.credentials['whatsapp_token']}"})
    assert response.status_code == 404 and "error" in response.json()


def test_whatsapp_log_keeps_body_and_hides_token(wa, sandbox, reminder_body) -> None:
    wa.send()
    [entry] = sandbox.requests(service="whatsapp")
    assert entry["json"] == reminder_body()
    assert entry["headers"]["Authorization"].startswith("Bearer sha256:")
    assert sandbox.credentials["whatsapp_token"] not in repr(entry)
    assert entry["status"] == 200 and entry["code"] is None


def test_signed_status_webhook(wa, sandbox, http) -> None:
    wamid = wa.send().json()["messages"][0]["id"]
    raw, headers = sandbox.status_webhook(wamid, "delivered")
    expected = hmac.new(sandbox.credentials["webhook_secret"].encode(), raw, hashlib.sha256).hexdigest()
    assert headers["X-Hub-Signature-256"] == "sha256=" + expected
    status = json.loads(raw)["entry"][0]["changes"][0]["value"]["statuses"][0]
    assert status["id"] == wamid and status["status"] == "delivered" and status["recipient_id"] == "919820012345"
    over_http = http.post(f"{sandbox.url}/_sandbox/whatsapp/inbound-webhook",
                          json={"from": "919820012345", "text": "STOP"}).json()
    inbound = json.loads(over_http["body"])["entry"][0]["changes"][0]["value"]["messages"][0]
    assert inbound["text"]["body"] == "STOP" and inbound["from"] == "919820012345"
