"""The audit page answers only a logged-in Airflow user: Airflow's own authentication decides.

Airflow's API server app, built in this process as ``airflow api-server`` builds it (plugins
mounted, auth manager initialised), answers through a test client: no login, a forged token or a
cookie that is not Airflow's JWT get nothing but 401/403.
"""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

PREFIX = "/whatsapp-audit"
ROUTES = [f"{PREFIX}{r}" for r in ("/", "/api/summary", "/api/organizations", "/api/customers",
                                     "/api/timeline?customer_id=C1", "/api/export.csv?section=messages")]


@pytest.fixture(scope="module")
def client(airflow_db):
    from airflow.api_fastapi.app import create_app

    with TestClient(create_app()) as c:
        yield c


def test_the_plugin_is_mounted_on_airflows_api_server(client) -> None:
    assert client.get(f"{PREFIX}/static/audit.js").status_code == 200


@pytest.mark.parametrize("route", ROUTES)
def test_no_login_no_data(client, route: str) -> None:
    answer = client.get(route)
    assert answer.status_code == 401
    assert "organization" not in answer.text and "INV-" not in answer.text


@pytest.mark.parametrize("route", ROUTES)
def test_a_forged_token_is_refused(client, route: str) -> None:
    answer = client.get(route, headers={"Authorization": "Bearer eyJhbGciOiJIUzUxMiJ9.e30.forged"})
    assert answer.status_code in (401, 403)
    answer = client.get(route, cookies={"_token": "not-a-jwt"})
    assert answer.status_code in (401, 403)


def test_the_page_tells_a_person_to_log_in(client) -> None:
    answer = client.get(f"{PREFIX}/")
    assert answer.status_code == 401 and "text/html" in answer.headers["content-type"]
    assert "/auth/login/" in answer.text


def test_static_assets_hold_no_data(client) -> None:
    """Chart.js and the page's own script load without a login, like Airflow's own UI assets."""
    assert client.get(f"{PREFIX}/static/vendor/chart-4.6.1.umd.min.js").status_code == 200
    assert client.get(f"{PREFIX}/static/audit.css").status_code == 200
