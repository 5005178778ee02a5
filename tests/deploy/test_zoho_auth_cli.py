"""`zoho-auth`: a Self Client grant code, exchanged against the sandbox standing in for accounts.zoho.in."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.deploy.helpers import REPO, db_connection


def grant(sandbox, **kw) -> str:
    return sandbox.issue_grant_code(**kw)


def auth_args(sandbox, code: str, conn_id: str, *extra: str) -> list[str]:
    return ["zoho-auth", "--region", "in", "--accounts-url", sandbox.url, "--code", code, "--conn-id", conn_id, *extra]


def token_requests(sandbox) -> list[dict]:
    return [r for r in sandbox.requests(service="zoho_oauth") if r["path"].endswith("/oauth/v2/token")]


def test_good_code_writes_a_working_connection_without_echoing_secrets(sandbox, zoho_client, stored, cli) -> None:
    stored.append("zoho_trial")
    run = cli(*auth_args(sandbox, grant(sandbox), "zoho_trial"))
    assert run.code == 0, run.text

    conn = db_connection("zoho_trial")
    assert conn is not None
    assert conn["conn_type"] == "zoho_books"
    assert conn["login"] == zoho_client["zoho_client_id"]
    assert conn["password"] == zoho_client["zoho_client_secret"]
    assert conn["encrypted"], "the secret and refresh token must be Fernet-encrypted in the metadata DB"
    extra = conn["extra"]
    assert extra["region"] == "zoho.in"  # the domain, not a 2-letter value the Task SDK would try to mask
    assert extra["organization_id"] == zoho_client["organization_id"]
    assert extra["accounts_url"] == sandbox.url
    assert extra["refresh_token"].startswith("1000.") and extra["refresh_token"] != zoho_client["zoho_refresh_token"]
    assert "Sharma Traders" in conn["description"]

    for secret in (zoho_client["zoho_client_secret"], extra["refresh_token"]):
        assert secret not in run.text
    assert "added in Airflow's metadata database (secrets encrypted with the Fernet key)" in run.out
    assert "using organization" in run.err and zoho_client["organization_id"] in run.err

    # one token request (the exchange); discovering the organization reused its access token
    assert [r["form"]["grant_type"] for r in token_requests(sandbox)] == ["authorization_code"]
    assert [r["path"] for r in sandbox.requests(service="zoho_books")] == ["/books/v3/organizations"]

    # the written connection is what the DAG's hook uses: check it through `check`
    run = cli("check", "zoho", "--zoho-conn-id", "zoho_trial")
    assert run.code == 0, run.text
    assert f"zoho_trial  OK    Connected to Zoho Books organization {zoho_client['organization_id']}" in run.out


def test_reused_code_is_refused_clearly_and_changes_nothing(sandbox, zoho_client, stored, cli) -> None:
    stored.append("zoho_reuse")
    code = grant(sandbox)
    assert cli(*auth_args(sandbox, code, "zoho_reuse")).code == 0
    before = db_connection("zoho_reuse")

    run = cli(*auth_args(sandbox, code, "zoho_reuse", "--replace"))
    assert run.code == 1
    assert "Zoho refused the grant code (invalid_code)" in run.err
    assert "works once and only for a few minutes" in run.err
    assert "api-console.zoho.in" in run.err
    assert "Nothing was written." in run.err
    assert db_connection("zoho_reuse") == before
    # Zoho's answer was HTTP 200 with {"error": "invalid_code"}: the CLI read the body, not the status
    last = token_requests(sandbox)[-1]
    assert last["status"] == 200


def test_expired_code_gets_the_same_explanation(sandbox, zoho_client, stored, cli) -> None:
    code = grant(sandbox, ttl_seconds=0.05)
    time.sleep(0.2)
    run = cli(*auth_args(sandbox, code, "zoho_expired"))
    assert run.code == 1
    assert "invalid_code" in run.err and "Generate a new code" in run.err
    assert db_connection("zoho_expired") is None


def test_unknown_region_is_refused_before_anything_is_asked_or_sent(sandbox, zoho_client, stored, cli) -> None:
    run = cli("zoho-auth", "--region", "xx", "--code", grant(sandbox), "--conn-id", "zoho_region")
    assert run.code == 1
    assert "--region: unknown Zoho region 'xx'" in run.err
    assert "accounts.zoho.in means 'in'" in run.err
    assert token_requests(sandbox) == []
    assert db_connection("zoho_region") is None


def test_wrong_data_centre_names_the_region_and_host(sandbox, zoho_client, stored, cli) -> None:
    """The code is exchanged at another data centre's accounts host (a second sandbox stands in for
    accounts.zoho.com): it does not know the Self Client, as Zoho answers for a client of another region."""
    from sandbox import Sandbox

    other = Sandbox(host="127.0.0.1", port=0, seed=7).start()
    try:
        run = cli("zoho-auth", "--region", "us", "--accounts-url", other.url, "--code", grant(sandbox),
                  "--conn-id", "zoho_wrong_dc")
    finally:
        other.stop()
    assert run.code == 1
    assert f"Zoho does not know this client id/secret (invalid_client) at {other.url}" in run.err
    assert "the Self Client was created in the same region" in run.err
    assert db_connection("zoho_wrong_dc") is None


def test_account_in_another_data_centre_than_region(sandbox, zoho_client, stored, cli) -> None:
    """Zoho's token answer names the account's API domain: an Indian account exchanged with --region us
    is stopped with the region to use, before anything is written."""
    sandbox.oauth.api_domain = "https://www.zohoapis.in"  # what accounts.zoho.* answers for an Indian account
    run = cli("zoho-auth", "--region", "us", "--accounts-url", sandbox.url, "--code", grant(sandbox),
              "--conn-id", "zoho_dc_mismatch")
    assert run.code == 1
    assert "the account lives in data centre 'in' (API domain https://www.zohoapis.in), not 'us'" in run.err
    assert "api-console.zoho.in and run with --region in" in run.err
    assert db_connection("zoho_dc_mismatch") is None


def test_wrong_client_secret(sandbox, zoho_client, stored, cli, monkeypatch) -> None:
    monkeypatch.setenv("ZOHO_CLIENT_SECRET", "not-the-secret")
    run = cli(*auth_args(sandbox, grant(sandbox), "zoho_bad_secret"))
    assert run.code == 1
    assert "invalid_client" in run.err and "Nothing was written." in run.err
    assert "not-the-secret" not in run.text
    assert db_connection("zoho_bad_secret") is None


def test_print_env_reads_the_secret_from_stdin_and_prints_a_working_variable(sandbox, zoho_client, cli,
                                                                            monkeypatch, set_connection) -> None:
    monkeypatch.delenv("ZOHO_CLIENT_SECRET")
    run = cli(*auth_args(sandbox, grant(sandbox), "zoho_books_default", "--print-env"),
              stdin=zoho_client["zoho_client_secret"] + "\n")
    assert run.code == 0, run.err
    lines = run.out.splitlines()
    assert len(lines) == 1 and lines[0].startswith("AIRFLOW_CONN_ZOHO_BOOKS_DEFAULT='")
    conn = json.loads(lines[0].split("=", 1)[1].strip("'"))
    assert conn["conn_type"] == "zoho_books" and conn["password"] == zoho_client["zoho_client_secret"]
    assert conn["extra"]["organization_id"] == zoho_client["organization_id"]
    assert zoho_client["zoho_client_secret"] not in run.err and conn["extra"]["refresh_token"] not in run.err

    from zoho_whatsapp.zoho import ZohoBooksHook

    set_connection("zoho_books_default", conn)
    ok, message = ZohoBooksHook().test_connection()
    assert ok, message


def test_no_option_takes_the_secret_on_the_command_line(cli) -> None:
    with pytest.raises(SystemExit) as info:
        cli("zoho-auth", "--code", "1000.x", "--client-secret", "s3cret")
    assert info.value.code == 2


def test_several_organizations_need_a_choice(sandbox, zoho_client, stored, cli) -> None:
    stored.append("zoho_two_orgs")
    sandbox.set_organizations(2)
    orgs = [o["organization_id"] for o in sandbox.organizations()]
    run = cli(*auth_args(sandbox, grant(sandbox), "zoho_two_orgs"))
    assert run.code == 1
    assert "this account has 2 organizations" in run.err and all(o in run.err for o in orgs)
    assert "--organization-id" in run.err
    assert db_connection("zoho_two_orgs") is None

    run = cli(*auth_args(sandbox, grant(sandbox), "zoho_two_orgs", "--organization-id", orgs[1]))
    assert run.code == 0, run.text
    assert db_connection("zoho_two_orgs")["extra"]["organization_id"] == orgs[1]


def test_grant_without_settings_scope_is_explained(sandbox, zoho_client, stored, cli) -> None:
    run = cli(*auth_args(sandbox, grant(sandbox, scope="ZohoBooks.invoices.READ,ZohoBooks.contacts.READ"), "zoho_scope"))
    assert run.code == 1
    assert "listing the organizations failed" in run.err
    assert "ZohoBooks.settings.READ" in run.err and "Nothing was written." in run.err
    assert db_connection("zoho_scope") is None


def test_existing_connection_is_refused_before_the_code_is_spent(sandbox, zoho_client, stored, cli) -> None:
    stored.append("zoho_exists")
    assert cli(*auth_args(sandbox, grant(sandbox), "zoho_exists")).code == 0
    sent = len(token_requests(sandbox))
    code = grant(sandbox)

    run = cli(*auth_args(sandbox, code, "zoho_exists"))
    assert run.code == 1
    assert "connection 'zoho_exists' already exists" in run.err and "--replace" in run.err
    assert len(token_requests(sandbox)) == sent, "the grant code must not be spent when nothing can be written"

    run = cli(*auth_args(sandbox, code, "zoho_exists", "--replace"))
    assert run.code == 0, run.text
    assert "connection 'zoho_exists' replaced" in run.out


def test_module_entry_point_without_a_metadata_db_keeps_the_code(sandbox, zoho_client, tmp_path: Path) -> None:
    """`python -m zoho_whatsapp.cli` where Airflow's DB was never migrated: a clear error, code unspent."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_CONN_")}
    env.update({"AIRFLOW_HOME": str(tmp_path), "PYTHONPATH": str(REPO / "plugins")})
    code = grant(sandbox)
    out = subprocess.run(
        [sys.executable, "-m", "zoho_whatsapp.cli", *auth_args(sandbox, code, "zoho_books_default")],
        env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )
    assert out.returncode == 1, out.stdout + out.stderr
    assert "cannot use Airflow's metadata database" in out.stderr
    assert "airflow db migrate" in out.stderr and "--print-env" in out.stderr
    assert out.stdout == ""
    assert token_requests(sandbox) == []


def test_without_a_fernet_key_the_cli_says_the_secrets_are_stored_in_clear(sandbox, zoho_client, stored, cli,
                                                                           monkeypatch) -> None:
    from airflow.models.crypto import get_fernet

    stored.append("zoho_clear")
    monkeypatch.setenv("AIRFLOW__CORE__FERNET_KEY", "")
    get_fernet.cache_clear()
    run = cli(*auth_args(sandbox, grant(sandbox), "zoho_clear"))
    assert run.code == 0, run.text
    assert "WARNING: stored unencrypted because Airflow has no Fernet key: set AIRFLOW__CORE__FERNET_KEY" in run.out
    assert db_connection("zoho_clear")["encrypted"] is False
