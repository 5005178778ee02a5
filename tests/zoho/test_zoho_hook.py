"""ZohoBooksHook against the sandbox over real HTTP: tokens, organization, pagination, errors."""

from __future__ import annotations

import pytest

from zoho_whatsapp.zoho import ZohoBooksHook
from zoho_whatsapp.zoho.errors import (
    ZohoApiError,
    ZohoAuthError,
    ZohoConfigError,
    ZohoQuotaExhausted,
    ZohoRateLimited,
)
from zoho_whatsapp.zoho.regions import REGIONS, get_region


def hook(**kw: object) -> ZohoBooksHook:
    return ZohoBooksHook(max_wait_seconds=1.5, **kw)


@pytest.mark.parametrize(
    ("region", "accounts", "api"),
    [
        ("in", "https://accounts.zoho.in", "https://www.zohoapis.in"),
        ("us", "https://accounts.zoho.com", "https://www.zohoapis.com"),
        ("eu", "https://accounts.zoho.eu", "https://www.zohoapis.eu"),
        ("au", "https://accounts.zoho.com.au", "https://www.zohoapis.com.au"),
        ("jp", "https://accounts.zoho.jp", "https://www.zohoapis.jp"),
        ("ca", "https://accounts.zohocloud.ca", "https://www.zohoapis.ca"),
        ("cn", "https://accounts.zoho.com.cn", "https://www.zohoapis.com.cn"),
        ("sa", "https://accounts.zoho.sa", "https://www.zohoapis.sa"),
    ],
)
def test_region_hosts(region: str, accounts: str, api: str) -> None:
    assert (get_region(region).accounts_url, get_region(region).api_url) == (accounts, api)
    assert (get_region(region.upper()).code) == region


def test_every_region_is_covered_and_unknown_regions_are_refused() -> None:
    assert sorted(REGIONS) == ["au", "ca", "cn", "eu", "in", "jp", "sa", "us"]
    with pytest.raises(ValueError, match="unknown Zoho region 'xx'"):
        get_region("xx")


def test_region_picks_the_hosts_when_no_override(set_connection) -> None:
    set_connection("zoho_books_default", {"conn_type": "zoho_books", "login": "cid", "password": "secret",
                                          "extra": {"refresh_token": "1000.abc", "region": "eu"}})
    h = hook()
    assert h.settings.accounts_url == "https://accounts.zoho.eu"
    assert h.api_root == "https://www.zohoapis.eu/books/v3"


def test_missing_fields_name_the_connection(set_connection) -> None:
    set_connection("zoho_books_default", {"conn_type": "zoho_books", "login": "cid", "extra": {"region": "in"}})
    with pytest.raises(ZohoConfigError, match=r"connection 'zoho_books_default' is missing password \(client secret\), extra.refresh_token"):
        hook().settings  # noqa: B018


def test_token_is_reused_not_minted_per_call(sandbox) -> None:
    h = hook()
    h.get_organization()
    h.list_overdue_invoices()
    second = hook()  # another task in the same process: the cache serves it
    second.list_overdue_contacts()
    assert len(sandbox.requests(service="zoho_oauth")) == 1
    books = sandbox.requests(service="zoho_books")
    assert all(r["headers"]["Authorization"].startswith("Zoho-oauthtoken ") for r in books)
    assert all(r["query"].get("organization_id") == sandbox.credentials["organization_id"]
               for r in books if not r["path"].endswith("/organizations"))


def test_api_domain_from_the_token_response_is_used(sandbox, set_connection) -> None:
    conn = sandbox.connections()["zoho_books_default"]
    del conn["extra"]["api_url"]
    set_connection("zoho_books_default", conn)
    h = hook()
    h.get_access_token()
    assert h.api_root == f"{sandbox.url}/books/v3"
    assert h.get_organization().organization_id == sandbox.credentials["organization_id"]


