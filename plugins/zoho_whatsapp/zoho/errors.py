"""Every documented Zoho OAuth and Zoho Books error family: what it means and how to fix it.

One class per family, chosen by Zoho's envelope ``code`` (or the OAuth ``error`` string, or the
HTTP status when there is no code), as pywa's ``errors.py`` does; :func:`from_response` and
:func:`from_token_answer` are the factories the hook uses. Subclasses of ``AirflowFailException``
stop the task without retries: retrying cannot help until a person fixes the connection or the
quota resets. No other module knows a Zoho code number.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk.exceptions import AirflowException, AirflowFailException

from zoho_whatsapp.outcome import ErrorFamily, Outcome

__all__ = [
    "ZohoApiError", "ZohoAuthError", "ZohoBadResponse", "ZohoConfigError", "ZohoConnectionMissing", "ZohoError", "ZohoHostNotAllowed",
    "ZohoGrantCodeRefused", "ZohoInvalidClient", "ZohoInvalidCode", "ZohoInvalidUrl", "ZohoInvalidValue", "ZohoNotAuthorized",
    "ZohoNotFound", "ZohoOrganizationUnknown", "ZohoQuotaExhausted", "ZohoRateLimited", "ZohoRegionUnknown",
    "ZohoServerError", "ZohoTokenRejected", "ZohoTokenThrottled", "ZohoUnreachable", "from_response",
    "from_token_answer",
]

AUTH_CLI = "python -m zoho_whatsapp.cli zoho-auth --region <region> --code <grant code> --replace"
SCOPES = "ZohoBooks.invoices.READ,ZohoBooks.contacts.READ,ZohoBooks.settings.READ,ZohoBooks.invoices.CREATE"


class ZohoError(ErrorFamily, AirflowException):
    """A Zoho call failed; ``code`` is Zoho's envelope code when there was one."""

    system = "Zoho Books"
    default_conn_id = "zoho_books_default"
    retry_after: float | None = None  # seconds Zoho asked to wait (X-Rate-Limit-Reset), when it said


class ZohoUnreachable(ZohoError):
    """No answer from Zoho (DNS, proxy, timeout): a write may or may not have happened."""

    when = "no connection to Zoho"
    outcome = Outcome.UNKNOWN
    fix = "check this machine reaches the Zoho hosts (proxy, firewall, DNS) and extra.accounts_url / extra.api_url"


# -- configuration: a person must change the connection -----------------------------------------


class ZohoConfigError(ZohoError, AirflowFailException):
    """The connection is missing a field or names an impossible setting."""

    when = "a connection field missing"
    outcome = Outcome.STOP_RUN
    fix = "fill in the missing field of {conn_id} in Admin -> Connections, or re-create it: " + AUTH_CLI


class ZohoConnectionMissing(ZohoConfigError):
    when = "connection not defined"
    fix = "create it: python -m zoho_whatsapp.cli zoho-auth --region in --code <grant code> --conn-id {conn_id}"


class ZohoRegionUnknown(ZohoConfigError):
    when = "extra.region is not a data centre"
    fix = "set extra.region to the data centre you log in to (accounts.zoho.in -> in), or re-run zoho-auth with --region"


class ZohoOrganizationUnknown(ZohoConfigError):
    """No organization chosen among several, or one the account does not have."""

    codes = frozenset({6041})
    when = "organization_id missing or not the account's"
    fix = "set extra.organization_id to one of the organizations the message lists, or re-run zoho-auth with --organization-id"


class ZohoHostNotAllowed(ZohoConfigError):
    """An extra (or Zoho's ``api_domain``) names a host the hook may not send credentials to."""

    when = "a host other than Zoho's accounts/zohoapis hosts or loopback"
    fix = "remove the field from {conn_id}'s extras (the region picks the hosts) or set an official Zoho https host"


# -- credentials ---------------------------------------------------------------------------------


class ZohoAuthError(ZohoError, AirflowFailException):
    """Credentials, region or scopes are wrong: fix the connection, then re-run."""

    when = "token request refused"
    outcome = Outcome.STOP_RUN
    fix = "check client id, secret, extra.region and the grant of {conn_id}; then " + AUTH_CLI


class ZohoInvalidCode(ZohoAuthError):
    codes = frozenset({"invalid_code"})
    fix = "the refresh token was revoked or belongs to another data centre: generate a new grant code, then " + AUTH_CLI


class ZohoGrantCodeRefused(ZohoInvalidCode):
    """The one-time grant code (not a stored refresh token) was refused during ``zoho-auth``."""

    codes = frozenset()
    when = "invalid_code when exchanging a grant code"
    fix = "generate a new grant code in the Self Client console of the account's data centre and use it at once"


class ZohoInvalidClient(ZohoAuthError):
    codes = frozenset({"invalid_client"})
    fix = (
        "copy the client id and secret again from the Self Client (api-console.zoho.<region>) and check that "
        "the Self Client was created in the same region as extra.region; then " + AUTH_CLI
    )


class ZohoTokenRejected(ZohoAuthError):
    """Zoho refused a token it had just issued: wrong data centre for the API, or the grant changed."""

    when = "HTTP 401 with a fresh token"
    fix = "check extra.region of {conn_id} matches the account's data centre, then " + AUTH_CLI


