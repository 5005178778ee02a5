"""Switchable faults: each one, their self-clearing counts, and reset (Python and HTTP)."""

from __future__ import annotations

import threading
import time

import pytest
import requests

# --- Zoho -------------------------------------------------------------------------------------


def test_expire_tokens_after_n_requests_hits_mid_pagination(sandbox, zoho) -> None:
    token = zoho.token
    sandbox.set_faults(zoho_expire_tokens_after_requests=1)
    page1 = zoho.get("/invoices", status="overdue", page=1)
    assert page1.status_code == 200
    page2 = zoho.get("/invoices", status="overdue", page=2, token=token)
    assert page2.status_code == 401
    fresh = zoho.refresh()["access_token"]
    assert zoho.get("/invoices", status="overdue", page=2, token=fresh).status_code == 200
    assert zoho.get("/invoices", status="overdue", page=1, token=fresh).status_code == 200  # fault is spent
    assert sandbox.get_faults()["zoho_expire_tokens_after_requests"] == 0


def test_zoho_429_fault(sandbox, zoho) -> None:
    zoho.token  # noqa: B018
    sandbox.set_faults(zoho_429=2)
    for _ in range(2):
        response = zoho.get("/invoices")
        assert response.status_code == 429 and response.json()["code"] == 44
        assert response.headers["X-Rate-Limit-Reset"] == "1"
    assert zoho.get("/invoices").status_code == 200


def test_zoho_1070_fault(sandbox, zoho) -> None:
    zoho.token  # noqa: B018
    sandbox.set_faults(zoho_1070=1)
    response = zoho.get("/invoices")
    assert response.status_code == 429 and response.json()["code"] == 1070
    assert zoho.get("/invoices").status_code == 200


def test_quota_exhausted_stays_until_cleared(sandbox, zoho) -> None:
    zoho.token  # noqa: B018
    sandbox.set_faults(zoho_quota_exhausted=True)
    for _ in range(2):
        response = zoho.get("/invoices")
        assert response.status_code == 429 and response.json()["code"] == 45
    sandbox.set_faults(zoho_quota_exhausted=False)
    assert zoho.get("/invoices").status_code == 200


def test_zoho_5xx_json_and_html(sandbox, zoho) -> None:
    zoho.token  # noqa: B018
    sandbox.set_faults(zoho_5xx=1)
    response = zoho.get("/invoices")
    assert response.status_code == 500 and response.json() == {"code": 500, "message": "Internal error"}
    sandbox.set_faults(zoho_5xx=1, zoho_5xx_status=502)
    response = zoho.get("/invoices")
    assert response.status_code == 502 and response.headers["Content-Type"].startswith("text/html")
    assert "<html>" in response.text
    assert zoho.get("/invoices").status_code == 200


def test_error_envelope_with_http_200(sandbox, zoho) -> None:
    zoho.token  # noqa: B018
    sandbox.set_faults(zoho_error_envelope_200=1)
    response = zoho.get("/invoices", status="overdue")
    assert response.status_code == 200
    assert response.json()["code"] != 0 and "invoices" not in response.json()
    sandbox.set_faults(zoho_error_envelope_200=1, zoho_error_envelope_code=57,
                       zoho_error_envelope_message="You are not authorized to perform this operation")
    assert zoho.get("/invoices").json()["code"] == 57
    assert zoho.get("/invoices").json()["code"] == 0


def test_zoho_latency(sandbox, zoho) -> None:
    zoho.token  # noqa: B018
    sandbox.set_faults(zoho_latency_ms=150)
    started = time.monotonic()
    assert zoho.get("/organizations", org=False).status_code == 200
    assert time.monotonic() - started >= 0.15


