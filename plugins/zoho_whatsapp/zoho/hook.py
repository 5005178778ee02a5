"""ZohoBooksHook: Zoho OAuth and the Zoho Books v3 API behind one Airflow connection."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import requests
from airflow.sdk import BaseHook
from airflow.sdk.log import mask_secret

from zoho_whatsapp.zoho.errors import (
    ZohoApiError,
    ZohoAuthError,
    ZohoConfigError,
    ZohoError,
    ZohoQuotaExhausted,
    ZohoRateLimited,
    ZohoTokenThrottled,
)
from zoho_whatsapp.zoho.regions import get_region
from zoho_whatsapp.zoho.token_cache import CachedToken, TokenCache

log = logging.getLogger(__name__)

PAGE_SIZE = 200  # Zoho's maximum per_page
THROTTLE_CODES = {44, 1070}  # per-minute and concurrency limits: waiting helps
QUOTA_CODE = 45  # daily quota: waiting until tomorrow is the only fix


@dataclass(frozen=True)
class ZohoSettings:
    """Everything the hook needs, merged from the connection in one place."""

    conn_id: str
    client_id: str
    client_secret: str
    refresh_token: str
    region: str
    accounts_url: str
    api_url: str | None  # explicit override; otherwise the token's api_domain, then the region
    organization_id: str | None


@dataclass(frozen=True)
class Organization:
    organization_id: str
    name: str
    country_code: str
    currency_code: str


class ZohoBooksHook(BaseHook):
    """
    Talk to Zoho Books v3 with a cached, shared OAuth access token.

    Connection ``zoho_books_default``: login = client id, password = client secret, extra:
    ``refresh_token``, ``region`` (us, eu, in, au, jp, ca, cn, sa; default in), optional
    ``organization_id``, ``accounts_url`` and ``api_url`` overrides.

    .. code-block:: python

        hook = ZohoBooksHook()
        org = hook.get_organization()
        for invoice in hook.list_overdue_invoices():
            print(invoice["invoice_number"], invoice["balance"])

    :param zoho_books_conn_id: the Airflow connection to use.
    :param timeout: seconds to wait for each HTTP response.
    :param max_throttle_waits: how many 429 answers (codes 44/1070) to wait out before giving up.
    """

    conn_name_attr = "zoho_books_conn_id"
    default_conn_name = "zoho_books_default"
    conn_type = "zoho_books"
    hook_name = "Zoho Books"

    def __init__(
        self,
        zoho_books_conn_id: str = default_conn_name,
        *,
        timeout: float = 30.0,
        max_throttle_waits: int = 5,
        max_wait_seconds: float = 60.0,
        use_variable_cache: bool = True,
    ) -> None:
        super().__init__()
        self.zoho_books_conn_id = zoho_books_conn_id
        self.timeout = timeout
        self.max_throttle_waits = max_throttle_waits
        self.max_wait_seconds = max_wait_seconds
        self.use_variable_cache = use_variable_cache
        self.api_calls = 0  # Books API requests made by this hook (the daily quota counts these)
        self.token_requests = 0
        self._token: CachedToken | None = None
        self._token_lock = threading.Lock()
        self._organization: Organization | None = None

    # -- connection -------------------------------------------------------------------------

    @cached_property
    def settings(self) -> ZohoSettings:
        conn = self.get_connection(self.zoho_books_conn_id)
        extra = conn.extra_dejson
        where = f"connection {self.zoho_books_conn_id!r}"
        missing = [
            field
            for field, value in (
                ("login (client id)", conn.login),
                ("password (client secret)", conn.password),
                ("extra.refresh_token", extra.get("refresh_token")),
            )
            if not value
        ]
        if missing:
            raise ZohoConfigError(f"{where} is missing {', '.join(missing)}")
        try:
            region = get_region(extra.get("region"))
        except ValueError as exc:
            raise ZohoConfigError(f"{where}: {exc}") from None
        refresh_token = str(extra["refresh_token"])
        mask_secret(refresh_token)
        mask_secret(conn.password)
        org = extra.get("organization_id")
        return ZohoSettings(
            conn_id=self.zoho_books_conn_id,
            client_id=conn.login,
            client_secret=conn.password,
            refresh_token=refresh_token,
            region=region.code,
            accounts_url=(extra.get("accounts_url") or region.accounts_url).rstrip("/"),
            api_url=(extra.get("api_url") or "").rstrip("/") or None,
            organization_id=str(org) if org else None,
        )

    @cached_property
    def token_cache(self) -> TokenCache:
        s = self.settings
        return TokenCache(s.conn_id, s.client_id, s.refresh_token, use_variables=self.use_variable_cache)

    def get_conn(self) -> requests.Session:
        """The pooled HTTP session every call goes through."""
        return self._session

    @cached_property
    def _session(self) -> requests.Session:
        session = requests.Session()
        session.headers["Accept"] = "application/json"
        return session

    @property
    def api_root(self) -> str:
        """``https://www.zohoapis.in/books/v3`` for an Indian account."""
        s = self.settings
        base = s.api_url or (self._token.api_domain if self._token else None) or get_region(s.region).api_url
        return f"{base.rstrip('/')}/books/v3"

    # -- OAuth ------------------------------------------------------------------------------

    def get_access_token(self, min_validity: float = 300.0) -> str:
        """Return a token valid for ``min_validity`` more seconds, refreshing only when needed."""
        with self._token_lock:
            token = self._token if self._token and self._token.valid_for(min_validity) else None
            if token is None:
                cached = self.token_cache.get()
                if cached is not None and cached.valid_for(min_validity):
                    token = cached
            if token is None:
                token = self._request_token()
            self._token = token
            mask_secret(token.access_token)
            return token.access_token

    def refresh_access_token(self, stale: str | None = None) -> str:
        """Mint a new token, unless another thread already replaced ``stale``."""
        with self._token_lock:
            if stale is not None and self._token is not None and self._token.access_token != stale:
                return self._token.access_token
            self._token = self._request_token()
            return self._token.access_token

    def _request_token(self) -> CachedToken:
        s = self.settings
        url = f"{s.accounts_url}/oauth/v2/token"
        data = {
            "grant_type": "refresh_token",
            "refresh_token": s.refresh_token,
            "client_id": s.client_id,
            "client_secret": s.client_secret,
        }
        self.token_requests += 1
        try:
            response = self._session.post(url, data=data, timeout=self.timeout)
        except requests.RequestException as exc:
            raise ZohoError(f"connection {s.conn_id!r}: could not reach {url}: {exc}") from exc
        body = _json_or_none(response)
        if body is None or not isinstance(body, dict):
            raise ZohoAuthError(
                f"connection {s.conn_id!r}: {url} answered HTTP {response.status_code} without JSON; "
                f"is accounts_url right for region {s.region!r}?",
                status=response.status_code,
            )
        if "error" in body or "access_token" not in body:
            raise token_error(s, body)
        token = CachedToken(
            access_token=body["access_token"],
            expires_at=time.time() + float(body.get("expires_in", 3600)),
            api_domain=body.get("api_domain"),
        )
        mask_secret(token.access_token)
        self.token_cache.put(token)
        log.info(
            "Zoho access token refreshed for connection %s (valid %ss, api domain %s)",
            s.conn_id,
            body.get("expires_in", 3600),
            token.api_domain,
        )
        return token

    # -- Books API --------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: dict[str, Any] | None = None,
        organization: bool = True,
    ) -> dict[str, Any]:
        """Call ``/books/v3/<path>`` and return the decoded envelope (``code`` 0 guaranteed).

        Adds ``organization_id``, refreshes the token once on 401, waits out 429 throttles
        (codes 44 and 1070, honouring ``X-Rate-Limit-Reset``) and turns Zoho's error
        envelopes, including those sent with HTTP 200, into exceptions.
        """
        query = dict(params or {})
        if organization:
            query["organization_id"] = self.organization_id
        refreshed = False
        waits = 0
        server_errors = 0
        while True:
            token = self.get_access_token(min_validity=60)
            url = f"{self.api_root}/{path.lstrip('/')}"
            self.api_calls += 1
            try:
                response = self._session.request(
                    method,
                    url,
                    params=query,
                    json=json,
                    headers={"Authorization": f"Zoho-oauthtoken {token}"},
                    timeout=self.timeout,
                )
            except requests.RequestException as exc:
                if method.upper() == "GET" and server_errors < 2:
                    server_errors += 1
                    self._sleep(2.0**server_errors, f"{exc.__class__.__name__} on GET {path}")
                    continue
                raise ZohoError(f"connection {self.zoho_books_conn_id!r}: {method} {path} failed: {exc}") from exc
            body = _json_or_none(response)
            code = body.get("code") if isinstance(body, dict) else None
            message = body.get("message") if isinstance(body, dict) else None

            if response.status_code == 401 and not refreshed:
                refreshed = True
                log.info("Zoho answered 401 on %s: refreshing the access token once and retrying", path)
                self.token_cache.forget()
                self.refresh_access_token(stale=token)
                continue
            if response.status_code == 401:
                raise ZohoAuthError(
                    f"connection {self.zoho_books_conn_id!r}: Zoho rejected a freshly refreshed token on "
                    f"{path} (HTTP 401, code {code}: {message}). Check the region (now "
                    f"{self.settings.region!r}, API {self.api_root}) and the scopes of the grant.",
                    code=code,
                    status=401,
                )
            if code == QUOTA_CODE:
                raise ZohoQuotaExhausted(
                    f"connection {self.zoho_books_conn_id!r}: the organization's daily Zoho Books API quota is "
                    f"spent (code 45: {message}). It resets at midnight in the organization's time zone; "
                    "re-run then, or upgrade the Zoho plan.",
                    code=code,
                    status=response.status_code,
                )
            if response.status_code == 429 or code in THROTTLE_CODES:
                waits += 1
                if waits > self.max_throttle_waits:
                    raise ZohoRateLimited(
                        f"connection {self.zoho_books_conn_id!r}: still throttled after {self.max_throttle_waits} "
                        f"waits on {path} (code {code}: {message})",
                        code=code,
                        status=response.status_code,
                    )
                self._sleep(_reset_seconds(response, waits), f"Zoho throttle (code {code}) on {path}")
                continue
            if response.status_code >= 500 and method.upper() == "GET" and server_errors < 2:
                server_errors += 1
                self._sleep(2.0**server_errors, f"Zoho HTTP {response.status_code} on {path}")
                continue
            if not isinstance(body, dict):
                raise ZohoApiError(
                    f"connection {self.zoho_books_conn_id!r}: {method} {path} answered HTTP "
                    f"{response.status_code} with a body that is not a Zoho envelope: {response.text[:200]!r}",
                    status=response.status_code,
                )
            if code != 0 or response.status_code >= 400:
                raise ZohoApiError(
                    f"connection {self.zoho_books_conn_id!r}: {method} {path} failed with Zoho code {code}: "
                    f"{message} (HTTP {response.status_code})" + _hint(code, message),
                    code=code,
                    status=response.status_code,
                )
            return body

    def iter_pages(self, path: str, key: str, params: dict[str, Any] | None = None) -> Iterator[list[dict[str, Any]]]:
        """Yield each page's rows, 200 at a time, until ``page_context.has_more_page`` is false."""
        page = 1
        while True:
            body = self.request("GET", path, params={**(params or {}), "page": page, "per_page": PAGE_SIZE})
            rows = body.get(key)
            if not isinstance(rows, list):
                raise ZohoApiError(f"GET {path} page {page}: the response has no {key!r} list")
            yield rows
            context = body.get("page_context") or {}
            if not context.get("has_more_page"):
                return
            page += 1

    # -- organization -----------------------------------------------------------------------

    def list_organizations(self) -> list[dict[str, Any]]:
        return self.request("GET", "organizations", organization=False).get("organizations") or []

    @property
    def organization_id(self) -> str:
        return self.get_organization().organization_id

    def use_organization(self, organization: Organization) -> None:
        """Skip discovery: an earlier task of the run already resolved the organization."""
        self._organization = organization

    def get_organization(self) -> Organization:
        """The configured organization, or the only one the account has.

        Without ``organization_id`` in the connection, an account with several organizations
        is an error that lists them, never a guess.
        """
        if self._organization is not None:
            return self._organization
        orgs = self.list_organizations()
        wanted = self.settings.organization_id
        where = f"connection {self.zoho_books_conn_id!r}"
        listing = ", ".join(f"{o.get('organization_id')} ({o.get('name')})" for o in orgs) or "none"
        if wanted:
            match = [o for o in orgs if str(o.get("organization_id")) == wanted]
            if not match:
                raise ZohoConfigError(
                    f"{where}: organization_id {wanted} is not one of this account's organizations: {listing}"
                )
        elif len(orgs) == 1:
            match = orgs
            log.info("using the account's only organization %s", listing)
        else:
            raise ZohoConfigError(
                f"{where}: set extra.organization_id; the account has {len(orgs)} organizations: {listing}"
            )
        o = match[0]
        self._organization = Organization(
            organization_id=str(o["organization_id"]),
            name=str(o.get("name") or ""),
            country_code=str(o.get("country_code") or "IN").upper(),
            currency_code=str(o.get("currency_code") or "INR").upper(),
        )
        return self._organization

    # -- receivables ------------------------------------------------------------------------

    def iter_overdue_invoices(self) -> Iterator[dict[str, Any]]:
        """Every overdue invoice once, streamed in Zoho's order (due date), 200 per request.

        Zoho has been seen listing a row twice across pages; the repeat is dropped here.
        """
        seen: set[str] = set()
        duplicates = 0
        params = {"status": "overdue", "sort_column": "due_date", "sort_order": "A"}
        for rows in self.iter_pages("invoices", "invoices", params):
            for row in rows:
                invoice_id = str(row.get("invoice_id") or "")
                if invoice_id in seen:
                    duplicates += 1
                    continue
                seen.add(invoice_id)
                yield row
        if duplicates:
            log.info("Zoho listed %d invoice(s) twice; kept one copy of each", duplicates)

    def list_overdue_invoices(self) -> list[dict[str, Any]]:
        """Every overdue invoice, once each, oldest due date first."""
        return sorted(
            self.iter_overdue_invoices(), key=lambda r: (str(r.get("due_date") or ""), str(r.get("invoice_id")))
        )

    def list_overdue_contacts(self) -> dict[str, dict[str, Any]]:
        """Customers with an overdue invoice, keyed by ``contact_id``: one paginated pass."""
        contacts: dict[str, dict[str, Any]] = {}
        for rows in self.iter_pages("contacts", "contacts", {"filter_by": "Invoice.OverDue"}):
            for row in rows:
                contacts[str(row.get("contact_id"))] = row
        return contacts

    def get_contact(self, contact_id: str) -> dict[str, Any]:
        return self.request("GET", f"contacts/{contact_id}").get("contact") or {}

    def get_invoice(self, invoice_id: str) -> dict[str, Any]:
        return self.request("GET", f"invoices/{invoice_id}").get("invoice") or {}

    def get_customer_payment(self, payment_id: str) -> dict[str, Any]:
        return self.request("GET", f"customerpayments/{payment_id}").get("payment") or {}

    def test_connection(self) -> tuple[bool, str]:
        """Refresh a token and reach the organization, as Airflow's "Test" button expects."""
        try:
            self.get_access_token()
            org = self.get_organization()
        except Exception as exc:
            return False, str(exc)
        return True, f"Connected to Zoho Books organization {org.organization_id} ({org.name})"

    def _sleep(self, seconds: float, why: str) -> None:
        seconds = max(0.0, min(seconds, self.max_wait_seconds))
        log.warning("%s: waiting %.1fs", why, seconds)
        time.sleep(seconds)


