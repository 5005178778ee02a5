"""Zoho OAuth imitation: grant codes, refresh, errors with HTTP 200, throttle, token cap, revoke."""

from __future__ import annotations

import re
import time

TOKEN_RE = re.compile(r"^1000\.[0-9a-f]{32}\.[0-9a-f]{32}$")


def test_grant_code_exchange_gives_refresh_and_access_token(sandbox, zoho) -> None:
    code = sandbox.issue_grant_code()
    assert TOKEN_RE.match(code)
    body = zoho.exchange(code)
    assert TOKEN_RE.match(body["access_token"]) and TOKEN_RE.match(body["refresh_token"])
    assert body["api_domain"] == sandbox.url
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600
    # the new refresh token works
    again = zoho.refresh(body["refresh_token"])
    assert TOKEN_RE.match(again["access_token"]) and "refresh_token" not in again
    assert zoho.get("/organizations", token=again["access_token"], org=False).status_code == 200


def test_grant_code_is_single_use(sandbox, zoho) -> None:
    code = sandbox.issue_grant_code()
    assert "access_token" in zoho.exchange(code)
    response = zoho.token_request(grant_type="authorization_code", code=code,
                                  client_id=zoho.creds["zoho_client_id"],
                                  client_secret=zoho.creds["zoho_client_secret"])
    assert response.status_code == 200
    assert response.json() == {"error": "invalid_code"}


def test_expired_and_unknown_grant_codes_are_invalid_code(sandbox, zoho, http) -> None:
    code = sandbox.issue_grant_code(ttl_seconds=0.05)
    time.sleep(0.1)
    assert zoho.exchange(code) == {"error": "invalid_code"}
    assert zoho.exchange("1000.deadbeef.deadbeef") == {"error": "invalid_code"}
    # the control endpoint issues codes too (what a user copies from the Self Client console)
    issued = http.post(f"{sandbox.url}/_sandbox/zoho/grant-code", json={"scope": "ZohoBooks.fullaccess.all"}).json()
    assert TOKEN_RE.match(issued["code"])
    assert "access_token" in zoho.exchange(issued["code"])


def test_wrong_client_is_invalid_client_with_http_200(sandbox, zoho) -> None:
    assert zoho.exchange(sandbox.issue_grant_code(), client_secret="nope") == {"error": "invalid_client"}
    response = zoho.token_request(grant_type="refresh_token", refresh_token=zoho.creds["zoho_refresh_token"],
                                  client_id="1000.WRONG", client_secret=zoho.creds["zoho_client_secret"])
    assert response.status_code == 200 and response.json() == {"error": "invalid_client"}


def test_refresh_grant_response_and_unknown_refresh_token(zoho, sandbox) -> None:
    body = zoho.refresh()
    assert set(body) >= {"access_token", "api_domain", "token_type", "expires_in"}
    assert "refresh_token" not in body
    assert body["api_domain"] == sandbox.url
    assert zoho.refresh("1000.unknown.unknown") == {"error": "invalid_code"}


def test_eleventh_token_request_in_window_is_access_denied(zoho) -> None:
    for _ in range(10):
        assert "access_token" in zoho.refresh()
    denied = zoho.token_request(grant_type="refresh_token", refresh_token=zoho.creds["zoho_refresh_token"],
                                client_id=zoho.creds["zoho_client_id"], client_secret=zoho.creds["zoho_client_secret"])
    assert denied.status_code == 200
    assert denied.json() == {
        "error": "Access Denied",
        "error_description": "You have made too many requests continuously. Please try again after some time.",
        "status": "failure",
    }


def test_throttle_window_rolls(sandbox, zoho) -> None:
    sandbox.set_faults(oauth_throttle_window_seconds=0.3, oauth_throttle_limit=2)
    assert "access_token" in zoho.refresh()
    assert "access_token" in zoho.refresh()
    assert zoho.refresh()["error"] == "Access Denied"
    time.sleep(0.35)
    assert "access_token" in zoho.refresh()