def test_duplicate_row_can_be_switched_off(sandbox, zoho) -> None:
    sandbox.set_faults(zoho_duplicate_overdue_row=False)
    page1 = zoho.get("/invoices", status="overdue").json()["invoices"]
    page2 = zoho.get("/invoices", status="overdue", page=2).json()["invoices"]
    assert len(page1) + len(page2) == 320
    assert not {r["invoice_id"] for r in page1} & {r["invoice_id"] for r in page2}


def test_amounts_as_strings(sandbox, zoho) -> None:
    sandbox.set_faults(zoho_amounts_as_strings=True)
    row = zoho.get("/invoices", status="overdue", per_page=1).json()["invoices"][0]
    assert isinstance(row["total"], str) and isinstance(row["balance"], str)
    assert float(row["total"]) == sandbox.overdue_invoices()[0]["total"]


# --- WhatsApp ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("code", "status"), [(130429, 400), (131026, 400), (190, 401), (132001, 400),
                                              (131056, 400), (131000, 500), (368, 400)])
def test_counted_whatsapp_errors(sandbox, wa, code: int, status: int) -> None:
    sandbox.set_faults(whatsapp_errors=[{"code": code, "count": 2}])
    for _ in range(2):
        response = wa.send()
        assert response.status_code == status
        err = response.json()["error"]
        assert err["code"] == code and err["error_data"]["details"] and err["fbtrace_id"]
    assert sandbox.messages() == []
    assert wa.send().status_code == 200


def test_whatsapp_error_status_override(sandbox, wa) -> None:
    sandbox.set_faults(whatsapp_errors=[{"code": 130429, "count": 1, "status": 429}])
    assert wa.send().status_code == 429


def test_whatsapp_error_for_one_recipient_matches_normalised_digits(sandbox, wa, reminder_body) -> None:
    sandbox.set_faults(whatsapp_errors=[{"code": 131026, "to": "+919820012345"}])
    for to in ("+91 98200 12345", "919820012345", "+919820012345"):
        response = wa.send(reminder_body(to=to))
        assert response.status_code == 400 and response.json()["error"]["code"] == 131026
    assert wa.send(reminder_body(to="+919820099999")).status_code == 200
    assert [m["to"] for m in sandbox.messages()] == ["+919820099999"]


def test_5xx_without_envelope_not_recorded(sandbox, wa) -> None:
    sandbox.set_faults(whatsapp_5xx_no_envelope=2)
    first, second = wa.send(), wa.send()
    assert {first.status_code, second.status_code} == {502, 503}
    for r in (first, second):
        assert r.headers["Content-Type"].startswith("text/html")
    assert sandbox.messages() == []
    assert wa.send().status_code == 200


def test_5xx_after_meta_accepted_is_recorded(sandbox, wa) -> None:
    sandbox.set_faults(whatsapp_5xx_no_envelope=1, whatsapp_5xx_accepted=True)
    assert wa.send().status_code == 502
    assert len(sandbox.messages()) == 1


def test_drop_after_accept_records_then_closes_the_connection(sandbox, wa) -> None:
    sandbox.set_faults(whatsapp_drop_after_accept=1)
    with pytest.raises(requests.ConnectionError):
        wa.send()
    assert len(sandbox.messages()) == 1
    assert sandbox.requests(service="whatsapp")[-1]["outcome"] == "dropped"
    assert wa.send().status_code == 200
    assert len(sandbox.messages()) == 2


def test_hang_after_k_accepted(sandbox, wa) -> None:
    sandbox.set_faults(whatsapp_hang_after=1, whatsapp_hang_seconds=0.4)
    started = time.monotonic()
    assert wa.send().status_code == 200
    assert time.monotonic() - started < 0.3
    started = time.monotonic()
    assert wa.send().status_code == 200
    assert time.monotonic() - started >= 0.4
    assert len(sandbox.messages()) == 2


