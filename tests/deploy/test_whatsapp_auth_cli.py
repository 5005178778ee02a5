"""`whatsapp-auth`: the access token and phone number id checked with a GET before anything is saved."""

from __future__ import annotations

import pytest

from tests.deploy.helpers import db_connection


@pytest.fixture
def wa_token(sandbox, monkeypatch) -> str:
    token = sandbox.credentials["whatsapp_token"]
    monkeypatch.setenv("WHATSAPP_ACCESS_TOKEN", token)
    return token


def phone_requests(sandbox) -> list[dict]:
    return [r for r in sandbox.requests(service="whatsapp") if r["method"] == "GET"]


def test_valid_token_and_number_are_written(sandbox, wa_token, stored, cli) -> None:
    stored.append("wa_trial")
    phone_id = sandbox.credentials["phone_number_id"]
    run = cli("whatsapp-auth", "--phone-number-id", phone_id, "--base-url", sandbox.url, "--conn-id", "wa_trial")
    assert run.code == 0, run.text
    conn = db_connection("wa_trial")
    assert conn["conn_type"] == "whatsapp" and conn["password"] == wa_token and conn["encrypted"]
    assert conn["extra"] == {"phone_number_id": phone_id, "base_url": sandbox.url}
    assert wa_token not in run.text
    assert "WhatsApp number +91 22 4000 1234 (Sharma Traders)" in run.err
    assert [r["path"] for r in phone_requests(sandbox)] == [f"/v23.0/{phone_id}"]
    assert sandbox.messages() == []  # validating sends nothing

    run = cli("check", "whatsapp", "--whatsapp-conn-id", "wa_trial")
    assert run.code == 0, run.text


def test_expired_token_is_refused_with_the_fix(sandbox, wa_token, stored, cli, monkeypatch) -> None:
    monkeypatch.setenv("WHATSAPP_ACCESS_TOKEN", "EAAGexpired" + "x" * 40)
    run = cli("whatsapp-auth", "--phone-number-id", sandbox.credentials["phone_number_id"], "--base-url",
              sandbox.url, "--conn-id", "wa_expired")
    assert run.code == 1
    assert "connection 'wa_expired'" in run.err and "Cloud API error 190" in run.err
    assert "fix: the access token expired or was revoked: create a permanent system-user token" in run.err
    assert "Nothing was written." in run.err
    assert "EAAGexpired" not in run.text
    assert db_connection("wa_expired") is None


def test_wrong_phone_number_id_is_refused_with_the_fix(sandbox, wa_token, stored, cli) -> None:
    run = cli("whatsapp-auth", "--phone-number-id", "919820012345", "--base-url", sandbox.url, "--conn-id", "wa_bad_id")
    assert run.code == 1
    assert "phone number 919820012345 not usable" in run.err and "Cloud API error 100" in run.err
    assert "fix: extra.phone_number_id is wrong" in run.err and "not the number" in run.err
    assert db_connection("wa_bad_id") is None


def test_token_from_stdin_and_print_env(sandbox, wa_token, cli, monkeypatch) -> None:
    monkeypatch.delenv("WHATSAPP_ACCESS_TOKEN")
    run = cli("whatsapp-auth", "--phone-number-id", sandbox.credentials["phone_number_id"], "--base-url",
              sandbox.url, "--print-env", stdin=wa_token + "\n")
    assert run.code == 0, run.err
    assert run.out.startswith("AIRFLOW_CONN_WHATSAPP_DEFAULT='{\"conn_type\":\"whatsapp\"")
    assert wa_token not in run.err


def test_no_token_at_all_is_a_clear_error(sandbox, cli, monkeypatch) -> None:
    monkeypatch.delenv("WHATSAPP_ACCESS_TOKEN", raising=False)
    run = cli("whatsapp-auth", "--phone-number-id", "1", "--print-env", stdin="")
    assert run.code == 1
    assert "set WHATSAPP_ACCESS_TOKEN or type it at the prompt (never on the command line)" in run.err


def test_replace_keeps_the_webhook_secrets_and_takes_new_ones_from_env_or_prompt(
    sandbox, wa_token, stored, cli, monkeypatch
) -> None:
    stored.append("wa_hooks")
    phone_id = sandbox.credentials["phone_number_id"]
    args = ("whatsapp-auth", "--phone-number-id", phone_id, "--base-url", sandbox.url, "--conn-id", "wa_hooks")
    secret, verify = "a1b2c3d4e5f60718293a4b5c6d7e8f90", "verify-5e6f7a8b9c0d1e2f3a4b5c6d"
    monkeypatch.setenv("WHATSAPP_APP_SECRET", secret)
    monkeypatch.setenv("WHATSAPP_VERIFY_TOKEN", verify)
    run = cli(*args)
    assert run.code == 0, run.text
    assert db_connection("wa_hooks")["extra"] == {"phone_number_id": phone_id, "base_url": sandbox.url,
                                                  "app_secret": secret, "verify_token": verify}
    assert "app_secret (set), verify_token (set)" in run.err
    assert secret not in run.text and verify not in run.text

    monkeypatch.delenv("WHATSAPP_APP_SECRET")
    monkeypatch.delenv("WHATSAPP_VERIFY_TOKEN")
    run = cli(*args, "--replace")  # a new token, say: the webhook's secrets must survive it
    assert run.code == 0, run.text
    assert db_connection("wa_hooks")["extra"] == {"phone_number_id": phone_id, "base_url": sandbox.url,
                                                  "app_secret": secret, "verify_token": verify}
    assert "app_secret (kept), verify_token (kept)" in run.err and "refuses" not in run.err

    run = cli(*args, "--replace", "--set-verify-token", stdin="verify-rotated-0123456789abcdef\n")
    assert run.code == 0, run.text
    extra = db_connection("wa_hooks")["extra"]
    assert (extra["app_secret"], extra["verify_token"]) == (secret, "verify-rotated-0123456789abcdef")
    assert "verify-rotated" not in run.text


def test_without_webhook_secrets_the_cli_says_the_endpoint_refuses(sandbox, wa_token, cli) -> None:
    run = cli("whatsapp-auth", "--phone-number-id", sandbox.credentials["phone_number_id"], "--base-url",
              sandbox.url, "--print-env")
    assert run.code == 0, run.err
    assert "no app_secret or verify_token yet: /whatsapp/webhook refuses Meta's calls" in run.err
    assert "WHATSAPP_APP_SECRET and WHATSAPP_VERIFY_TOKEN" in run.err