def test_all_pages_deduplicated_and_sorted_by_due_date(sandbox) -> None:
    h = hook()
    invoices = h.list_overdue_invoices()
    truth = sandbox.overdue_invoices()
    assert len(truth) >= 300
    assert sorted(i["invoice_id"] for i in invoices) == sorted(i["invoice_id"] for i in truth)
    assert len({i["invoice_id"] for i in invoices}) == len(invoices)
    assert [i["due_date"] for i in invoices] == sorted(i["due_date"] for i in invoices)
    pages = [r for r in sandbox.requests(service="zoho_books") if r["path"].endswith("/invoices")]
    assert len(pages) == -(-len(truth) // 200)  # ceil: one call per 200-row page, no more
    assert {r["query"]["per_page"] for r in pages} == {"200"}


def test_contacts_in_one_paginated_pass(sandbox) -> None:
    contacts = hook().list_overdue_contacts()
    customers = {i["customer_id"] for i in sandbox.overdue_invoices() if float(i["balance"]) > 0}
    assert customers <= set(contacts)
    calls = [r for r in sandbox.requests(service="zoho_books") if "/contacts" in r["path"]]
    assert len(calls) == -(-len(contacts) // 200)
    assert all(r["query"].get("filter_by") == "Invoice.OverDue" for r in calls)


def test_refresh_once_on_401_in_the_middle_of_pagination(sandbox) -> None:
    h = hook()
    h.get_organization()
    sandbox.set_faults(zoho_expire_tokens_after_requests=1)  # page 1 succeeds, page 2 meets an expired token
    invoices = h.list_overdue_invoices()
    assert len(invoices) == len(sandbox.overdue_invoices())
    assert len(sandbox.requests(service="zoho_oauth")) == 2
    statuses = [r["status"] for r in sandbox.requests(service="zoho_books")]
    assert statuses.count(401) == 1


def test_org_discovery_refuses_to_guess_between_two(sandbox, set_connection) -> None:
    conn = sandbox.connections()["zoho_books_default"]
    conn["extra"].pop("organization_id", None)
    set_connection("zoho_books_default", conn)
    assert hook().get_organization().organization_id == sandbox.credentials["organization_id"]
    sandbox.set_organizations(2)
    with pytest.raises(ZohoConfigError, match=r"set extra.organization_id; the account has 2 organizations: .*Sharma Traders"):
        hook().get_organization()


def test_unknown_refresh_token_explains_what_to_do(sandbox, set_connection) -> None:
    conn = sandbox.connections()["zoho_books_default"]
    conn["extra"]["refresh_token"] = "1000.revoked.revoked"
    set_connection("zoho_books_default", conn)
    with pytest.raises(ZohoAuthError, match="invalid_code.*region 'in'.*grant code"):
        hook().get_access_token()


def test_wrong_client_secret(sandbox, set_connection) -> None:
    conn = sandbox.connections()["zoho_books_default"]
    conn["password"] = "not-the-secret"
    set_connection("zoho_books_default", conn)
    with pytest.raises(ZohoAuthError, match="invalid_client"):
        hook().get_access_token()


def test_error_envelope_with_http_200_raises_with_zohos_message(sandbox) -> None:
    h = hook()
    h.get_organization()
    sandbox.set_faults(zoho_error_envelope_200=1)
    with pytest.raises(ZohoApiError, match=r"Zoho code [1-9]\d*") as info:
        h.list_overdue_invoices()
    assert info.value.status == 200


def test_throttle_429_is_waited_out(sandbox) -> None:
    h = hook()
    h.get_organization()
    sandbox.set_faults(zoho_429=2)
    assert len(h.list_overdue_invoices()) == len(sandbox.overdue_invoices())
    assert [r["status"] for r in sandbox.requests(service="zoho_books")].count(429) == 2


def test_throttle_that_does_not_end_fails_retryably(sandbox) -> None:
    h = ZohoBooksHook(max_throttle_waits=1, max_wait_seconds=0.2)
    h.get_organization()
    sandbox.set_faults(zoho_429=5)
    with pytest.raises(ZohoRateLimited, match="still throttled"):
        h.list_overdue_invoices()


def test_daily_quota_fails_without_retry_and_says_so(sandbox) -> None:
    h = hook()
    h.get_organization()
    sandbox.set_faults(zoho_quota_exhausted=True)
    with pytest.raises(ZohoQuotaExhausted, match="daily Zoho Books API quota is spent"):
        h.list_overdue_invoices()
    assert [r["status"] for r in sandbox.requests(service="zoho_books")].count(429) == 1


def test_server_errors_on_reads_are_retried(sandbox) -> None:
    h = hook()
    h.get_organization()
    sandbox.set_faults(zoho_5xx=1)
    assert len(h.list_overdue_invoices()) == len(sandbox.overdue_invoices())


def test_test_connection_reports_the_organization(sandbox) -> None:
    ok, message = hook().test_connection()
    assert ok, message
    assert "Sharma Traders" in message


def test_token_throttle_answer_becomes_a_clear_error(sandbox) -> None:
    from zoho_whatsapp.zoho.errors import ZohoTokenThrottled

    sandbox.set_faults(oauth_throttle_limit=1)
    hook().refresh_access_token()
    with pytest.raises(ZohoTokenThrottled, match="(?i)more than 10 in 10 minutes.*wait 10 minutes"):
        hook().refresh_access_token()
