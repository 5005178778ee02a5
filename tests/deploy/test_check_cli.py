"""`check`: each connection verified through its hook; every failure names the connection and the fix."""

from __future__ import annotations

import copy
import re

import pytest


def line(run, conn_id: str) -> str:
    """The status line of one connection plus its fix line (if any)."""
    lines = run.out.splitlines()
    for i, text in enumerate(lines):
        if text.startswith(conn_id + " "):
            follow = lines[i + 1] if i + 1 < len(lines) and lines[i + 1].lstrip().startswith("fix:") else ""
            return text + "\n" + follow
    raise AssertionError(f"no line for {conn_id} in:\n{run.out}")


def test_everything_works(sandbox, sqlite_ledger, cli) -> None:
    run = cli("check")
    assert run.code == 0, run.text
    assert re.search(r"^zoho_books_default +OK +Connected to Zoho Books organization \d+ \(Sharma Traders", run.out, re.M)
    assert re.search(r"^whatsapp_default +OK +WhatsApp number \+91 22 4000 1234", run.out, re.M)
    assert re.search(r"^reminder_ledger_default +OK +send ledger reachable at sqlite:///", run.out, re.M)
    assert "all 3 connection(s) work" in run.out
    creds = sandbox.credentials
    for secret in (creds["zoho_client_secret"], creds["zoho_refresh_token"], creds["whatsapp_token"]):
        assert secret not in run.text


def zoho(sandbox, **changes):
    conn = copy.deepcopy(sandbox.connections()["zoho_books_default"])
    for key, value in changes.items():
        if key in ("login", "password"):
            conn[key] = value
        elif value is None:
            conn["extra"].pop(key, None)
        else:
            conn["extra"][key] = value
    return conn


@pytest.mark.parametrize(
    ("case", "expected", "fix"),
    [
        ("missing", "isn't defined", "fix: create it: python -m zoho_whatsapp.cli zoho-auth --region in --code"),
        ("wrong_secret", "invalid_client", "fix: copy the client id and secret again from the Self Client"),
        ("revoked_refresh_token", "invalid_code", "fix: the refresh token was revoked or belongs to another data centre"),
        ("unknown_organization", "organization_id 999 is not one of this account's organizations",
         "fix: set extra.organization_id to one of the organizations the message lists"),
        ("no_refresh_token", "is missing extra.refresh_token", "fix: fill in the missing field"),
        ("bad_region", "unknown Zoho region 'india'", "fix: set extra.region to the data centre you log in to"),
        ("throttled", "throttling token requests", "fix: wait 10 minutes"),
    ],
)
def test_zoho_failures(sandbox, set_connection, cli, case: str, expected: str, fix: str) -> None:
    if case == "missing":
        set_connection("zoho_books_default", None)
    elif case == "wrong_secret":
        set_connection("zoho_books_default", zoho(sandbox, password="not-the-secret"))
    elif case == "revoked_refresh_token":
        set_connection("zoho_books_default", zoho(sandbox, refresh_token="1000.revoked.revoked"))
    elif case == "unknown_organization":
        set_connection("zoho_books_default", zoho(sandbox, organization_id="999"))
    elif case == "no_refresh_token":
        set_connection("zoho_books_default", zoho(sandbox, refresh_token=None))
    elif case == "bad_region":
        set_connection("zoho_books_default", zoho(sandbox, region="india"))
    elif case == "throttled":
        sandbox.set_faults(oauth_throttle_limit=0)
    run = cli("check", "zoho")
    assert run.code == 1
    text = line(run, "zoho_books_default")
    assert "FAIL" in text and expected in text, run.out
    assert fix in text, run.out
    assert "1 of 1 connection(s) failed: zoho_books_default" in run.out


