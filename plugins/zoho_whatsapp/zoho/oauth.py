"""The one-time Self Client exchange: a grant code becomes the refresh token a connection keeps.

Everything after the exchange (refreshing, caching, calling Books) belongs to
:class:`~zoho_whatsapp.zoho.hook.ZohoBooksHook`; this module only turns the short-lived grant
code a person copies from the Zoho API console into a refresh token, once.

.. code-block:: python

    grant = exchange_grant_code(code="1000.ab12...", client_id="1000.XYZ", client_secret=secret, region="in")
    grant.refresh_token  # store it in the zoho_books_default connection, never print it
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
from airflow.sdk.log import mask_secret

from zoho_whatsapp.zoho.errors import (
    ZohoAuthError,
    ZohoConfigError,
    ZohoGrantCodeRefused,
    ZohoRegionUnknown,
    ZohoUnreachable,
    from_token_answer,
)
from zoho_whatsapp.zoho.regions import ACCOUNTS_HOSTS, REGIONS, allowed_url, get_region
from zoho_whatsapp.zoho.token_cache import CachedToken

log = logging.getLogger(__name__)

DEFAULT_CONN_ID = "zoho_books_default"


@dataclass(frozen=True)
class ZohoSettings:
    """Everything the hook needs, merged from the connection in one place (``ZohoBooksHook.settings``)."""

    conn_id: str
    client_id: str
    client_secret: str
    refresh_token: str
    region: str
    accounts_url: str
    api_url: str | None  # explicit override; otherwise the token's api_domain, then the region
    organization_id: str | None


@dataclass(frozen=True)
class GrantExchange:
    """What Zoho answers to a successful grant-code exchange."""

    refresh_token: str
    access_token: str
    expires_at: float
    api_domain: str | None
    scope: str | None
    region: str
    accounts_url: str

    def cached_token(self) -> CachedToken:
        """The access token in the form the hook's token cache keeps, so it is not minted twice."""
        return CachedToken(self.access_token, self.expires_at, self.api_domain)


def _post_token(
    session: requests.Session | None, accounts_url: str, data: dict[str, str], *, conn_id: str, region: str,
    timeout: float,
) -> dict[str, Any]:
    """POST to ``<accounts_url>/oauth/v2/token`` and return Zoho's JSON answer (errors included)."""
    url = f"{accounts_url}/oauth/v2/token"
    post = session.post if session is not None else requests.post
    try:
        response = post(url, data=data, timeout=timeout, headers={"Accept": "application/json"})
    except requests.RequestException as exc:
        raise ZohoUnreachable(f"could not reach {url}: {exc.__class__.__name__}: {exc}", conn_id=conn_id) from exc
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise ZohoAuthError(
            f"{url} answered HTTP {response.status_code} without JSON: is this the accounts host of region "
            f"{region!r}? (India: https://accounts.zoho.in)",
            conn_id=conn_id,
            status=response.status_code,
        )
    return body


def mint_access_token(settings: ZohoSettings, session: requests.Session, *, timeout: float = 30.0) -> CachedToken:
    """Trade the connection's refresh token for a new access token (Zoho allows 10 per 10 minutes)."""
    s = settings
    data = {
        "grant_type": "refresh_token",
        "refresh_token": s.refresh_token,
        "client_id": s.client_id,
        "client_secret": s.client_secret,
    }
    body = _post_token(session, s.accounts_url, data, conn_id=s.conn_id, region=s.region, timeout=timeout)
    if "error" in body or "access_token" not in body:
        raise from_token_answer(body, conn_id=s.conn_id, region=s.region, accounts_url=s.accounts_url)
    token = CachedToken(
        access_token=body["access_token"],
        expires_at=time.time() + float(body.get("expires_in", 3600)),
        api_domain=body.get("api_domain"),
    )
    mask_secret(token.access_token)
    log.info(
        "Zoho access token refreshed for connection %s (valid %ss, api domain %s)",
        s.conn_id, body.get("expires_in", 3600), token.api_domain,
    )
    return token


