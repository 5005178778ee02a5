"""Zoho Books imitation: auth, organization_id, listings, pagination, details, comments, limits."""

from __future__ import annotations

import threading

import pytest

from sandbox.store import today_ist


def fetch_all(zoho, path: str, key: str, **params) -> tuple[list[dict], list[dict]]:
    rows, contexts, page = [], [], 1
    while True:
        body = zoho.get(path, page=page, **params).json()
        assert body["code"] == 0, body
        rows += body[key]
        contexts.append(body["page_context"])
        if not body["page_context"]["has_more_page"]:
            return rows, contexts
        page += 1


# --- auth and organization ----------------------------------------------------------------


def test_missing_wrong_and_bearer_tokens_are_401_code_57(sandbox, zoho, http) -> None:
    url = f"{sandbox.url}/books/v3/invoices"
    params = {"organization_id": sandbox.credentials["organization_id"]}
    for headers in ({}, {"Authorization": "Zoho-oauthtoken 1000.nope.nope"},
                    {"Authorization": f"Bearer {zoho.token}"}):
        response = http.get(url, params=params, headers=headers)
        assert response.status_code == 401
        assert response.json() == {"code": 57, "message": "You are not authorized to perform this operation"}
        assert "X-Rate-Limit-Limit" in response.headers


def test_organizations_list(zoho, sandbox) -> None:
    body = zoho.get("/organizations", org=False).json()
    assert body["code"] == 0 and body["message"] == "success"
    [org] = body["organizations"]
    assert org["organization_id"] == sandbox.credentials["organization_id"]
    assert org["name"] == "Sharma Traders Pvt Ltd"
    assert (org["country_code"], org["currency_code"], org["currency_symbol"]) == ("IN", "INR", "₹")
    assert org["is_default_org"] is True


def test_second_organization_for_discovery(zoho, sandbox, http) -> None:
    sandbox.set_organizations(2)
    orgs = zoho.get("/organizations", org=False).json()["organizations"]
    assert len(orgs) == 2 and [o["is_default_org"] for o in orgs] == [True, False]
    other = orgs[1]["organization_id"]
    assert zoho.get("/invoices", organization_id=other).json()["invoices"] == []
    added = http.post(f"{sandbox.url}/_sandbox/zoho/organizations", json={"name": "Third Org"}).json()
    assert added["organization"]["name"] == "Third Org"
    assert len(zoho.get("/organizations", org=False).json()["organizations"]) == 3


def test_constructor_organizations_argument() -> None:
    from sandbox import Sandbox

    sb = Sandbox(organizations=2, invoices=10)
    assert len(sb.organizations()) == 2


def test_organization_id_required_and_checked(zoho) -> None:
    missing = zoho.get("/invoices", org=False)
    assert missing.status_code == 400
    assert missing.json()["code"] == 2 and "organization_id" in missing.json()["message"]
    unknown = zoho.get("/invoices", organization_id="123")
    assert unknown.status_code == 400
    assert unknown.json() == {"code": 6041,
                              "message": "This user is not associated with the CompanyID/CompanyName:123."}


def test_unknown_path_and_method(zoho, sandbox, http) -> None:
    response = zoho.get("/nothing-here")
    assert response.status_code == 404 and response.json()["code"] == 5
    put = http.put(f"{sandbox.url}/books/v3/invoices", headers={"Authorization": f"Zoho-oauthtoken {zoho.token}"})
    assert put.status_code == 405 and put.json()["code"] == 37


# --- invoices -------------------------------------------------------------------------------


def test_overdue_pagination_has_more_page_and_one_duplicated_row(zoho, sandbox) -> None:
    rows, contexts = fetch_all(zoho, "/invoices", "invoices", status="overdue")
    truth = sandbox.overdue_invoices()
    assert len(truth) == 320
    assert [c["has_more_page"] for c in contexts] == [True, False]
    assert [c["per_page"] for c in contexts] == [200, 200]
    assert all(c["applied_filter"] == "Status.OverDue" and c["report_name"] == "Invoices" for c in contexts)
    assert len(rows) == 321
    ids = [r["invoice_id"] for r in rows]
    assert ids[199] == ids[200]  # last row of page 1 repeated as first row of page 2
    assert len(set(ids)) == 320
    assert set(ids) == {i["invoice_id"] for i in truth}


def test_filter_by_status_overdue_equals_status_overdue(zoho) -> None:
    a = zoho.get("/invoices", status="overdue").json()
    b = zoho.get("/invoices", filter_by="Status.OverDue").json()
    assert a["invoices"] == b["invoices"]