@pytest.mark.parametrize(
    ("case", "expected", "fix"),
    [
        ("missing", "isn't defined", "fix: create it: python -m zoho_whatsapp.cli whatsapp-auth --phone-number-id"),
        ("expired_token", "Cloud API error 190", "fix: the access token expired or was revoked"),
        ("wrong_phone_number_id", "Cloud API error 100", "fix: extra.phone_number_id is wrong"),
        ("no_phone_number_id", "has no extra.phone_number_id", "fix: set extra.phone_number_id"),
        ("no_token", "has no password", "fix: put the Cloud API access token in the password field"),
        ("wrong_base_url", "404 Not Found", "fix: check extra.base_url"),
    ],
)
def test_whatsapp_failures(sandbox, set_connection, cli, case: str, expected: str, fix: str) -> None:
    conn = copy.deepcopy(sandbox.connections()["whatsapp_default"])
    if case == "missing":
        conn = None
    elif case == "expired_token":
        conn["password"] = "EAAG" + "x" * 60
    elif case == "wrong_phone_number_id":
        conn["extra"]["phone_number_id"] = "12345"
    elif case == "no_phone_number_id":
        del conn["extra"]["phone_number_id"]
    elif case == "no_token":
        conn["password"] = ""
    elif case == "wrong_base_url":
        conn["extra"]["base_url"] = sandbox.url + "/nothing-here"
    set_connection("whatsapp_default", conn)
    run = cli("check", "whatsapp")
    assert run.code == 1
    text = line(run, "whatsapp_default")
    assert "FAIL" in text and expected in text, run.out
    assert fix in text, run.out


@pytest.mark.parametrize(
    ("conn", "expected", "fix"),
    [
        ({"conn_type": "postgres", "host": "127.0.0.1", "port": 1, "login": "ledger", "schema": "reminder_ledger"},
         "the send ledger (connection 'reminder_ledger_default', postgresql+psycopg2://ledger@127.0.0.1:1/reminder_ledger) is unreachable",
         "fix: start the database or correct host, port, login, password and schema"),
        ({"conn_type": "mysql", "host": "db"}, "has type 'mysql'", "fix: give reminder_ledger_default the type postgres"),
        ({"conn_type": "sqlite"}, "needs the database file path in host", "fix: put the SQLite file path in the host field"),
    ],
)
def test_ledger_failures(set_connection, cli, conn, expected: str, fix: str) -> None:
    set_connection("reminder_ledger_default", conn)
    run = cli("check", "ledger")
    assert run.code == 1
    text = line(run, "reminder_ledger_default")
    assert "FAIL" in text and expected in text, run.out
    assert fix in text, run.out


def test_ledger_password_is_not_shown(set_connection, cli) -> None:
    set_connection("reminder_ledger_default", {"conn_type": "postgres", "host": "127.0.0.1", "port": 1,
                                               "login": "ledger", "password": "hunter2hunter2", "schema": "x"})
    run = cli("check", "ledger")
    assert run.code == 1 and "hunter2hunter2" not in run.text and "***" in run.out


def test_undefined_ledger_falls_back_to_sqlite_and_says_so(set_connection, cli) -> None:
    set_connection("reminder_ledger_default", None)
    run = cli("check", "ledger")
    assert run.code == 0, run.text
    assert "not defined: using the embedded SQLite ledger sqlite:///" in run.out
    assert "use PostgreSQL in production" in run.out


def test_every_failure_is_reported_not_just_the_first(sandbox, set_connection, cli) -> None:
    set_connection("zoho_books_default", None)
    set_connection("whatsapp_default", None)
    set_connection("reminder_ledger_default", {"conn_type": "mysql"})
    run = cli("check")
    assert run.code == 1
    assert "3 of 3 connection(s) failed: zoho_books_default, whatsapp_default, reminder_ledger_default" in run.out
    assert run.out.count("fix: ") == 3


def test_unknown_check_name_is_a_usage_error(cli) -> None:
    with pytest.raises(SystemExit) as info:
        cli("check", "zohoo")
    assert info.value.code == 2


def test_missing_ledger_database_points_at_the_init_script(postgres_url, set_connection, cli) -> None:
    if postgres_url is None:
        pytest.skip("no PostgreSQL server on this machine")
    import sqlalchemy as sa

    u = sa.engine.make_url(postgres_url)
    set_connection("reminder_ledger_default", {"conn_type": "postgres", "host": u.host, "port": u.port,
                                               "login": u.username, "schema": "zw_no_such_ledger_db"})
    run = cli("check", "ledger")
    assert run.code == 1
    text = line(run, "reminder_ledger_default")
    assert 'database "zw_no_such_ledger_db" does not exist' in text
    assert "fix: create the database: with docker compose" in text
    assert "docker compose exec postgres bash /docker-entrypoint-initdb.d/10-reminder-ledger.sh" in text
