"""ZohoBooksHook: Zoho OAuth and the Zoho Books v3 API behind one Airflow connection."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import date
from functools import cached_property
from typing import Any

import requests
from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowNotFoundException
from airflow.sdk.log import mask_secret

from zoho_whatsapp.zoho.errors import (
    ZohoBadResponse,
    ZohoConfigError,
    ZohoConnectionMissing,
    ZohoError,
    ZohoOrganizationUnknown,
    ZohoQuotaExhausted,
    ZohoRateLimited,
    ZohoRegionUnknown,
    ZohoServerError,
    ZohoUnreachable,
    from_response,
)
from zoho_whatsapp.zoho.oauth import ZohoSettings, mint_access_token
from zoho_whatsapp.zoho.regions import ACCOUNTS_HOSTS, API_HOSTS, allowed_url, get_region
from zoho_whatsapp.zoho.token_cache import CachedToken, TokenCache

__all__ = ["Organization", "RequestPacer", "RetryPolicy", "ZohoBooksHook", "ZohoSettings"]

log = logging.getLogger(__name__)

PAGE_SIZE = 200  # Zoho's maximum per_page
# Zoho's own words for an invoice still owed: sent, overdue, partially_paid and viewed.
UNPAID = "unpaid"


@dataclass(frozen=True)
class Organization:
    organization_id: str
    name: str
    country_code: str
    currency_code: str


@dataclass
class RetryPolicy:
    """What one Books call may absorb before its error reaches the caller.

    A 401 refreshes the token once (it may have expired, or a newer token displaced it). Zoho's
    throttles (:class:`ZohoRateLimited`) are waited out as ``X-Rate-Limit-Reset`` says, at most
    ``max_throttle_waits`` times. A GET without an answer or with a 5xx is repeated twice with
    backoff: reads are safe to repeat, writes are not. The daily quota is never retried.
    """

    max_throttle_waits: int
    max_read_retries: int = 2
    refreshed: bool = False
    throttle_waits: int = 0
    read_retries: int = 0

    def refresh_first(self, exc: ZohoError) -> bool:
        """Whether to refresh the token and repeat the call (once per call)."""
        if exc.status == 401 and not self.refreshed:
            self.refreshed = True
            return True
        return False

    def wait_before_retry(self, exc: ZohoError, method: str, what: str) -> float | None:
        """Seconds to wait before repeating the call, or ``None`` to let ``exc`` reach the caller."""
        if isinstance(exc, ZohoQuotaExhausted):
            return None
        if isinstance(exc, ZohoRateLimited):
            self.throttle_waits += 1
            if self.throttle_waits > self.max_throttle_waits:
                raise ZohoRateLimited(
                    f"still throttled after {self.max_throttle_waits} waits on {what} ({exc.reason})",
                    conn_id=exc.conn_id, code=exc.code, status=exc.status,
                ) from exc
            return exc.retry_after if exc.retry_after is not None else 2.0**self.throttle_waits
        transient = isinstance(exc, (ZohoUnreachable, ZohoServerError)) or (exc.status or 0) >= 500
        if transient and method.upper() == "GET" and self.read_retries < self.max_read_retries:
            self.read_retries += 1
            return 2.0**self.read_retries
        return None


class RequestPacer:
    """At most ``limit`` requests in any ``window_seconds`` (Zoho: 100 a minute per organization).

    A sliding window over this process's requests. A request is counted from :meth:`wait` (before
    it leaves) and then dated by :meth:`done` (when its answer is back): Zoho counts it somewhere
    in between, so a new request waits until the oldest answer is a full window old, whatever the
    network took. Other processes calling the same organization are not seen here; their excess
    comes back as :class:`ZohoRateLimited`, which :class:`RetryPolicy` waits out.
    """

    def __init__(
        self,
        limit: int = 100,
        window_seconds: float = 60.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        margin_seconds: float = 0.01,
    ) -> None:
        if limit < 1 or window_seconds <= 0:
            raise ValueError(f"pacing needs limit >= 1 and a positive window, got {limit} per {window_seconds}s")
        self.limit = limit
        self.window_seconds = window_seconds
        self.clock = clock
        self.sleep = sleep
        self.margin_seconds = margin_seconds
        self.waited_seconds = 0.0
        self._answered: deque[float] = deque()  # when each answer in the window came back, oldest first
        self._in_flight = 0
        self._lock = threading.Lock()

    def wait(self) -> None:
        """Block until one more request fits in the window, then count it as in flight."""
        while True:
            with self._lock:
                now = self.clock()
                while self._answered and self._answered[0] <= now - self.window_seconds:
                    self._answered.popleft()
                if len(self._answered) + self._in_flight < self.limit:
                    self._in_flight += 1
                    return
                oldest = self._answered[0] if self._answered else now  # all in flight: look again shortly
                # never less than a millisecond: a float clock may not move for a smaller pause
                pause = max(oldest + self.window_seconds - now + self.margin_seconds, 0.001)
                self.waited_seconds += pause
            self.sleep(pause)

    def done(self) -> None:
        """The request counted by the last :meth:`wait` has its answer (or failed)."""
        with self._lock:
            self._in_flight = max(0, self._in_flight - 1)
            self._answered.append(self.clock())


class ZohoBooksHook(BaseHook):
    """
    Talk to Zoho Books v3 with a cached, shared OAuth access token.

    Connection ``zoho_books_default``: login = client id, password = client secret, extra:
    ``refresh_token``, ``region`` (us, eu, in, au, jp, ca, cn, sa; default in), optional
    ``organization_id``, ``accounts_url`` and ``api_url`` overrides (official Zoho hosts, or
    loopback for the sandbox: any other host is refused before a request leaves).

    .. code-block:: python

        hook = ZohoBooksHook()
        org = hook.get_organization()
        for invoice in hook.list_overdue_invoices():
            print(invoice["invoice_number"], invoice["balance"])

    Failures raise the class of :mod:`zoho_whatsapp.zoho.errors` for Zoho's answer; its message
    names the connection and ends with the fix.

    :param zoho_books_conn_id: the Airflow connection to use.
    :param timeout: seconds to wait for each HTTP response.
    :param max_throttle_waits: how many throttled answers to wait out before giving up.
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
        self.write_calls = 0  # of which writes (comments): reported apart from the reads a run needs
        self.token_requests = 0
        self.pacer: RequestPacer | None = None  # set (e.g. by ZohoComments) to stay within 100/minute
        self._token: CachedToken | None = None
        self._token_lock = threading.Lock()
        self._organization: Organization | None = None

    @classmethod
    def for_organization(cls, conn_id: str | None, organization_id: str) -> ZohoBooksHook:
        """A hook on ``conn_id`` (``None``: the default connection) that calls ``organization_id``.

        Several organizations may share one Zoho login, so one connection (and its cached token)
        serves them all; the organization is the run's, not the connection's ``extra.organization_id``.
        The connection is read here, so a missing or incomplete one fails now, naming it.

        .. code-block:: python

            hook = ZohoBooksHook.for_organization("zoho_books_default", "60012345678")
            invoices = hook.list_open_invoices(customer_id)
        """
        hook = cls(conn_id or cls.default_conn_name)
        hook.settings = replace(hook.settings, organization_id=organization_id)
        return hook

    # -- connection -------------------------------------------------------------------------

    @cached_property
    def settings(self) -> ZohoSettings:
        """The connection's fields, checked: the one place they are read, before any request leaves."""
        conn_id = self.zoho_books_conn_id
        try:
            conn = self.get_connection(conn_id)
        except AirflowNotFoundException as exc:
            raise ZohoConnectionMissing(str(exc), conn_id=conn_id) from None
        extra = conn.extra_dejson
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
            raise ZohoConfigError(f"connection {conn_id!r} is missing {', '.join(missing)}", conn_id=conn_id)
        try:
            region = get_region(extra.get("region"))
        except ValueError as exc:
            raise ZohoRegionUnknown(str(exc), conn_id=conn_id) from None
        refresh_token = str(extra["refresh_token"])
        mask_secret(refresh_token)
        mask_secret(conn.password)
        org = extra.get("organization_id")
        api_url = extra.get("api_url")
        return ZohoSettings(
            conn_id=conn_id,
            client_id=conn.login,
            client_secret=conn.password,
            refresh_token=refresh_token,
            region=region.code,
            accounts_url=allowed_url(
                extra.get("accounts_url") or region.accounts_url, ACCOUNTS_HOSTS, conn_id=conn_id,
                field="extra.accounts_url",
            ),
            api_url=allowed_url(api_url, API_HOSTS, conn_id=conn_id, field="extra.api_url") if api_url else None,
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
        """``https://www.zohoapis.in/books/v3`` for an Indian account.

        The token's ``api_domain`` comes from the token endpoint (or the shared cache Variable), so it
        passes the same host check as the connection's fields.
        """
        s = self.settings
        if s.api_url:
            base = s.api_url
        elif self._token and self._token.api_domain:
            base = allowed_url(self._token.api_domain, API_HOSTS, conn_id=s.conn_id, field="the token's api_domain")
        else:
            base = get_region(s.region).api_url
        return f"{base}/books/v3"

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
        self.token_requests += 1
        token = mint_access_token(self.settings, self._session, timeout=self.timeout)
        self.token_cache.put(token)
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
        """Call ``/books/v3/<path>`` and return the decoded envelope of a successful answer.

        Adds ``organization_id``; :meth:`run` sends once and :meth:`check_response` turns Zoho's
        error envelopes (HTTP 200 ones too) into the error classes; :class:`RetryPolicy` decides
        which of those are refreshed, waited out or repeated.
        """
        query = dict(params or {})
        if organization:
            query["organization_id"] = self.organization_id
        what = f"{method} {path}"
        policy = RetryPolicy(self.max_throttle_waits)
        while True:
            token = self.get_access_token(min_validity=60)
            try:
                return self.check_response(self.run(method, path, token, params=query, json=json), what)
            except ZohoError as exc:
                if policy.refresh_first(exc):
                    log.info("Zoho answered 401 on %s: refreshing the access token once and retrying", path)
                    self.token_cache.forget()
                    self.refresh_access_token(stale=token)
                    continue
                wait = policy.wait_before_retry(exc, method, what)
                if wait is None:
                    raise
                self._sleep(wait, f"{exc.__class__.__name__} on {what}")

    def run(
        self, method: str, path: str, token: str, *, params: dict[str, Any], json: dict[str, Any] | None
    ) -> requests.Response:
        """Send one Books API request; no answer at all raises :class:`ZohoUnreachable`."""
        url = f"{self.api_root}/{path.lstrip('/')}"
        pacer = self.pacer
        if pacer is not None:
            pacer.wait()
        self.api_calls += 1
        if method.upper() != "GET":
            self.write_calls += 1
        try:
            return self._session.request(
                method, url, params=params, json=json,
                headers={"Authorization": f"Zoho-oauthtoken {token}"}, timeout=self.timeout,
            )
        except requests.RequestException as exc:
            raise ZohoUnreachable(f"{method} {path} failed: {exc}", conn_id=self.zoho_books_conn_id) from exc
        finally:
            if pacer is not None:
                pacer.done()

    def check_response(self, response: requests.Response, what: str) -> dict[str, Any]:
        """The envelope of a successful answer; otherwise raise the class for Zoho's code."""
        body = _json_or_none(response)
        error = from_response(response.status_code, body, conn_id=self.zoho_books_conn_id, what=what)
        if error is None:
            return body
        error.retry_after = _reset_seconds(response)
        raise error

    @property
    def read_calls(self) -> int:
        """Books API reads made by this hook: what a run's call budget is about."""
        return self.api_calls - self.write_calls

    def iter_pages(self, path: str, key: str, params: dict[str, Any] | None = None) -> Iterator[list[dict[str, Any]]]:
        """Yield each page's rows, 200 at a time, until ``page_context.has_more_page`` is false."""
        page = 1
        while True:
            body = self.request("GET", path, params={**(params or {}), "page": page, "per_page": PAGE_SIZE})
            rows = body.get(key)
            if not isinstance(rows, list):
                raise ZohoBadResponse(f"GET {path} page {page}: the response has no {key!r} list",
                                      conn_id=self.zoho_books_conn_id)
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
                raise ZohoOrganizationUnknown(
                    f"{where}: organization_id {wanted} is not one of this account's organizations: {listing}",
                    conn_id=self.zoho_books_conn_id,
                )
        elif len(orgs) == 1:
            match = orgs
            log.info("using the account's only organization %s", listing)
        else:
            raise ZohoOrganizationUnknown(
                f"{where}: set extra.organization_id; the account has {len(orgs)} organizations: {listing}",
                conn_id=self.zoho_books_conn_id,
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

    def iter_unique_rows(self, path: str, key: str, params: dict[str, Any], id_field: str) -> Iterator[dict[str, Any]]:
        """Every row of a listing once, in Zoho's order, 200 per request.

        Zoho has been seen listing a row twice across pages; the repeat is dropped here.
        """
        seen: set[str] = set()
        duplicates = 0
        for rows in self.iter_pages(path, key, params):
            for row in rows:
                row_id = str(row.get(id_field) or "")
                if row_id in seen:
                    duplicates += 1
                    continue
                seen.add(row_id)
                yield row
        if duplicates:
            log.info("Zoho listed %d %s row(s) twice; kept one copy of each", duplicates, path)

    def iter_overdue_invoices(self) -> Iterator[dict[str, Any]]:
        """Every overdue invoice once, streamed in Zoho's order (due date), 200 per request."""
        params = {"status": "overdue", "sort_column": "due_date", "sort_order": "A"}
        return self.iter_unique_rows("invoices", "invoices", params, "invoice_id")

    def list_overdue_invoices(self) -> list[dict[str, Any]]:
        """Every overdue invoice, once each, oldest due date first."""
        return sorted(
            self.iter_overdue_invoices(), key=lambda r: (str(r.get("due_date") or ""), str(r.get("invoice_id")))
        )

    def iter_invoices_due_between(self, start: date, end: date) -> Iterator[dict[str, Any]]:
        """Unpaid invoices not yet overdue whose due date is ``start``..``end`` (both included, IST days).

        What the pre-due stages (``-3``, ``0``) need, in one listing beside the overdue one:
        ``status=unpaid`` with the contract's ``due_date_start``/``due_date_end``, 200 per request,
        each invoice once. A row Zoho already calls overdue is left to :meth:`iter_overdue_invoices`,
        so the two listings never hand the same invoice over twice. List rows carry
        ``payment_expected_date`` and ``custom_fields`` as they are.
        """
        if end < start:
            raise ValueError(f"due-date range ends ({end}) before it starts ({start})")
        params = {
            "status": UNPAID,
            "due_date_start": start.isoformat(),
            "due_date_end": end.isoformat(),
            "sort_column": "due_date",
            "sort_order": "A",
        }
        for row in self.iter_unique_rows("invoices", "invoices", params, "invoice_id"):
            if str(row.get("status") or "").lower() != "overdue":
                yield row

    def list_open_invoices(self, customer_id: str) -> list[dict[str, Any]]:
        """A customer's unpaid invoices as Zoho has them now, oldest due date first.

        The live-balance re-read before a late send: one call per 200 of the customer's invoices
        (``customer_id`` + ``status=unpaid``); an invoice paid since the fetch is simply not here.
        """
        params = {"customer_id": str(customer_id), "status": UNPAID, "sort_column": "due_date", "sort_order": "A"}
        rows = self.iter_unique_rows("invoices", "invoices", params, "invoice_id")
        return sorted(rows, key=lambda r: (str(r.get("due_date") or ""), str(r.get("invoice_id"))))

    def list_overdue_contacts(self) -> dict[str, dict[str, Any]]:
        """Customers with an overdue invoice, keyed by ``contact_id``: one paginated pass."""
        return self._contacts_with("Invoice.OverDue")

    def list_unpaid_contacts(self) -> dict[str, dict[str, Any]]:
        """Customers with an unpaid invoice, overdue or not yet due, keyed by ``contact_id``.

        ``filter_by=Invoice.Unpaid`` (contacts.yml): ⌈customers/200⌉ calls give the numbers of
        everyone a pre-due or overdue stage may message.
        """
        return self._contacts_with("Invoice.Unpaid")

    def _contacts_with(self, filter_by: str) -> dict[str, dict[str, Any]]:
        rows = self.iter_unique_rows("contacts", "contacts", {"filter_by": filter_by}, "contact_id")
        return {str(row.get("contact_id")): row for row in rows}

    def get_contact(self, contact_id: str) -> dict[str, Any]:
        return self.request("GET", f"contacts/{contact_id}").get("contact") or {}

    def get_contact_numbers(self, contact_id: str) -> tuple[str, ...]:
        """The numbers typed into a contact, mobile first (see :func:`~zoho_whatsapp.zoho.contacts.contact_numbers`)."""
        from zoho_whatsapp.zoho.contacts import contact_numbers

        return contact_numbers(self.get_contact(contact_id))

    def find_invoice(self, invoice_number: str) -> dict[str, Any] | None:
        """The invoice numbered exactly ``invoice_number`` (a list row), or ``None``."""
        rows = self.request("GET", "invoices", params={"invoice_number": invoice_number}).get("invoices") or []
        return next((r for r in rows if str(r.get("invoice_number")) == invoice_number), None)

    def get_invoice(self, invoice_id: str) -> dict[str, Any]:
        return self.request("GET", f"invoices/{invoice_id}").get("invoice") or {}

    def get_customer_payment(self, payment_id: str) -> dict[str, Any]:
        return self.request("GET", f"customerpayments/{payment_id}").get("payment") or {}

    def check_connection(self) -> str:
        """Refresh a token and reach the organization; a failure raises its error class."""
        self.get_access_token()
        org = self.get_organization()
        return f"Connected to Zoho Books organization {org.organization_id} ({org.name})"

    def test_connection(self) -> tuple[bool, str]:
        """What Airflow's "Test" button shows: :meth:`check_connection`'s text, or the error and its fix."""
        try:
            return True, self.check_connection()
        except Exception as exc:
            return False, str(exc)

    def _sleep(self, seconds: float, why: str) -> None:
        seconds = max(0.0, min(seconds, self.max_wait_seconds))
        log.warning("%s: waiting %.1fs", why, seconds)
        time.sleep(seconds)


def _json_or_none(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _reset_seconds(response: requests.Response) -> float | None:
    header = response.headers.get("X-Rate-Limit-Reset") or response.headers.get("Retry-After")
    try:
        return float(header) + 0.5 if header is not None else None
    except ValueError:
        return None