def test_overdue_rows_look_like_zoho(zoho, sandbox) -> None:
    rows, _ = fetch_all(zoho, "/invoices", "invoices", status="overdue")
    today = today_ist().isoformat()
    for row in rows:
        assert row["invoice_id"].isdigit() and len(row["invoice_id"]) == 15
        assert row["invoice_number"].startswith("INV-") and len(row["invoice_number"]) == 10
        assert row["status"] == "overdue"
        assert row["due_date"] < today
        assert row["due_days"].startswith("Overdue by ")
        assert isinstance(row["total"], float) and isinstance(row["balance"], float)
        assert 0 <= row["balance"] <= row["total"]
        assert row["currency_code"] in ("INR", "USD")
    assert sum(1 for r in rows if "phone" in r) >= 1  # a handful of rows carry a phone field ...
    assert sum(1 for r in rows if "phone" in r) < len(rows) / 5  # ... most do not
    truth = sandbox.overdue_invoices()
    assert sum(1 for r in truth if r["balance"] == 0) == 2  # stale status: overdue with balance 0
    assert any(0 < r["balance"] < r["total"] for r in truth)  # part-paid
    assert any(r["currency_code"] == "USD" for r in truth)


def test_other_statuses_and_due_today(sandbox, zoho) -> None:
    every = sandbox.invoices()
    statuses = {i["status"] for i in every}
    assert statuses == {"overdue", "paid", "sent", "draft"}
    today = today_ist().isoformat()
    assert any(i["status"] == "sent" and i["due_date"] == today for i in every)
    paid = zoho.get("/invoices", status="paid").json()["invoices"]
    assert paid and all(i["status"] == "paid" and i["balance"] == 0 for i in paid)
    unpaid = zoho.get("/invoices", status="unpaid").json()
    assert {i["status"] for i in unpaid["invoices"]} <= {"sent", "overdue"}
    assert zoho.get("/invoices", status="all", per_page=5).json()["page_context"]["applied_filter"] == "Status.All"


def test_per_page_is_clamped_and_validated(zoho) -> None:
    body = zoho.get("/invoices", status="overdue", per_page=500).json()
    assert body["page_context"]["per_page"] == 200 and len(body["invoices"]) == 200
    small = zoho.get("/invoices", status="overdue", per_page=25, page=3).json()
    assert len(small["invoices"]) == 25 and small["page_context"]["page"] == 3
    bad = zoho.get("/invoices", per_page="many")
    assert bad.status_code == 400 and bad.json()["code"] == 2
    beyond = zoho.get("/invoices", status="overdue", page=99).json()
    assert beyond["invoices"] == [] and beyond["page_context"]["has_more_page"] is False


@pytest.mark.parametrize("column", ["due_date", "date", "invoice_number", "customer_name", "total", "balance",
                                    "created_time"])
def test_sorting(zoho, column: str) -> None:
    asc = zoho.get("/invoices", status="overdue", sort_column=column, sort_order="A", per_page=200).json()
    assert asc["page_context"]["sort_column"] == column and asc["page_context"]["sort_order"] == "A"
    values = [r[column] for r in asc["invoices"]]
    if column == "customer_name":
        values = [v.casefold() for v in values]
    assert values == sorted(values)
    desc = zoho.get("/invoices", status="overdue", sort_column=column, sort_order="D").json()
    dvalues = [r[column] for r in desc["invoices"]]
    if column == "customer_name":
        dvalues = [v.casefold() for v in dvalues]
    assert dvalues == sorted(dvalues, reverse=True)


def test_bad_sort_column(zoho) -> None:
    response = zoho.get("/invoices", sort_column="mobile")
    assert response.status_code == 400 and response.json()["code"] == 2


