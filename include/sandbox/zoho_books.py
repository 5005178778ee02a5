"""Zoho Books API v3 imitation (``/books/v3/...``).

Order of checks for every call, as a client experiences them:

1. ``Authorization: Zoho-oauthtoken <token>``.  Missing header, ``Bearer`` scheme, unknown or
   revoked token, or a token whose scope lacks the module -> HTTP 401
   ``{"code":57,"message":"You are not authorized to perform this operation"}``.
   An *expired* token -> HTTP 401 ``{"code":14,"message":"Invalid value passed for authtoken."}``
   (the code Zoho Books has been seen using for stale tokens).  Clients should refresh on any 401.
2. Counted faults (``zoho_5xx``, ``zoho_429``, ``zoho_1070``, ``zoho_error_envelope_200``) and
   ``zoho_quota_exhausted``.
3. More than ``zoho_concurrency_limit`` (10) calls in flight -> 429 code 1070.
4. ``zoho_latency_ms`` sleep.
5. Daily quota (``zoho_daily_quota``, 5000) -> 429 code 45; per-minute limit
   (``zoho_rate_limit_per_minute``, 100, rolling ``zoho_rate_window_seconds``) -> 429 code 44.
6. ``organization_id`` (all but ``GET /organizations``): missing -> 400 code 2, unknown ->
   400 code 6041.
7. The resource itself.

Every answer carries ``X-Rate-Limit-Limit``, ``X-Rate-Limit-Remaining`` and
``X-Rate-Limit-Reset`` (seconds until the rolling minute window frees a slot).
"""

from __future__ import annotations

import collections
import json
import math
import re
import threading
import time
from collections.abc import Callable
from datetime import date
from typing import Any

from .faults import Faults
from .store import QueryError, Store, today_ist
from .wire import HTML, JSON_ZOHO, Reply, Request, html_page
from .zoho_oauth import TokenCheck, ZohoOAuth, scope_allows

NOT_AUTHORIZED = {"code": 57, "message": "You are not authorized to perform this operation"}
EXPIRED = {"code": 14, "message": "Invalid value passed for authtoken."}
RATE_44 = {
    "code": 44,
    "message": "You have made too many requests continuously. Please try again after some time.",
}
CONCURRENT_1070 = {
    "code": 1070,
    "message": "You have exceeded the maximum number of concurrent API calls allowed. "
    "Please try again after some time.",
}
DAILY_45 = {
    "code": 45,
    "message": "You have exceeded the daily API limit allowed for your organization. "
    "Please try again tomorrow.",
}
MAX_PER_PAGE = 200
STRING_AMOUNTS = ("total", "balance", "shipping_charge")

Route = tuple[str, re.Pattern[str], str, str, str]  # method, pattern, handler, module, op
_ID = r"(\d+)"
ROUTES: list[Route] = [
    ("GET", re.compile(r"/organizations"), "list_organizations", "settings", "READ"),
    ("GET", re.compile(rf"/organizations/{_ID}"), "get_organization", "settings", "READ"),
    ("GET", re.compile(r"/invoices"), "list_invoices", "invoices", "READ"),
    ("GET", re.compile(rf"/invoices/{_ID}"), "get_invoice", "invoices", "READ"),
    ("GET", re.compile(rf"/invoices/{_ID}/comments"), "list_comments", "invoices", "READ"),
    ("POST", re.compile(rf"/invoices/{_ID}/comments"), "add_comment", "invoices", "CREATE"),
    ("GET", re.compile(r"/contacts"), "list_contacts", "contacts", "READ"),
    ("GET", re.compile(rf"/contacts/{_ID}"), "get_contact", "contacts", "READ"),
    ("GET", re.compile(r"/customerpayments"), "list_payments", "customerpayments", "READ"),
    ("GET", re.compile(rf"/customerpayments/{_ID}"), "get_payment", "customerpayments", "READ"),
]


