"""HTTP front door of the sandbox: routing, request log, control endpoints and ``Sandbox``."""

from __future__ import annotations

import collections
import hashlib
import io
import ipaddress
import re
import socket
import struct
import sys
import threading
import time
import traceback
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from . import seed
from .callbacks import Callbacks
from .control import handle_control
from .faults import Faults
from .store import Store
from .whatsapp import WhatsApp
from .wire import HTML, Reply, Request, fingerprint, html_page, redact_authorization
from .zoho_books import ZohoBooks
from .zoho_oauth import FULL_SCOPE, ZohoOAuth

SERVICES = ("zoho_oauth", "zoho_books", "whatsapp")
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux; Python's socket module does not name it
_TIMESTAMP_SPACE = socket.CMSG_SPACE(16)
_SECRET_FIELDS = {"client_secret", "refresh_token", "code", "token", "access_token"}
_VERSIONED = re.compile(r"/v\d+\.\d+(/|$)")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def connections_for(url: str, creds: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Airflow connection JSON for each conn_id (for ``AIRFLOW_CONN_<ID>`` variables)."""
    return {
        "zoho_books_default": {
            "conn_type": "zoho_books",
            "login": creds["zoho_client_id"],
            "password": creds["zoho_client_secret"],
            "extra": {
                "refresh_token": creds["zoho_refresh_token"],
                "region": "zoho.in",
                "organization_id": creds["organization_id"],
                "accounts_url": url,
                "api_url": url,
            },
        },
        "whatsapp_default": {
            "conn_type": "whatsapp",
            "password": creds["whatsapp_token"],
            "extra": {
                "phone_number_id": creds["phone_number_id"],
                "api_version": "v23.0",
                "base_url": url,
            },
        },
    }


def webhook_extras_for(creds: dict[str, str]) -> dict[str, str]:
    """``app_secret`` signs the callbacks; ``verify_token`` answers Meta's GET handshake (derived, stable per seed)."""
    verify = hashlib.sha256(f"verify_token:{creds['webhook_secret']}".encode()).hexdigest()[:40]
    return {"app_secret": creds["webhook_secret"], "verify_token": verify}


def base_url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024

    def __init__(self, addr: tuple[str, int], sandbox: Sandbox) -> None:
        if ":" in addr[0]:
            self.address_family = socket.AF_INET6
        self.sandbox = sandbox
        super().__init__(addr, _Handler)

    def server_bind(self) -> None:
        super().server_bind()
        # The kernel stamps each packet as it arrives; accepted connections inherit the option.
        try:
            self.socket.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        except OSError:  # not Linux: requests are stamped when their thread reads them
            pass


class _ArrivalStampedReader(socket.SocketIO):
    """The connection's reads, keeping when the kernel received the first bytes of each request.

    Meta counts a message when it reaches its servers. This process reading it later (its threads
    waiting for a busy CPU or the GIL) is the provider's own delay, not the sender's burst: the
    request's arrival is the kernel's receive time of its first packet (``SO_TIMESTAMPNS``).
    """

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(sock, "rb")
        self.first_arrival: float | None = None

    def next_request(self) -> None:
        self.first_arrival = None

    def readinto(self, buffer: Any) -> int:
        self._checkClosed()
        self._checkReadable()
        if self._timeout_occurred:
            raise OSError("cannot read from timed out object")
        try:
            nbytes, ancillary, _flags, _addr = self._sock.recvmsg_into([buffer], _TIMESTAMP_SPACE)
        except TimeoutError:
            self._timeout_occurred = True
            raise
        except BlockingIOError:
            return None  # type: ignore[return-value]  (RawIOBase: no data yet on a non-blocking socket)
        if self.first_arrival is None:
            for level, kind, data in ancillary:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= 16:
                    seconds, nanoseconds = struct.unpack("qq", data[:16])  # struct timespec
                    self.first_arrival = seconds + nanoseconds / 1e9
        return nbytes


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "ZohoWhatsAppSandbox/1.0"
    disable_nagle_algorithm = True
    timeout = 120
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.rfile.close()  # replaced by one that keeps the kernel's receive times
        self._arrivals = _ArrivalStampedReader(self.connection)
        self.connection._io_refs += 1  # type: ignore[attr-defined]  (as socket.makefile counts its files)
        self.rfile = io.BufferedReader(self._arrivals)

    def handle_one_request(self) -> None:
        self._arrivals.next_request()
        super().handle_one_request()

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        self._dispatch()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_GET

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        if self.server.sandbox.verbose:
            sys.stderr.write("sandbox: " + (format % args) + "\n")

    def _dispatch(self) -> None:
        sandbox = self.server.sandbox
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        split = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        raw_headers = list(self.headers.items())
        headers = {k.lower(): v for k, v in raw_headers}
        # Bytes already buffered with the previous request (a pipelining client) keep its read's time.
        received = self._arrivals.first_arrival or time.time()
        req = Request(self.command, unquote(split.path), query, headers, body, received=received,
                      raw_headers=raw_headers)
        started = time.monotonic()
        service, reply = sandbox.dispatch(req)
        if service is not None:
            sandbox.log_request(service, req, reply, time.monotonic() - started)
        if reply.drop:
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        if reply.delay > 0:
            sandbox.wake.wait(reply.delay)
        payload = reply.payload()
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(payload)))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