def test_customer_and_due_date_filters(zoho, sandbox) -> None:
    truth = sandbox.overdue_invoices()
    customer = truth[0]["customer_id"]
    rows = zoho.get("/invoices", status="overdue", customer_id=customer).json()["invoices"]
    assert rows and {r["customer_id"] for r in rows} == {customer}
    assert len(rows) == sum(1 for r in truth if r["customer_id"] == customer)
    cutoff = sorted(r["due_date"] for r in truth)[len(truth) // 2]
    before, _ = fetch_all(zoho, "/invoices", "invoices", status="overdue", due_date_before=cutoff)
    assert {r["invoice_id"] for r in before} == {r["invoice_id"] for r in truth if r["due_date"] < cutoff}


def test_invoice_detail(zoho, sandbox) -> None:
    row = sandbox.overdue_invoices()[0]
    body = zoho.get(f"/invoices/{row['invoice_id']}").json()
    assert body["code"] == 0
    inv = body["invoice"]
    assert inv["invoice_id"] == row["invoice_id"] and inv["balance"] == row["balance"]
    persons = inv["contact_persons_associated"]
    assert persons and {"mobile", "phone", "communication_preference"} <= set(persons[0])
    assert "is_whatsapp_enabled" in persons[0]["communication_preference"]
    assert inv["line_items"] and inv["sub_total"] + inv["tax_total"] == pytest.approx(inv["total"])
    missing = zoho.get("/invoices/982000000000001")
    assert missing.status_code == 404
    assert missing.json() == {"code": 1002, "message": "Invoice does not exist."}


def test_comments_are_stored(zoho, sandbox) -> None:
    invoice_id = sandbox.overdue_invoices()[0]["invoice_id"]
    response = zoho.post(f"/invoices/{invoice_id}/comments",
                         {"description": "WhatsApp reminder sent", "show_comment_to_clients": False})
    assert response.status_code == 200
    assert response.json()["code"] == 0 and response.json()["message"] == "Comments added."
    [comment] = sandbox.comments(invoice_id)
    assert comment["description"] == "WhatsApp reminder sent" and comment["show_comment_to_clients"] is False
    listed = zoho.get(f"/invoices/{invoice_id}/comments").json()["comments"]
    assert [c["description"] for c in listed] == ["WhatsApp reminder sent"]
    empty = zoho.post(f"/invoices/{invoice_id}/comments", {"description": ""})
    assert empty.status_code == 400 and empty.json()["code"] != 0
    assert zoho.post("/invoices/982000000000001/comments", {"description": "x"}).status_code == 404


# --- contacts and payments ---------------------------------------------------------------


def test_contacts_overdue_filter_is_exactly_customers_owing_on_overdue_invoices(zoho, sandbox) -> None:
    rows, contexts = fetch_all(zoho, "/contacts", "contacts", filter_by="Invoice.OverDue")
    expected = {i["customer_id"] for i in sandbox.overdue_invoices() if i["balance"] > 0}
    assert {r["contact_id"] for r in rows} == expected
    assert len(rows) == len(expected)
    assert contexts[0]["applied_filter"] == "Invoice.OverDue"
    everyone = fetch_all(zoho, "/contacts", "contacts")[0]
    assert len(everyone) > len(rows)  # some customers owe nothing overdue
    for row in rows:
        assert row["contact_type"] == "customer"
        assert {"mobile", "phone", "email", "outstanding_receivable_amount", "currency_code"} <= set(row)
        assert row["outstanding_receivable_amount"] > 0


def test_contact_numbers_are_typed_every_which_way(sandbox) -> None:
    mobiles = [c["mobile"] for c in sandbox.contacts()]
    assert "" in mobiles and "N/A" in mobiles and "12345" in mobiles
    assert "+1-925-921-9201" in mobiles and "+44 7911 123456" in mobiles and "+971 50 123 4567" in mobiles
    assert "022 2345 6789" in mobiles and "080-41234567" in mobiles
    assert "9820012345" in mobiles
    prefixes = {m[:3] for m in mobiles}
    assert {"+91", "009", "(+9"} <= prefixes
    assert any(m.startswith("0") and len(m) == 11 and m.isdigit() for m in mobiles)
    assert any(m.startswith("91") and len(m) == 12 for m in mobiles)
    assert 0.02 <= mobiles.count("") / len(mobiles) <= 0.1


def test_contact_detail(zoho, sandbox) -> None:
    contact_id = sandbox.overdue_invoices()[0]["customer_id"]
    contact = zoho.get(f"/contacts/{contact_id}").json()["contact"]
    assert contact["contact_id"] == contact_id
    primary = [p for p in contact["contact_persons"] if p["is_primary_contact"]]
    assert len(primary) == 1
    assert {"contact_person_id", "first_name", "last_name", "email", "phone", "mobile"} <= set(primary[0])
    assert set(primary[0]["communication_preference"]) >= {"is_email_enabled", "is_whatsapp_enabled"}
    assert "phone" in contact["billing_address"]
    assert contact == sandbox.contact(contact_id)
    assert zoho.get("/contacts/982000000000001").status_code == 404


def test_customer_payment(zoho, sandbox) -> None:
    payment = sandbox.payments()[0]
    body = zoho.get(f"/customerpayments/{payment['payment_id']}").json()
    assert body["code"] == 0
    p = body["payment"]
    assert {"payment_id", "payment_number", "customer_id", "customer_name", "date", "amount", "currency_code"} <= set(p)
    [applied] = p["invoices"]
    assert {"invoice_id", "invoice_number", "amount_applied", "balance_amount"} <= set(applied)
    listed = zoho.get("/customerpayments").json()
    assert listed["code"] == 0 and listed["customerpayments"]


def test_control_patch_and_payment_change_the_listing(zoho, sandbox, http) -> None:
    first, second = sandbox.overdue_invoices()[:2]
    patched = http.post(f"{sandbox.url}/_sandbox/zoho/invoices/{first['invoice_id']}",
                        json={"balance": 0, "status": "paid"}).json()["invoice"]
    assert patched["status"] == "paid" and patched["balance"] == 0
    ids = {r["invoice_id"] for r in fetch_all(zoho, "/invoices", "invoices", status="overdue")[0]}
    assert first["invoice_id"] not in ids
    payment = http.post(f"{sandbox.url}/_sandbox/zoho/payments",
                        json={"invoice_id": second["invoice_id"], "amount": 100}).json()["payment"]
    assert payment["invoices"][0]["balance_amount"] == pytest.approx(second["balance"] - 100)
    detail = zoho.get(f"/invoices/{second['invoice_id']}").json()["invoice"]
    assert detail["balance"] == pytest.approx(second["balance"] - 100)
    assert zoho.get(f"/customerpayments/{payment['payment_id']}").json()["payment"]["amount"] == 100
    full = sandbox.add_payment(second["invoice_id"])
    assert full["invoices"][0]["balance_amount"] == 0
    assert sandbox.invoice(second["invoice_id"])["status"] == "paid"
    bad = http.post(f"{sandbox.url}/_sandbox/zoho/invoices/{first['invoice_id']}", json={"colour": "red"})
    assert bad.status_code == 400


def test_contact_patch_control(zoho, sandbox, http) -> None:
    contact_id = sandbox.overdue_invoices()[0]["customer_id"]
    http.post(f"{sandbox.url}/_sandbox/zoho/contacts/{contact_id}", json={"mobile": "+91 90000 00001"})
    contact = zoho.get(f"/contacts/{contact_id}").json()["contact"]
    assert contact["mobile"] == "+91 90000 00001"
    assert contact["contact_persons"][0]["mobile"] == "+91 90000 00001"


# --- limits -------------------------------------------------------------------------------


def test_101st_request_in_a_minute_is_429_code_44_with_headers(zoho) -> None:
    zoho.token  # noqa: B018 - mint before counting
    last = None
    for n in range(100):
        last = zoho.get("/organizations", org=False)
        assert last.status_code == 200, n
    assert last.headers["X-Rate-Limit-Limit"] == "100"
    assert last.headers["X-Rate-Limit-Remaining"] == "0"
    over = zoho.get("/organizations", org=False)
    assert over.status_code == 429
    assert over.json()["code"] == 44
    assert over.headers["X-Rate-Limit-Limit"] == "100"
    assert over.headers["X-Rate-Limit-Remaining"] == "0"
    assert 0 < int(over.headers["X-Rate-Limit-Reset"]) <= 60


def test_rate_window_frees_up(sandbox, zoho) -> None:
    sandbox.set_faults(zoho_rate_limit_per_minute=3, zoho_rate_window_seconds=0.3)
    zoho.token  # noqa: B018
    first = zoho.get("/organizations", org=False)
    assert first.headers["X-Rate-Limit-Remaining"] == "2"
    assert [zoho.get("/organizations", org=False).status_code for _ in range(3)] == [200, 200, 429]
    import time

    time.sleep(0.35)
    assert zoho.get("/organizations", org=False).status_code == 200


def test_daily_quota_is_code_45(sandbox, zoho) -> None:
    sandbox.set_faults(zoho_daily_quota=3)
    assert [zoho.get("/organizations", org=False).status_code for _ in range(3)] == [200, 200, 200]
    over = zoho.get("/organizations", org=False)
    assert over.status_code == 429 and over.json()["code"] == 45
    assert "daily" in over.json()["message"]


def test_concurrency_limit_is_code_1070(sandbox, zoho) -> None:
    sandbox.set_faults(zoho_latency_ms=300, zoho_concurrency_limit=3)
    token = zoho.token
    import requests

    results: list[int] = []

    def call() -> None:
        r = requests.get(f"{sandbox.url}/books/v3/organizations",
                         headers={"Authorization": f"Zoho-oauthtoken {token}"}, timeout=10)
        results.append(r.json()["code"])

    threads = [threading.Thread(target=call) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(0) == 3 and results.count(1070) == 3


def test_books_requests_are_logged_without_tokens(zoho, sandbox) -> None:
    zoho.get("/invoices", status="overdue")
    [entry] = sandbox.requests(service="zoho_books")
    assert entry["method"] == "GET" and entry["path"] == "/books/v3/invoices"
    assert entry["query"] == {"status": "overdue", "organization_id": sandbox.credentials["organization_id"]}
    assert entry["headers"]["Authorization"].startswith("Zoho-oauthtoken sha256:")
    assert zoho.token not in repr(entry)
    assert entry["status"] == 200 and entry["code"] == 0