class ZohoTokenThrottled(ZohoError):
    """Zoho blocks token requests for the rest of a 10-minute window."""

    codes = frozenset({"Access Denied"})
    outcome = Outcome.RETRY_LATER
    fix = (
        "wait 10 minutes (Zoho allows 10 token requests per 10 minutes); make sure tasks can write the "
        "{conn_id}_access_token Variable so the token is shared"
    )


# -- limits -----------------------------------------------------------------------------------------


class ZohoQuotaExhausted(ZohoError, AirflowFailException):
    """The organization's daily API quota is spent: retrying today is useless."""

    codes = frozenset({45})
    outcome = Outcome.STOP_RUN
    fix = "the daily API quota resets at midnight in the organization's time zone: re-run then, or upgrade the plan"


class ZohoRateLimited(ZohoError):
    """Still throttled (per-minute or concurrency limit) after the hook's own waits."""

    codes = frozenset({44, 1070})
    outcome = Outcome.RETRY_LATER
    fix = "nothing to fix: the hook waited as Zoho asked and Airflow retries the task; spread runs if it recurs"


# -- the Books API answered with an error -----------------------------------------------------------


class ZohoApiError(ZohoError):
    """Zoho answered with a non-zero ``code`` (possibly with HTTP 200) or an unreadable body."""

    when = "any other non-zero code"
    outcome = Outcome.PERMANENT
    fix = "read Zoho's message above; codes are listed at https://www.zoho.com/books/api/v3/errors/"


class ZohoNotAuthorized(ZohoAuthError, ZohoApiError):
    """The token is valid but its grant's scopes do not cover this call."""

    codes = frozenset({57})
    outcome = Outcome.STOP_RUN
    fix = f"the grant lacks a scope: generate a new grant code with the scopes {SCOPES}, then " + AUTH_CLI


class ZohoNotFound(ZohoApiError):
    """The record does not exist in this organization (deleted, or never there)."""

    codes = frozenset({1002})
    when = "HTTP 404"
    fix = "the record is not in the connected organization (deleted, or another organization): nothing is sent for it"


class ZohoInvalidValue(ZohoApiError):
    codes = frozenset({2})
    fix = "Zoho refused a value the hook sent (often extra.organization_id of {conn_id}): compare it with the check's list"


class ZohoInvalidUrl(ZohoApiError):
    codes = frozenset({5})
    outcome = Outcome.STOP_RUN
    fix = "the API root is wrong: remove extra.api_url of {conn_id} or correct extra.region"


class ZohoServerError(ZohoApiError):
    when = "HTTP 5xx without a Zoho envelope"
    outcome = Outcome.UNKNOWN
    fix = "a Zoho server error (reads were retried): re-run later; a write may have happened, check Zoho first"


class ZohoBadResponse(ZohoApiError):
    when = "a body that is not a Zoho envelope"
    outcome = Outcome.STOP_RUN
    fix = "the answer did not come from Zoho Books: check extra.region and extra.api_url of {conn_id}"


def from_response(status: int, body: Any, *, conn_id: str, what: str) -> ZohoError | None:
    """The exception for a Books API answer, or ``None`` when it is a success (``code`` 0, HTTP < 400).

    ``what`` says which call it was (``GET invoices/123``); the message names the connection.
    """
    if not isinstance(body, dict):
        cls: type[ZohoError] = ZohoServerError if status >= 500 else ZohoBadResponse
        return cls(f"{what} answered HTTP {status} with a body that is not a Zoho envelope", conn_id=conn_id, status=status)
    code = body.get("code")
    if code == 0 and status < 400:
        return None
    cls = ZohoError.for_code(code) or (ZohoNotFound if status == 404 else ZohoRateLimited if status == 429 else None)
    if cls is None:
        cls = ZohoTokenRejected if status == 401 else ZohoServerError if status >= 500 and code is None else ZohoApiError
    message = f"{what} failed with Zoho code {code}: {body.get('message')} (HTTP {status})"
    if cls is ZohoQuotaExhausted:
        message = f"the organization's daily Zoho Books API quota is spent ({what}: {body.get('message')})"
    return cls(message, conn_id=conn_id, code=code if isinstance(code, int) else None, status=status)


def from_token_answer(body: dict[str, Any], *, conn_id: str, region: str, accounts_url: str) -> ZohoError:
    """The exception for a refused OAuth token request (Zoho answers those with HTTP 200)."""
    error = str(body.get("error") or "no access_token in the response")
    cls = ZohoError.for_code(error)
    if cls is None or not issubclass(cls, (ZohoAuthError, ZohoTokenThrottled)):
        cls = ZohoAuthError
    description = str(body.get("error_description") or "").strip()
    if cls is ZohoInvalidCode:
        message = (f"Zoho refused the refresh token (invalid_code) at {accounts_url}: revoked, or issued in another "
                   f"data centre than region {region!r}")
    elif cls is ZohoInvalidClient:
        message = f"Zoho does not know this client id/secret (invalid_client) at {accounts_url} (region {region!r})"
    elif cls is ZohoTokenThrottled:
        message = f"Zoho is throttling token requests at {accounts_url}: more than 10 in 10 minutes for this refresh token"
    else:
        message = f"token request failed at {accounts_url} (region {region!r}): {error} {description}".strip()
    return cls(message, conn_id=conn_id)
