"""ZohoBooksHook.for_organization: one Zoho connection, the run's organization."""

from __future__ import annotations

from dataclasses import replace

import pytest

from zoho_whatsapp.zoho import ZohoBooksHook
from zoho_whatsapp.zoho.errors import ZohoConnectionMissing

CONN = {"conn_type": "zoho_books", "login": "cid", "password": "secret",
        "extra": {"refresh_token": "1000.abc", "region": "eu", "organization_id": "111"}}


def test_the_organization_is_the_callers_and_the_rest_the_connections(set_connection) -> None:
    set_connection("x", CONN)
    hook = ZohoBooksHook.for_organization("x", "777")
    assert hook.zoho_books_conn_id == "x"
    assert hook.settings.organization_id == "777"
    plain = ZohoBooksHook("x")
    assert hook.settings == replace(plain.settings, organization_id="777")
    assert (hook.settings.client_id, hook.settings.accounts_url) == ("cid", "https://accounts.zoho.eu")
    # another hook of the same connection still calls the connection's organization
    assert plain.settings.organization_id == "111"
    assert ZohoBooksHook("x").settings.organization_id == "111"


def test_no_connection_id_means_the_default_connection(set_connection) -> None:
    set_connection(ZohoBooksHook.default_conn_name, CONN)
    hook = ZohoBooksHook.for_organization(None, "777")
    assert (hook.zoho_books_conn_id, hook.settings.organization_id) == ("zoho_books_default", "777")


def test_a_missing_connection_fails_at_once_naming_it(set_connection) -> None:
    set_connection("nowhere", None)
    with pytest.raises(ZohoConnectionMissing, match="nowhere"):
        ZohoBooksHook.for_organization("nowhere", "777")