def token_error(settings: ZohoSettings, body: dict[str, Any]) -> ZohoError:
    """Turn Zoho's HTTP-200 token errors into exceptions that say what to do."""
    error = str(body.get("error") or "no access_token in the response")
    where = f"connection {settings.conn_id!r}"
    if error == "invalid_code":
        return ZohoAuthError(
            f"{where}: Zoho refused the refresh token (invalid_code). It was revoked, or belongs to another "
            f"data centre than region {settings.region!r} ({settings.accounts_url}). Generate a new grant "
            "code in the Self Client console and exchange it again."
        )
    if error == "invalid_client":
        return ZohoAuthError(
            f"{where}: Zoho does not know this client id/secret (invalid_client) at {settings.accounts_url}. "
            "Check login/password and that the Self Client was created in the same region."
        )
    if "too many requests" in str(body.get("error_description", "")).lower() or error == "Access Denied":
        return ZohoTokenThrottled(
            f"{where}: Zoho is throttling token requests (more than 10 in 10 minutes for this refresh "
            "token). Wait 10 minutes; the hook caches tokens so this only happens when many processes "
            "refresh at once or the token cache Variable cannot be written."
        )
    return ZohoAuthError(f"{where}: token request failed: {error} {body.get('error_description', '')}".strip())


def _json_or_none(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _reset_seconds(response: requests.Response, attempt: int) -> float:
    header = response.headers.get("X-Rate-Limit-Reset") or response.headers.get("Retry-After")
    try:
        return float(header) + 0.5 if header is not None else 2.0**attempt
    except ValueError:
        return 2.0**attempt


def _hint(code: Any, message: Any) -> str:
    text = str(message or "").lower()
    if "organization" in text or code == 6041:
        return ". Check extra.organization_id (GET /organizations lists the valid ones)."
    if code == 57:
        return ". The grant's scopes do not allow this call: include ZohoBooks.invoices.READ and ZohoBooks.contacts.READ."
    return ""