class ZohoBooks:
    def __init__(self, store: Store, oauth: ZohoOAuth, faults: Faults, wake: threading.Event) -> None:
        self.store = store
        self.oauth = oauth
        self.faults = faults
        self.wake = wake
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.windows: dict[str, collections.deque] = {}
            self.daily: dict[tuple[str, date], int] = {}
            self.inflight = 0

    # ------------------------------------------------------------------ entry point
    def handle(self, req: Request) -> Reply:
        sub = req.path[len("/books/v3"):].rstrip("/") or "/"
        route, args, allowed_methods = self._route(req.method, sub)
        bucket = req.query.get("organization_id") or self._default_org()
        if route is None:
            if allowed_methods:
                body = {"code": 37, "message": f"The HTTP method {req.method} is not allowed for the requested resource"}
                return self._headers(Reply(405, body), bucket)
            return self._headers(Reply(404, {"code": 5, "message": "Invalid URL Passed"}), bucket)
        _, _, handler_name, module, op = route

        check = self.oauth.check(req.header("authorization"))
        if check.state == TokenCheck.EXPIRED:
            return self._headers(Reply(401, dict(EXPIRED)), bucket)
        if check.state != TokenCheck.OK or not scope_allows(check.token.scope, module, op):
            return self._headers(Reply(401, dict(NOT_AUTHORIZED)), bucket)

        fault = self._fault_reply()
        if fault is not None:
            return self._headers(fault, bucket, reset_override=1 if fault.status == 429 else None)

        with self.lock:
            if self.inflight >= int(self.faults.get("zoho_concurrency_limit")):
                busy = True
            else:
                busy = False
                self.inflight += 1
        if busy:
            return self._headers(Reply(429, dict(CONCURRENT_1070)), bucket)
        try:
            latency = float(self.faults.get("zoho_latency_ms") or 0) / 1000.0
            if latency > 0:
                self.wake.wait(latency)
            limited = self._count_request(bucket)
            if limited is not None:
                return self._headers(limited, bucket)
            if handler_name != "list_organizations":
                org_error = self._check_org(req.query.get("organization_id"))
                if org_error is not None:
                    return self._headers(org_error, bucket)
            reply = getattr(self, "_" + handler_name)(req, *args)
            if reply.status == 200 and reply.envelope_code() == 0 and self.faults.tick_expire_countdown():
                self.oauth.expire_all()
            return self._headers(reply, bucket)
        finally:
            with self.lock:
                self.inflight -= 1

    # ------------------------------------------------------------------ plumbing
    def _route(self, method: str, sub: str) -> tuple[Route | None, tuple[str, ...], list[str]]:
        methods = []
        for route in ROUTES:
            m = route[1].fullmatch(sub)
            if m:
                if route[0] == method:
                    return route, m.groups(), []
                methods.append(route[0])
        return None, (), methods

    def _default_org(self) -> str:
        return self.store.organizations[0]["organization_id"]

    def _fault_reply(self) -> Reply | None:
        f = self.faults
        if f.take("zoho_5xx"):
            status = int(f.get("zoho_5xx_status") or 500)
            if status == 500:
                return Reply(500, {"code": 500, "message": "Internal error"})
            return Reply(status, html_page(status, {502: "Bad Gateway", 503: "Service Temporarily Unavailable",
                                                    504: "Gateway Time-out"}.get(status, "Error")), HTML)
        if f.get("zoho_quota_exhausted"):
            return Reply(429, dict(DAILY_45))
        if f.take("zoho_429"):
            return Reply(429, dict(RATE_44))
        if f.take("zoho_1070"):
            return Reply(429, dict(CONCURRENT_1070))
        if f.take("zoho_error_envelope_200"):
            return Reply(200, {"code": int(f.get("zoho_error_envelope_code")),
                               "message": str(f.get("zoho_error_envelope_message"))})
        return None

    def _count_request(self, bucket: str) -> Reply | None:
        now = time.monotonic()
        limit = int(self.faults.get("zoho_rate_limit_per_minute"))
        window = float(self.faults.get("zoho_rate_window_seconds"))
        quota = int(self.faults.get("zoho_daily_quota"))
        with self.lock:
            day_key = (bucket, today_ist())
            if self.daily.get(day_key, 0) >= quota:
                return Reply(429, dict(DAILY_45))
            hits = self.windows.setdefault(bucket, collections.deque())
            while hits and hits[0] <= now - window:
                hits.popleft()
            if len(hits) >= limit:
                return Reply(429, dict(RATE_44))
            hits.append(now)
            self.daily[day_key] = self.daily.get(day_key, 0) + 1
        return None

    def _headers(self, reply: Reply, bucket: str, reset_override: int | None = None) -> Reply:
        now = time.monotonic()
        limit = int(self.faults.get("zoho_rate_limit_per_minute"))
        window = float(self.faults.get("zoho_rate_window_seconds"))
        with self.lock:
            hits = self.windows.get(bucket) or collections.deque()
            while hits and hits[0] <= now - window:
                hits.popleft()
            used = len(hits)
            reset = math.ceil(hits[0] + window - now) if hits else 0
        if reset_override is not None:
            reset = reset_override
        reply.headers.update(
            {
                "X-Rate-Limit-Limit": str(limit),
                "X-Rate-Limit-Remaining": str(max(0, limit - used)),
                "X-Rate-Limit-Reset": str(max(0, reset)),
            }
        )
        if reply.content_type != HTML:
            reply.content_type = JSON_ZOHO
        return reply

    def _check_org(self, org_id: str | None) -> Reply | None:
        if not org_id:
            return Reply(400, {"code": 2, "message": "Invalid value passed for organization_id"})
        if self.store.org(org_id) is None:
            return Reply(400, {"code": 6041,
                               "message": f"This user is not associated with the CompanyID/CompanyName:{org_id}."})
        return None

    @staticmethod
    def _paging(q: dict[str, str]) -> tuple[int, int] | Reply:
        try:
            page = int(q.get("page") or 1)
            if page < 1:
                raise ValueError
        except ValueError:
            return Reply(400, {"code": 2, "message": "Invalid value passed for page"})
        try:
            per_page = int(q.get("per_page") or MAX_PER_PAGE)
            if per_page < 1:
                raise ValueError
        except ValueError:
            return Reply(400, {"code": 2, "message": "Invalid value passed for per_page"})
        return page, min(per_page, MAX_PER_PAGE)

    @staticmethod
    def _success(**body: Any) -> Reply:
        return Reply(200, {"code": 0, "message": "success", **body})

    def _paged_list(self, req: Request, key: str, report: str,
                    lister: Callable[[str, dict[str, str]], tuple[list[Any], str, str, str]],
                    render: Callable[[Any], dict[str, Any]], duplicate: bool = False) -> Reply:
        paging = self._paging(req.query)
        if isinstance(paging, Reply):
            return paging
        page, per_page = paging
        try:
            records, applied, col, order = lister(req.query["organization_id"], req.query)
        except QueryError as exc:
            return Reply(400, {"code": 2, "message": str(exc)})
        view = records
        if duplicate and applied in ("Status.OverDue", "Status.Unpaid") and len(records) > per_page \
                and self.faults.get("zoho_duplicate_overdue_row"):
            # Zoho has been seen listing one invoice twice across a page boundary (a paging artefact,
            # so the unpaid listing the pre-due stages read shows it too).
            view = records[:per_page] + [records[per_page - 1]] + records[per_page:]
        start = (page - 1) * per_page
        chunk = view[start:start + per_page]
        with self.store.lock:
            rows = [render(r) for r in chunk]
        return self._success(
            **{
                key: rows,
                "page_context": {
                    "page": page,
                    "per_page": per_page,
                    "has_more_page": start + per_page < len(view),
                    "report_name": report,
                    "applied_filter": applied,
                    "custom_fields": [],
                    "sort_column": col,
                    "sort_order": order,
                    "search_criteria": [],
                },
            }
        )

    # ------------------------------------------------------------------ resources
    def _list_organizations(self, req: Request) -> Reply:
        with self.store.lock:
            orgs = [dict(o) for o in self.store.organizations]
        return self._success(organizations=orgs)

    def _get_organization(self, req: Request, org_id: str) -> Reply:
        org = self.store.org(org_id)
        if org is None:
            return Reply(404, {"code": 1002, "message": "Organization does not exist."})
        return self._success(organization=dict(org))

    def _amounts(self, row: dict[str, Any]) -> dict[str, Any]:
        """With ``zoho_amounts_as_strings`` render amounts as the contract types them (strings)."""
        if self.faults.get("zoho_amounts_as_strings"):
            for name in STRING_AMOUNTS:
                if isinstance(row.get(name), float):
                    row[name] = f"{row[name]:.2f}"
        return row

    def _list_invoices(self, req: Request) -> Reply:
        today = today_ist()
        return self._paged_list(req, "invoices", "Invoices", self.store.list_invoices,
                                lambda inv: self._amounts(self.store.invoice_row(inv, today)), duplicate=True)

    def _invoice(self, invoice_id: str, org_id: str) -> dict[str, Any] | None:
        inv = self.store.invoices.get(invoice_id)
        if inv is None or inv["_org"] != org_id:
            return None
        return inv

    def _get_invoice(self, req: Request, invoice_id: str) -> Reply:
        with self.store.lock:
            inv = self._invoice(invoice_id, req.query["organization_id"])
            if inv is None:
                return Reply(404, {"code": 1002, "message": "Invoice does not exist."})
            return self._success(invoice=self._amounts(self.store.invoice_detail(inv)))

    def _list_comments(self, req: Request, invoice_id: str) -> Reply:
        with self.store.lock:
            if self._invoice(invoice_id, req.query["organization_id"]) is None:
                return Reply(404, {"code": 1002, "message": "Invoice does not exist."})
            comments = [dict(c) for c in self.store.comments.get(invoice_id, [])]
        return self._success(comments=comments)

    def _add_comment(self, req: Request, invoice_id: str) -> Reply:
        try:
            if "application/x-www-form-urlencoded" in req.header("content-type"):
                payload = json.loads(req.form().get("JSONString", ""))
            else:
                payload = req.json()
            if not isinstance(payload, dict):
                raise ValueError
        except ValueError:
            return Reply(400, {"code": 4, "message": "Invalid value passed for JSONString"})
        description = payload.get("description")
        if not isinstance(description, str) or not description.strip():
            return Reply(400, {"code": 2, "message": "Invalid value passed for description"})
        with self.store.lock:
            if self._invoice(invoice_id, req.query["organization_id"]) is None:
                return Reply(404, {"code": 1002, "message": "Invoice does not exist."})
            comment = self.store.add_comment(invoice_id, description, bool(payload.get("show_comment_to_clients")))
        return Reply(200, {"code": 0, "message": "Comments added.", "comment": comment})

    def _list_contacts(self, req: Request) -> Reply:
        return self._paged_list(req, "contacts", "Contacts", self.store.list_contacts, lambda row: row)

    def _get_contact(self, req: Request, contact_id: str) -> Reply:
        with self.store.lock:
            c = self.store.contacts.get(contact_id)
            if c is None or c["_org"] != req.query["organization_id"]:
                return Reply(404, {"code": 1002, "message": "Contact does not exist."})
            return self._success(contact=self.store.contact_detail(c))

    def _list_payments(self, req: Request) -> Reply:
        def lister(org_id: str, q: dict[str, str]) -> tuple[list[Any], str, str, str]:
            return self.store.list_payments(org_id, q), "Status.All", "date", "D"

        return self._paged_list(req, "customerpayments", "Customer Payments", lister, lambda row: row)

    def _get_payment(self, req: Request, payment_id: str) -> Reply:
        with self.store.lock:
            p = self.store.payments.get(payment_id)
            if p is None or p["_org"] != req.query["organization_id"]:
                return Reply(404, {"code": 1002, "message": "Payment does not exist."})
            return self._success(payment=self.store.payment_detail(p))