class Sandbox:
    """A local imitation of Zoho OAuth, Zoho Books v3 and the WhatsApp Cloud API.

    ``Sandbox(host, port, seed, invoices, organizations, verbose, **settings)``; ``settings`` are
    any names from ``sandbox.faults.DEFAULTS`` (e.g. ``zoho_rate_limit_per_minute=1000``,
    ``whatsapp_latency_ms=50``, ``token_ttl_seconds=5``) and become the baseline ``reset`` returns to.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, seed: int = 42, invoices: int = 320,
                 organizations: int = 1, verbose: bool = False, scenario: str | None = None,
                 **settings: Any) -> None:
        if not is_loopback(host):
            raise ValueError(f"refusing to bind the sandbox to non-loopback host {host!r}")
        self.host = host
        self.port = int(port)
        self.seed = int(seed)
        self.n_invoices = int(invoices)
        self.n_organizations = max(1, int(organizations))
        self.scenario = scenario  # e.g. "collections": extra data on top of the seed (scenarios.py)
        self.verbose = verbose
        self.credentials: dict[str, str] = seed_credentials(self.seed)
        self.faults_state = Faults(**settings)
        self.wake = threading.Event()
        self._log: collections.deque = collections.deque(maxlen=200_000)
        self._log_lock = threading.Lock()
        self._log_seq = 0
        self.store = self._new_store()
        creds = self.credentials
        self.oauth = ZohoOAuth(self.faults_state, creds["zoho_client_id"], creds["zoho_client_secret"],
                               creds["zoho_refresh_token"])
        self.books = ZohoBooks(self.store, self.oauth, self.faults_state, self.wake)
        self.whatsapp = WhatsApp(self.faults_state, creds["whatsapp_token"], creds["phone_number_id"],
                                 creds["webhook_secret"], self.wake)
        self.callbacks = Callbacks(self.faults_state, self.whatsapp, self.seed)
        self.whatsapp.on_accept = self.callbacks.on_accepted
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        if self.port:
            self.oauth.api_domain = self.url

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> Sandbox:
        """Bind and serve in a background daemon thread."""
        if self._server is not None:
            return self
        self.wake.clear()
        self._server = _Server((self.host, self.port), self)
        self.port = self._server.server_address[1]
        self.oauth.api_domain = self.url
        self._thread = threading.Thread(target=self._server.serve_forever, name=f"sandbox:{self.port}",
                                        kwargs={"poll_interval": 0.02}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; requests hanging on purpose are released."""
        self.wake.set()
        self.callbacks.stop()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def serve_forever(self) -> None:
        """Serve in the calling thread until ``stop`` (used by the CLI)."""
        self.start()
        assert self._thread is not None
        while self._thread is not None and self._thread.is_alive():
            self._thread.join(0.5)

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if not self.port:
            raise RuntimeError("port 0 is chosen at start(): call start() before reading url")
        return base_url(self.host, self.port)

    def connections(self) -> dict[str, dict[str, Any]]:
        return connections_for(self.url, self.credentials)

    def webhook_extras(self) -> dict[str, str]:
        """The ``whatsapp_default`` extras a webhook receiver needs to check this sandbox's callbacks."""
        return webhook_extras_for(self.credentials)

    def callback_log(self) -> list[dict[str, Any]]:
        """Every webhook POSTed (or queued) to ``callback_url``, with its attempts (see ``callbacks.py``)."""
        return self.callbacks.log()

    # ------------------------------------------------------------------ faults / reset
    def set_faults(self, **kw: Any) -> dict[str, Any]:
        """Switch faults/settings on (names: ``sandbox.faults.DEFAULTS``); returns all current values."""
        return self.faults_state.set(**kw)

    def get_faults(self) -> dict[str, Any]:
        return self.faults_state.snapshot()

    def reset(self, faults_only: bool = False) -> None:
        """Back to the just-started state: faults, limits and counters; unless ``faults_only``,
        also tokens, grant codes, messages, the request log and the seeded data."""
        self.faults_state.reset()
        self.books.reset()
        if faults_only:
            return
        self.oauth.reset()
        self.whatsapp.reset()
        self.callbacks.reset()
        with self._log_lock:
            self._log.clear()
        self.store = self._new_store()
        self.books.store = self.store

    def _new_store(self) -> Store:
        return Store(self.seed, self.n_invoices, self.n_organizations, self.credentials["organization_id"],
                     scenario=self.scenario)

    # ------------------------------------------------------------------ inspection
    def messages(self) -> list[dict[str, Any]]:
        """WhatsApp messages accepted so far (what ``GET /_sandbox/messages`` returns)."""
        return self.whatsapp.sent()

    def requests(self, service: str | None = None) -> list[dict[str, Any]]:
        """The request log, optionally for one of ``zoho_oauth``, ``zoho_books``, ``whatsapp``."""
        with self._log_lock:
            return [dict(e) for e in self._log if service is None or e["service"] == service]

    def issue_grant_code(self, scope: str = FULL_SCOPE, ttl_seconds: float | None = None) -> str:
        return self.oauth.issue_grant_code(scope, ttl_seconds)

    def expire_tokens(self) -> int:
        """Expire every access token now; returns how many tokens exist."""
        return self.oauth.expire_all()

    def organizations(self) -> list[dict[str, Any]]:
        with self.store.lock:
            return [dict(o) for o in self.store.organizations]

    def invoices(self, status: str | None = None, organization_id: str | None = None) -> list[dict[str, Any]]:
        """Invoice list rows (default API order: created_time descending), no duplicate row."""
        org = organization_id or self.credentials["organization_id"]
        records, *_ = self.store.list_invoices(org, {"status": status or "all"})
        with self.store.lock:
            return [self.store.invoice_row(r) for r in records]

    def overdue_invoices(self) -> list[dict[str, Any]]:
        """Ground truth of the overdue listing, each invoice once (incl. balance-0 stale rows)."""
        return self.invoices("overdue")

    def invoice(self, invoice_id: str) -> dict[str, Any] | None:
        with self.store.lock:
            inv = self.store.invoices.get(str(invoice_id))
            return self.store.invoice_detail(inv) if inv else None

    def contacts(self, filter_by: str | None = None) -> list[dict[str, Any]]:
        rows, *_ = self.store.list_contacts(self.credentials["organization_id"],
                                            {"filter_by": filter_by or "Status.All"})
        return [dict(r) for r in rows]

    def contact(self, contact_id: str) -> dict[str, Any] | None:
        with self.store.lock:
            c = self.store.contacts.get(str(contact_id))
            return self.store.contact_detail(c) if c else None

    def payment(self, payment_id: str) -> dict[str, Any] | None:
        with self.store.lock:
            p = self.store.payments.get(str(payment_id))
            return self.store.payment_detail(p) if p else None

    def payments(self) -> list[dict[str, Any]]:
        return self.store.list_payments(self.credentials["organization_id"], {})

    def comments(self, invoice_id: str) -> list[dict[str, Any]]:
        with self.store.lock:
            return [dict(c) for c in self.store.comments.get(str(invoice_id), [])]

    def templates(self) -> dict[str, dict[str, Any]]:
        return {k: dict(v) for k, v in self.whatsapp.templates.items()}

    # ------------------------------------------------------------------ data mutation
    def patch_invoice(self, invoice_id: str, patch: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
        return self.store.patch_invoice(str(invoice_id), {**(patch or {}), **fields})

    def patch_contact(self, contact_id: str, patch: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
        return self.store.patch_contact(str(contact_id), {**(patch or {}), **fields})

    def add_payment(self, invoice_id: str, amount: Any = None, date: str | None = None,
                    payment_mode: str = "banktransfer") -> dict[str, Any]:
        return self.store.add_payment(str(invoice_id), amount, date, payment_mode)

    def update_invoice(self, invoice_id: str, patch: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
        """Alias of ``patch_invoice``."""
        return self.patch_invoice(invoice_id, patch, **fields)

    def add_organization(self, name: str | None = None) -> dict[str, Any]:
        return self.store.add_organization(name)

    def set_organizations(self, count: int) -> list[dict[str, Any]]:
        """Make sure at least ``count`` organizations exist (only the first holds data)."""
        while len(self.store.organizations) < count:
            self.store.add_organization()
        return self.organizations()

    def status_webhook(self, wamid: str, status: str = "delivered",
                       error_code: int | None = None) -> tuple[bytes, dict[str, str]]:
        """Signed (``X-Hub-Signature-256`` with ``webhook_secret``) status webhook body and headers."""
        return self.whatsapp.status_webhook(wamid, status, error_code)

    def inbound_webhook(self, from_wa_id: str, text: str, name: str = "") -> tuple[bytes, dict[str, str]]:
        return self.whatsapp.inbound_webhook(from_wa_id, text, name)

    # ------------------------------------------------------------------ HTTP plumbing
    def dispatch(self, req: Request) -> tuple[str | None, Reply]:
        path = req.path
        try:
            if path.startswith("/_sandbox/") or path == "/_sandbox":
                return None, self._control(req)
            if path.startswith("/oauth/"):
                return "zoho_oauth", self.oauth.handle(req)
            if path.startswith("/books/v3/") or path == "/books/v3":
                return "zoho_books", self.books.handle(req)
            if _VERSIONED.match(path):
                return "whatsapp", self.whatsapp.handle(req)
            return None, Reply(404, html_page(404, "Not Found"), HTML)
        except Exception as exc:  # a sandbox bug must not look like a network failure
            traceback.print_exc()
            return None, Reply(500, {"error": f"sandbox internal error: {exc!r}"})

    def log_request(self, service: str, req: Request, reply: Reply, seconds: float) -> None:
        headers = {}
        for name, value in req.raw_headers or list(req.headers.items()):
            headers[name] = redact_authorization(value) if name.lower() == "authorization" else value
        entry: dict[str, Any] = {
            "service": service,
            "method": req.method,
            "path": req.path,
            "query": {k: (fingerprint(v) if k in _SECRET_FIELDS else v) for k, v in req.query.items()},
            "headers": headers,
            "json": None,
            "form": None,
            "status": None if reply.drop else reply.status,
            "code": reply.envelope_code(),
            "outcome": "dropped" if reply.drop else ("delayed" if reply.delay > 0 else "answered"),
            "timestamp": datetime.fromtimestamp(req.received, UTC).isoformat(timespec="milliseconds"),
            "ts": req.received,
            "duration_ms": round(seconds * 1000, 3),
        }
        if req.body:
            if "json" in req.header("content-type") or req.body[:1] in (b"{", b"["):
                try:
                    entry["json"] = req.json()
                except ValueError:
                    entry["json"] = None
            elif "x-www-form-urlencoded" in req.header("content-type"):
                form = {k: v[0] for k, v in parse_qs(req.body.decode("utf-8", "replace")).items()}
                entry["form"] = {k: (fingerprint(v) if k in _SECRET_FIELDS else v) for k, v in form.items()}
        with self._log_lock:
            self._log_seq += 1
            entry["seq"] = self._log_seq
            self._log.append(entry)

    def _control(self, req: Request) -> Reply:
        return handle_control(self, req)


def seed_credentials(seed_value: int) -> dict[str, str]:
    return seed.make_credentials(seed_value)
