"""The audit page's FastAPI app, mounted by the plugin on the Airflow API server at ``/whatsapp-audit``.

``GET /whatsapp-audit/`` is the page (shown inside the Airflow UI as the "WhatsApp reminders"
view); ``/whatsapp-audit/api/...`` are the JSON and CSV routes it reads. Every route except the
static assets (Chart.js, the page's script and style: no data) requires a logged-in Airflow user
allowed to see plugin views: Airflow's own ``get_user`` (``GetUserDep``: the UI's JWT cookie or an
``Authorization: Bearer`` token) and ``requires_access_view(AccessView.PLUGINS)`` decide, through
whichever auth manager the deployment runs. Without a user: 401; a bad token or no right: 403.

Query parameters of the data routes: ``org`` (default: the organization of the newest ledger row),
``from`` / ``to`` (IST days, default the last 30), ``kind`` (``all``, ``reminders``, ``alerts``),
``dag_id`` / ``run_id`` (the DAG's or DAG run's tab), ``customer_id``, ``q`` (customer search).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from zoho_whatsapp.ui.export import SECTIONS, section_csv
from zoho_whatsapp.ui.queries import (
    ALERT_KINDS,
    ALL_KINDS,
    REMINDER_KINDS,
    AuditQueries,
    Scope,
    Shape,
    probe,
    today_ist,
)

log = logging.getLogger(__name__)

URL_PREFIX = "/whatsapp-audit"
HERE = Path(__file__).parent
DEFAULT_DAYS = 30
MAX_DAYS = 400
KINDS = {"all": ALL_KINDS, "reminders": REMINDER_KINDS, "alerts": ALERT_KINDS}


class _Ledger:
    """The ledger engine (opened on first use, never at import) and its schema, re-read every 30 s:
    columns added by a migration (delivery receipts, replies) show up without a restart."""

    def __init__(self, conn_id: str) -> None:
        self.conn_id = conn_id
        self._lock = threading.Lock()
        self._engine: Any = None
        self._shape: Shape | None = None
        self._shape_at = 0.0

    def queries(self, airflow_base: str) -> AuditQueries:
        with self._lock:
            if self._engine is None:
                from zoho_whatsapp.ledger import SendLedger

                self._engine = SendLedger.from_connection(self.conn_id, migrate=False).engine
            if self._shape is None or time.monotonic() - self._shape_at > 30:
                self._shape, self._shape_at = probe(self._engine), time.monotonic()
            return AuditQueries(self._engine, shape=self._shape, airflow_base=airflow_base)


def _airflow_base(request: Request) -> str:
    """The Airflow UI's root path, as seen by the browser (the app is mounted under it)."""
    root = str(request.scope.get("root_path") or "")
    return root[: -len(URL_PREFIX)] if root.endswith(URL_PREFIX) else ""


def _day(value: str | None, name: str) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise HTTPException(422, f"{name}: expected a date as YYYY-MM-DD, got {value[:20]!r}") from None