def test_hanging_send_is_recorded_before_it_answers(sandbox, wa) -> None:
    sandbox.set_faults(whatsapp_hang_after=0, whatsapp_hang_seconds=30)
    with pytest.raises(requests.Timeout):
        wa.send(timeout=0.5)
    assert len(sandbox.messages()) == 1
    assert sandbox.requests(service="whatsapp")[-1]["outcome"] == "delayed"


def test_stop_releases_hanging_requests(reminder_body) -> None:
    from sandbox import Sandbox

    sb = Sandbox(invoices=5, whatsapp_hang_after=0, whatsapp_hang_seconds=30).start()
    url = f"{sb.url}/v23.0/{sb.credentials['phone_number_id']}/messages"
    outcome: list[object] = []

    def send() -> None:
        try:
            outcome.append(requests.post(url, json=reminder_body(), timeout=10,
                                         headers={"Authorization": f"Bearer {sb.credentials['whatsapp_token']}"}))
        except requests.RequestException as exc:  # pragma: no cover - either outcome is fine
            outcome.append(exc)

    body_thread = threading.Thread(target=send)
    body_thread.start()
    time.sleep(0.2)
    started = time.monotonic()
    sb.stop()
    body_thread.join(5)
    assert not body_thread.is_alive() and time.monotonic() - started < 3
    assert len(sb.messages()) == 1 and outcome


def test_whatsapp_latency(sandbox, wa) -> None:
    sandbox.set_faults(whatsapp_latency_ms=150)
    started = time.monotonic()
    assert wa.send().status_code == 200
    assert time.monotonic() - started >= 0.15


# --- the fault switchboard --------------------------------------------------------------------


def test_unknown_fault_names_are_refused(sandbox, http) -> None:
    with pytest.raises(ValueError, match="zoho_typo"):
        sandbox.set_faults(zoho_typo=1)
    response = http.post(f"{sandbox.url}/_sandbox/faults", json={"zoho_typo": 1})
    assert response.status_code == 400 and "zoho_typo" in response.json()["error"]


def test_faults_over_http_and_reset(sandbox, zoho, wa, http) -> None:
    zoho.token  # noqa: B018
    current = http.post(f"{sandbox.url}/_sandbox/faults", json={"zoho_429": 3, "whatsapp_rate_cap": 5}).json()
    assert current["faults"]["zoho_429"] == 3
    assert http.get(f"{sandbox.url}/_sandbox/faults").json()["faults"]["whatsapp_rate_cap"] == 5
    assert zoho.get("/invoices").status_code == 429
    wa.send()
    assert http.post(f"{sandbox.url}/_sandbox/reset", json={"faults_only": True}).json() == {"status": "reset"}
    assert sandbox.get_faults()["zoho_429"] == 0 and sandbox.get_faults()["whatsapp_rate_cap"] == 80
    assert len(sandbox.messages()) == 1  # faults_only keeps messages
    assert zoho.get("/invoices").status_code == 200
    http.post(f"{sandbox.url}/_sandbox/reset")
    assert sandbox.messages() == [] and sandbox.requests() == []
    assert zoho.get("/invoices").status_code == 401  # tokens are gone too
    assert "access_token" in zoho.refresh()  # the seeded refresh token is back


def test_reset_returns_to_constructor_baseline() -> None:
    from sandbox import Sandbox

    sb = Sandbox(invoices=10, zoho_rate_limit_per_minute=1000, whatsapp_rate_cap=5)
    sb.set_faults(zoho_rate_limit_per_minute=1, whatsapp_rate_cap=1)
    sb.reset()
    assert sb.get_faults()["zoho_rate_limit_per_minute"] == 1000
    assert sb.get_faults()["whatsapp_rate_cap"] == 5


def test_reset_restores_seeded_data(sandbox) -> None:
    before = sandbox.overdue_invoices()
    sandbox.patch_invoice(before[0]["invoice_id"], balance=0, status="paid")
    assert len(sandbox.overdue_invoices()) == len(before) - 1
    sandbox.reset()
    assert sandbox.overdue_invoices() == before
