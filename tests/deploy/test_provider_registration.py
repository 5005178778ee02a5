"""The project registers as an Airflow provider: zoho_books and whatsapp get labelled connection forms."""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

import jsonschema
import pytest

from tests.deploy.helpers import REPO
from zoho_whatsapp.provider_info import PACKAGE_NAME, get_provider_info


def airflow_schema(name: str) -> dict:
    import airflow

    return json.loads((Path(airflow.__file__).parent / name).read_text())


def test_provider_info_is_valid_for_airflow() -> None:
    info = get_provider_info()
    jsonschema.validate(info, airflow_schema("provider_info.schema.json"))  # what ProvidersManager checks
    # the stricter development schema is the one that defines conn-fields / ui-field-behaviour
    strict = airflow_schema("provider.yaml.schema.json")["properties"]["connection-types"]
    jsonschema.validate(info["connection-types"], strict)


def test_package_is_installed_with_the_entry_point() -> None:
    try:
        dist = metadata.distribution(PACKAGE_NAME)
    except metadata.PackageNotFoundError:
        pytest.fail(f"{PACKAGE_NAME} is not installed in this environment: run `make install`")
    points = [ep for ep in dist.entry_points if ep.group == "apache_airflow_provider"]
    assert [ep.value for ep in points] == ["zoho_whatsapp.provider_info:get_provider_info"]
    assert dist.version == get_provider_info()["versions"][0]
    # editable: the code Airflow imports is plugins/zoho_whatsapp of this checkout, not a copy
    import zoho_whatsapp

    assert Path(zoho_whatsapp.__file__).resolve().parent == REPO / "plugins" / "zoho_whatsapp"


def test_airflow_registers_both_connection_types_with_their_forms() -> None:
    from airflow.providers_manager import ProvidersManager
    from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime

    pm = ProvidersManager()
    assert PACKAGE_NAME in pm.providers
    hooks = ProvidersManagerTaskRuntime().hooks  # what tasks resolve a conn_type with
    assert hooks["zoho_books"].hook_class_name == "zoho_whatsapp.zoho.hook.ZohoBooksHook"
    assert hooks["whatsapp"].hook_class_name == "zoho_whatsapp.whatsapp.hook.WhatsAppHook"
    assert hooks["zoho_books"].connection_testable and hooks["whatsapp"].connection_testable  # the Test button

    widgets = pm.connection_form_widgets
    refresh = widgets["extra__zoho_books__refresh_token"]
    assert refresh.is_sensitive
    assert refresh.field["schema"]["title"] == "Refresh token"
    assert widgets["extra__zoho_books__region"].field["value"] == "zoho.in"
    assert widgets["extra__whatsapp__phone_number_id"].field["schema"]["title"] == "Phone number ID"

    behaviour = pm.field_behaviours
    assert behaviour["zoho_books"]["relabeling"] == {"login": "Client ID", "password": "Client Secret"}
    assert behaviour["whatsapp"]["relabeling"] == {"password": "Access token"}
    assert "login" in behaviour["whatsapp"]["hidden_fields"]


def test_the_ui_endpoint_serves_the_forms() -> None:
    """What the React connection form asks the API server for (GET /ui/connections/hook_meta)."""
    from airflow.api_fastapi.core_api.services.ui.connections import HookMetaService

    meta = {m.connection_type: m for m in HookMetaService.hook_meta_data()}
    zoho = meta["zoho_books"]
    assert zoho.hook_name == "Zoho Books"
    assert set(zoho.extra_fields) == {"refresh_token", "region", "organization_id", "accounts_url", "api_url"}
    assert zoho.standard_fields.login.title == "Client ID"
    assert zoho.standard_fields.host.hidden
    assert set(meta["whatsapp"].extra_fields) == {"phone_number_id", "api_version", "base_url"}


def test_form_fields_are_the_keys_the_hooks_read(set_connection) -> None:
    """A connection filled in through the form (extra keys = field names) works with the hooks."""
    from zoho_whatsapp.whatsapp.hook import WhatsAppHook
    from zoho_whatsapp.zoho.hook import ZohoBooksHook

    types = {t["connection-type"]: t for t in get_provider_info()["connection-types"]}
    # URL fields take hosts the hooks accept (official ones, or loopback: see tests/deploy/test_host_allow_list.py).
    urls = {"accounts_url": "https://accounts.zoho.eu", "api_url": "https://www.zohoapis.eu",
            "base_url": "http://127.0.0.1:8123"}
    zoho_extra = {k: urls.get(k, f"value-{k}") for k in types["zoho_books"]["conn-fields"]}
    zoho_extra["region"] = "zoho.eu"
    set_connection("zoho_books_default", {"conn_type": "zoho_books", "login": "id", "password": "secret",
                                          "extra": zoho_extra})
    s = ZohoBooksHook().settings
    assert (s.refresh_token, s.region, s.organization_id, s.accounts_url, s.api_url) == (
        "value-refresh_token", "eu", "value-organization_id", "https://accounts.zoho.eu", "https://www.zohoapis.eu")

    wa_extra = {k: urls.get(k, f"value-{k}") for k in types["whatsapp"]["conn-fields"]}
    set_connection("whatsapp_default", {"conn_type": "whatsapp", "password": "token", "extra": wa_extra})
    w = WhatsAppHook().settings
    assert (w.phone_number_id, w.api_version, w.base_url) == ("value-phone_number_id", "value-api_version",
                                                              "http://127.0.0.1:8123")