def create_app(ledger_conn_id: str = "reminder_ledger_default") -> FastAPI:
    """Build the app; Airflow's security module is imported here, when the API server first needs it."""
    from airflow.api_fastapi.auth.managers.models.resource_details import AccessView
    from airflow.api_fastapi.core_api.security import get_user, requires_access_view

    ledger = _Ledger(ledger_conn_id)
    allowed = [Depends(requires_access_view(AccessView.PLUGINS))]
    app = FastAPI(title="WhatsApp reminders audit", docs_url=None, redoc_url=None, openapi_url=None)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    @app.middleware("http")
    async def _cache_assets(request: Request, call_next: Any) -> Response:
        response = await call_next(request)
        if request.url.path.startswith(f"{request.scope.get('root_path', '')}/static/") and response.status_code == 200:
            # The vendored library's file name carries its version; the page's own files change with a release.
            vendor = "/static/vendor/" in request.url.path
            response.headers["Cache-Control"] = "public, max-age=31536000, immutable" if vendor else "public, max-age=600"
        return response

    async def queries(request: Request) -> AuditQueries:
        try:
            return await run_in_threadpool(ledger.queries, _airflow_base(request))
        except Exception as exc:  # LedgerUnavailable names the connection and hides the password
            log.warning("audit page: the ledger cannot be read: %s", exc)
            raise HTTPException(503, f"the send ledger cannot be read: {exc}") from None

    async def scope_of(
        request: Request,
        org: str | None = Query(None, max_length=64),
        start: str | None = Query(None, alias="from", max_length=10),
        end: str | None = Query(None, alias="to", max_length=10),
        kind: str = Query("all", pattern="^(all|reminders|alerts)$"),
        dag_id: str | None = Query(None, max_length=250),
        run_id: str | None = Query(None, max_length=250),
    ) -> tuple[AuditQueries, Scope | None]:
        q = await queries(request)
        if run_id:
            scope = await run_in_threadpool(q.run_scope, dag_id, run_id)
            return q, scope
        last = _day(end, "to") or today_ist()
        first = _day(start, "from") or last - timedelta(days=DEFAULT_DAYS - 1)
        if first > last:
            raise HTTPException(422, "from: must not be after to")
        if (last - first).days >= MAX_DAYS:
            raise HTTPException(422, f"the period may span at most {MAX_DAYS} days")
        org = org or await run_in_threadpool(q.latest_organization)
        if org is None:
            return q, None
        return q, Scope(org, first, last, KINDS[kind], dag_id=dag_id or None)

    Scoped = Depends(scope_of)

    @app.get("/", response_class=HTMLResponse, dependencies=allowed)
    async def page(request: Request, user: Any = Depends(get_user)) -> HTMLResponse:  # noqa: B008 - FastAPI's way
        config = {"user": getattr(user, "get_name", lambda: None)(), "airflow_base": _airflow_base(request),
                  "default_days": DEFAULT_DAYS, "sections": sorted(SECTIONS)}
        html = (HERE / "templates" / "audit.html").read_text(encoding="utf-8")
        # JSON inside <script>: "<" escaped so no value can close the tag.
        html = html.replace("__CONFIG__", json.dumps(config).replace("<", "\\u003c"))
        return HTMLResponse(html, headers={"Cache-Control": "no-store"})

    @app.get("/api/organizations", dependencies=allowed)
    async def organizations(request: Request) -> JSONResponse:
        q = await queries(request)
        orgs = await run_in_threadpool(q.organizations)
        latest = await run_in_threadpool(q.latest_organization)
        return JSONResponse({"organizations": orgs, "default": latest})

    @app.get("/api/summary", dependencies=allowed)
    async def summary(scoped: tuple[AuditQueries, Scope | None] = Scoped) -> JSONResponse:
        q, scope = scoped
        if scope is None:
            return JSONResponse({"scope": None, "empty": True})
        started = time.perf_counter()
        data = await run_in_threadpool(q.summary, scope)
        data["elapsed_ms"] = round((time.perf_counter() - started) * 1000, 1)
        return JSONResponse(data, headers={"Cache-Control": "no-store"})

    @app.get("/api/customers", dependencies=allowed)
    async def customers(scoped: tuple[AuditQueries, Scope | None] = Scoped,
                        q: str | None = Query(None, max_length=100)) -> JSONResponse:
        queries_, scope = scoped
        found = [] if scope is None else await run_in_threadpool(queries_.customers, scope, q)
        return JSONResponse({"customers": found})

    @app.get("/api/timeline", dependencies=allowed)
    async def timeline(scoped: tuple[AuditQueries, Scope | None] = Scoped,
                       customer_id: str = Query(..., max_length=64)) -> JSONResponse:
        q, scope = scoped
        if scope is None:
            return JSONResponse({"customer_id": customer_id, "events": []})
        return JSONResponse(await run_in_threadpool(q.timeline, scope, customer_id))

    @app.get("/api/export.csv", dependencies=allowed)
    async def export(scoped: tuple[AuditQueries, Scope | None] = Scoped,
                     section: str = Query(..., pattern="^(" + "|".join(SECTIONS) + ")$"),
                     customer_id: str | None = Query(None, max_length=64)) -> Response:
        q, scope = scoped
        if scope is None:
            raise HTTPException(404, "the ledger holds no message yet")
        if section == "timeline":
            if not customer_id:
                raise HTTPException(422, "customer_id: required for the timeline")
            data = await run_in_threadpool(q.timeline, scope, customer_id)
        else:
            data = await run_in_threadpool(q.summary, scope)
        text = await run_in_threadpool(section_csv, section, data)
        name = f"whatsapp-{section}-{scope.organization_id}-{scope.start}-{scope.end}.csv"
        return Response("\ufeff" + text, media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"})

    @app.exception_handler(HTTPException)
    async def _refusal(request: Request, exc: HTTPException) -> Response:
        if exc.status_code in (401, 403) and request.url.path.rstrip("/") == request.scope.get("root_path", ""):
            login = f"{_airflow_base(request)}/auth/login/?next={request.url.path}"
            body = (f"<!doctype html><title>WhatsApp reminders</title><p>Log in to Airflow to see this page: "
                    f"<a href=\"{login}\" target=\"_top\">log in</a>.</p>")
            return HTMLResponse(body, status_code=exc.status_code)
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    return app


class LazyApp:
    """An ASGI app that builds the real one on its first request.

    Airflow imports plugins in every component (scheduler, workers, dag-processor); only the API
    server serves this app, so Airflow's API security module is imported there, and only there.
    """

    def __init__(self, factory: Any = create_app) -> None:
        self._factory = factory
        self._app: Any = None
        self._lock = threading.Lock()

    def get(self) -> Any:
        with self._lock:
            if self._app is None:
                self._app = self._factory()
            return self._app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.get()(scope, receive, send)

    def __repr__(self) -> str:
        return f"{__name__}.LazyApp({getattr(self._factory, '__qualname__', self._factory)})"