def exchange_grant_code(
    *,
    code: str,
    client_id: str,
    client_secret: str,
    region: str | None = "in",
    accounts_url: str | None = None,
    conn_id: str = DEFAULT_CONN_ID,
    timeout: float = 30.0,
) -> GrantExchange:
    """POST ``grant_type=authorization_code`` to the region's accounts host and return the tokens.

    Zoho reports a used, expired or foreign grant code with HTTP 200 and
    ``{"error": "invalid_code"}``; that and every other refusal becomes a
    :class:`~zoho_whatsapp.zoho.errors.ZohoAuthError` saying what to do.

    :param code: the grant code from api-console.zoho.<region> → Self Client → Generate Code.
    :param region: the data centre (``in`` for accounts.zoho.in); decides the accounts host.
    :param accounts_url: override of the accounts host (the local sandbox; loopback only).
    :param conn_id: the connection the result is meant for, named in error messages.
    """
    try:
        zone = get_region(region)
    except ValueError as exc:
        raise ZohoRegionUnknown(str(exc), conn_id=conn_id) from None
    code = code.strip().strip("'\"")
    missing = [name for name, value in (("grant code", code), ("client id", client_id),
                                        ("client secret", client_secret)) if not value]
    if missing:
        raise ZohoConfigError(f"missing {', '.join(missing)}", conn_id=conn_id)
    mask_secret(client_secret)
    base = allowed_url(accounts_url or zone.accounts_url, ACCOUNTS_HOSTS, conn_id=conn_id, field="accounts_url")
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "client_id": client_id,
        "client_secret": client_secret,
    }
    body = _post_token(None, base, data, conn_id=conn_id, region=zone.code, timeout=timeout)
    if body.get("error") == "invalid_code":
        raise ZohoGrantCodeRefused(
            f"Zoho refused the grant code (invalid_code) at {base}. A grant code works once and only for a few "
            f"minutes (the Time Duration chosen when generating it), and only in the data centre it was "
            f"generated in (region {zone.code!r} here). Generate a new code in the Self Client console "
            f"({console_host(zone.code)} for region {zone.code!r}) and run this again straight away",
            conn_id=conn_id,
        )
    if "error" in body or not body.get("access_token"):
        raise from_token_answer(body, conn_id=conn_id, region=zone.code, accounts_url=base)
    if not body.get("refresh_token"):
        raise ZohoAuthError(
            f"Zoho issued an access token but no refresh token at {base}: the code was probably generated for "
            "a different grant type. Generate a new code in the Self Client console (Generate Code tab) and "
            "run this again",
            conn_id=conn_id,
        )
    mask_secret(body["refresh_token"])
    mask_secret(body["access_token"])
    return GrantExchange(
        refresh_token=str(body["refresh_token"]),
        access_token=str(body["access_token"]),
        expires_at=time.time() + float(body.get("expires_in") or 3600),
        api_domain=str(body["api_domain"]) if body.get("api_domain") else None,
        scope=str(body["scope"]) if body.get("scope") else None,
        region=zone.code,
        accounts_url=base,
    )


def region_of_api_domain(api_domain: str | None) -> str | None:
    """The region whose Books host is ``api_domain`` (``https://www.zohoapis.in`` → ``in``), if any.

    >>> region_of_api_domain("https://www.zohoapis.in")
    'in'
    """
    if not api_domain:
        return None
    host = urlsplit(api_domain if "://" in api_domain else f"https://{api_domain}").hostname or ""
    for code, zone in REGIONS.items():
        if urlsplit(zone.api_url).hostname == host:
            return code
    return None


def console_host(region: str) -> str:
    """The API console beside a region's accounts host: ``api-console.zoho.in`` for ``in``.

    >>> console_host("ca")
    'api-console.zohocloud.ca'
    """
    host = urlsplit(get_region(region).accounts_url).hostname or "accounts.zoho.in"
    return "api-console." + host.removeprefix("accounts.")
