"""Test connection and every hook call refuse hosts other than Zoho's, Meta's or loopback: nothing leaves.

Airflow's Test button re-uses the stored secrets when only extras change. Every outbound attempt in
these tests is routed to a listener on 127.0.0.2 (a loopback address the hooks do not trust): any
name resolves to it, so a request that left for any host would be counted there.
"""

from __future__ import annotations

import copy
import os
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from zoho_whatsapp.hosts import HostNotAllowed, checked_base_url
from zoho_whatsapp.whatsapp.errors import WhatsAppHostNotAllowed
from zoho_whatsapp.whatsapp.hook import WhatsAppHook
from zoho_whatsapp.zoho import ZohoBooksHook
from zoho_whatsapp.zoho.errors import ZohoHostNotAllowed
from zoho_whatsapp.zoho.oauth import exchange_grant_code
from zoho_whatsapp.zoho.regions import ACCOUNTS_HOSTS, API_HOSTS, REGIONS

TRUSTED = ("127.0.0.1", "localhost", "::1")


class Capture:
    """A TCP listener on 127.0.0.2 that counts connections; every non-loopback lookup resolves to it."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.2", 0))
        self.port = self.server.getsockname()[1]
        self.accepted = 0
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        self.server.settimeout(0.1)
        while not self._stop:
            try:
                client, _ = self.server.accept()
            except OSError:
                continue
            self.accepted += 1
            client.close()

    def close(self) -> None:
        self._stop = True
        self._thread.join()
        self.server.close()


@pytest.fixture
def capture(monkeypatch: pytest.MonkeyPatch) -> Iterator[Capture]:
    cap = Capture()
    real = socket.getaddrinfo

    def resolve(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host in TRUSTED:
            return real(host, port, *args, **kwargs)
        return real("127.0.0.2", cap.port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    try:
        yield cap
    finally:
        cap.close()


def test_the_capture_would_see_a_request_that_left(capture: Capture) -> None:
    """The detector works: a request to any untrusted name or to 127.0.0.2 is counted."""
    for url in ("https://capture.example/oauth/v2/token", f"http://127.0.0.2:{capture.port}/"):
        with pytest.raises(requests.RequestException):
            requests.post(url, data={"client_secret": "s"}, timeout=2)
    assert capture.accepted == 2


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("accounts_url", "http://127.0.0.2:{port}"),
        ("accounts_url", "https://capture.example"),
        ("accounts_url", "http://accounts.zoho.in"),  # an official host, but not over https
        ("accounts_url", "https://accounts.zoho.in@capture.example"),
        ("accounts_url", "https://capture.example#@accounts.zoho.in"),
        ("accounts_url", "https://capture.example\\@accounts.zoho.in"),
        ("accounts_url", "https://accounts.zoho.in.capture.example"),
        ("accounts_url", "https://www.zohoapis.in"),  # an API host is not an accounts host
        ("api_url", "https://capture.example"),
        ("api_url", "http://127.0.0.2:{port}"),
        ("api_url", "https://www.zohoapis.in:8443"),
    ],
)
def test_zoho_refuses_foreign_hosts_before_anything_leaves(sandbox, set_connection, capture, field, value) -> None:
    conn = copy.deepcopy(sandbox.connections()["zoho_books_default"])
    conn["extra"][field] = value.format(port=capture.port)
    set_connection("zoho_books_default", conn)

    ok, message = ZohoBooksHook().test_connection()
    assert not ok
    assert "connection 'zoho_books_default'" in message and f"extra.{field} refused" in message
    calls: list[Callable[[ZohoBooksHook], Any]] = [
        lambda h: h.get_access_token(),
        lambda h: h.get_organization(),
        lambda h: h.list_overdue_invoices(),
        lambda h: h.list_overdue_contacts(),
        lambda h: h.get_invoice("1"),
        lambda h: h.get_contact("1"),
        lambda h: h.get_customer_payment("1"),
        lambda h: h.request("GET", "organizations", organization=False),
    ]
    for call in calls:
        with pytest.raises(ZohoHostNotAllowed, match=f"extra.{field} refused"):
            call(ZohoBooksHook())
    assert capture.accepted == 0
    assert sandbox.requests() == []


def test_airflow_test_button_with_only_extras_changed_sends_no_secret(sandbox, capture) -> None:
    """What the API server's POST /connections/test does: the stored connection, the edited extras, a
    transient AIRFLOW_CONN_ variable, then Connection.test_connection()."""
    import json

    from airflow.models.connection import Connection

    stored = sandbox.connections()["zoho_books_default"]
    conn = Connection(conn_id="zw_transient_test", conn_type="zoho_books", login=stored["login"],
                      password=stored["password"],
                      extra=json.dumps({**stored["extra"], "accounts_url": "https://capture.example", "api_url": None}))
    os.environ["AIRFLOW_CONN_ZW_TRANSIENT_TEST"] = conn.get_uri()
    try:
        ok, message = conn.test_connection()
    finally:
        os.environ.pop("AIRFLOW_CONN_ZW_TRANSIENT_TEST", None)
    assert not ok and "connection 'zw_transient_test'" in message and "extra.accounts_url refused" in message
    assert capture.accepted == 0 and sandbox.requests() == []


def test_token_api_domain_pointing_elsewhere_is_refused(sandbox, set_connection, capture) -> None:
    """A token endpoint may name any api_domain: the Books call with the token never goes there."""
    conn = copy.deepcopy(sandbox.connections()["zoho_books_default"])
    del conn["extra"]["api_url"]
    set_connection("zoho_books_default", conn)
    sandbox.oauth.api_domain = f"http://127.0.0.2:{capture.port}"
    hook = ZohoBooksHook()
    hook.get_access_token()  # the token request itself went to the sandbox, an allowed host
    with pytest.raises(ZohoHostNotAllowed, match="the token's api_domain refused"):
        hook.get_organization()
    assert capture.accepted == 0
    assert [r["service"] for r in sandbox.requests()] == ["zoho_oauth"]


@pytest.mark.parametrize(
    "value",
    ["http://127.0.0.2:{port}", "https://capture.example", "http://graph.facebook.com",
     "https://graph.facebook.com.capture.example", "https://graph.facebook.com@capture.example",
     "https://graph.facebook.com:8443"],
)
def test_whatsapp_refuses_foreign_hosts_before_anything_leaves(sandbox, set_connection, capture, value) -> None:
    conn = copy.deepcopy(sandbox.connections()["whatsapp_default"])
    conn["extra"]["base_url"] = value.format(port=capture.port)
    set_connection("whatsapp_default", conn)

    ok, message = WhatsAppHook().test_connection()
    assert not ok and "connection 'whatsapp_default'" in message and "extra.base_url refused" in message
    for call in (lambda h: h.get_phone_number(), lambda h: h.send_message({"to": "+919820012345"}),
                 lambda h: h.get_conn().headers):
        with pytest.raises(WhatsAppHostNotAllowed, match="extra.base_url refused"):
            call(WhatsAppHook())
    assert capture.accepted == 0
    assert sandbox.requests() == []


def test_grant_code_exchange_refuses_a_foreign_accounts_url(capture) -> None:
    with pytest.raises(ZohoHostNotAllowed, match="accounts_url refused"):
        exchange_grant_code(code="1000.x", client_id="1000.id", client_secret="secret",
                            accounts_url="https://capture.example")
    assert capture.accepted == 0


def test_official_and_loopback_hosts_are_accepted() -> None:
    for region in REGIONS.values():
        assert checked_base_url(region.accounts_url + "/", ACCOUNTS_HOSTS) == region.accounts_url
        assert checked_base_url(region.api_url, API_HOSTS) == region.api_url
    assert len(ACCOUNTS_HOSTS) == len(API_HOSTS) == 8
    assert checked_base_url("https://www.zohoapis.in:443", API_HOSTS) == "https://www.zohoapis.in:443"
    for url in ("http://127.0.0.1:8080", "http://localhost:1", "https://localhost", "http://[::1]:9000/base"):
        assert checked_base_url(url, frozenset()) == url
    for url in ("http://127.0.0.2", "http://0.0.0.0:80", "http://[::ffff:127.0.0.1]", "ftp://localhost",
                "https://www.zohoapis.in/?x=1", "https://user@www.zohoapis.in", "www.zohoapis.in", ""):
        with pytest.raises(HostNotAllowed):
            checked_base_url(url, API_HOSTS)
    with pytest.raises(HostNotAllowed) as info:
        checked_base_url("https://admin:hunter2@capture.example", API_HOSTS)
    assert "hunter2" not in str(info.value)  # a refused URL is not echoed with its password