def test_eleventh_access_token_invalidates_the_oldest(sandbox, zoho) -> None:
    sandbox.set_faults(oauth_throttle_limit=100)
    tokens = [zoho.refresh()["access_token"] for _ in range(11)]
    oldest = zoho.get("/organizations", token=tokens[0], org=False)
    assert oldest.status_code == 401 and oldest.json()["code"] == 57
    for token in tokens[1:]:
        assert zoho.get("/organizations", token=token, org=False).status_code == 200


def test_expired_access_token_is_401(sandbox, zoho) -> None:
    sandbox.set_faults(token_ttl_seconds=0.2)
    body = zoho.refresh()
    assert body["expires_in"] == 1  # Zoho reports whole seconds
    assert zoho.get("/organizations", token=body["access_token"], org=False).status_code == 200
    time.sleep(0.25)
    expired = zoho.get("/organizations", token=body["access_token"], org=False)
    assert expired.status_code == 401
    assert expired.json() == {"code": 14, "message": "Invalid value passed for authtoken."}


def test_expire_tokens_control(sandbox, zoho, http) -> None:
    token = zoho.token
    assert zoho.get("/organizations", org=False).status_code == 200
    assert http.post(f"{sandbox.url}/_sandbox/zoho/expire-tokens").json()["expired"] >= 1
    assert zoho.get("/organizations", token=token, org=False).status_code == 401
    sandbox.expire_tokens()
    fresh = zoho.refresh()["access_token"]
    assert zoho.get("/organizations", token=fresh, org=False).status_code == 200


def test_revoke_refresh_token_kills_its_access_tokens(sandbox, zoho, http) -> None:
    body = zoho.exchange(sandbox.issue_grant_code())
    access, refresh = body["access_token"], body["refresh_token"]
    revoked = http.post(f"{sandbox.url}/oauth/v2/token/revoke", params={"token": refresh})
    assert revoked.status_code == 200 and revoked.json() == {"status": "success"}
    assert zoho.get("/organizations", token=access, org=False).status_code == 401
    assert zoho.refresh(refresh) == {"error": "invalid_code"}
    # the seeded refresh token is untouched
    assert "access_token" in zoho.refresh()


def test_token_endpoint_accepts_query_parameters_too(sandbox, http) -> None:
    c = sandbox.credentials
    response = http.post(f"{sandbox.url}/oauth/v2/token", params={
        "grant_type": "refresh_token", "refresh_token": c["zoho_refresh_token"],
        "client_id": c["zoho_client_id"], "client_secret": c["zoho_client_secret"]})
    assert "access_token" in response.json()


def test_narrow_scope_is_enforced(sandbox, zoho) -> None:
    body = zoho.exchange(sandbox.issue_grant_code(scope="ZohoBooks.invoices.READ"))
    token = body["access_token"]
    assert zoho.get("/invoices", token=token).status_code == 200
    denied = zoho.get("/contacts", token=token)
    assert denied.status_code == 401 and denied.json()["code"] == 57


def test_oauth_log_never_holds_secrets(sandbox, zoho) -> None:
    zoho.refresh()
    [entry] = sandbox.requests(service="zoho_oauth")
    text = repr(entry)
    assert sandbox.credentials["zoho_client_secret"] not in text
    assert sandbox.credentials["zoho_refresh_token"] not in text
    assert entry["form"]["client_secret"].startswith("sha256:")
    assert entry["form"]["grant_type"] == "refresh_token"
    assert entry["status"] == 200 and entry["code"] is None


def test_oauth_5xx_fault(sandbox, zoho) -> None:
    sandbox.set_faults(zoho_oauth_5xx=1)
    first = zoho.token_request(grant_type="refresh_token", refresh_token=zoho.creds["zoho_refresh_token"],
                               client_id=zoho.creds["zoho_client_id"], client_secret=zoho.creds["zoho_client_secret"])
    assert first.status_code == 500 and first.headers["Content-Type"].startswith("text/html")
    assert "access_token" in zoho.refresh()
