"""Connect a Zoho Books organization and a WhatsApp number to Airflow, then check every connection.

Usage::

    python -m zoho_whatsapp.cli zoho-auth --region in --code 1000.3f2a...     # asks for client id and secret
    python -m zoho_whatsapp.cli whatsapp-auth --phone-number-id 106540352242922   # asks for the access token
    python -m zoho_whatsapp.cli check                       # Zoho, WhatsApp and the ledger, as the Test button does

Secrets never come from the command line, where they would stay in the shell history: the client
secret is read from ``ZOHO_CLIENT_SECRET``, the WhatsApp token from ``WHATSAPP_ACCESS_TOKEN`` (and
the webhook's ``WHATSAPP_APP_SECRET`` / ``WHATSAPP_VERIFY_TOKEN``), or else from a hidden prompt
(one line of standard input when it is not a terminal). The connections
are written to Airflow's metadata database (encrypted with the Fernet key), or printed as the
``AIRFLOW_CONN_<ID>`` line with ``--print-env``. Run the commands where Airflow runs (with docker
compose: ``docker compose run --rm airflow-cli python -m zoho_whatsapp.cli ...``).
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import shlex
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TextIO

from zoho_whatsapp.outcome import ErrorFamily, Outcome

PROG = "python -m zoho_whatsapp.cli"
ZOHO_CONN_ID = "zoho_books_default"
WHATSAPP_CONN_ID = "whatsapp_default"
LEDGER_CONN_ID = "reminder_ledger_default"
SCOPES = "ZohoBooks.invoices.READ,ZohoBooks.contacts.READ,ZohoBooks.settings.READ,ZohoBooks.invoices.CREATE"


class CliError(Exception):
    """A failure the user can fix; printed without a traceback."""


# -- reading secrets without argv ---------------------------------------------------------------


def read_secret(env_var: str, prompt: str, stdin: TextIO | None = None) -> str:
    """The value of ``env_var``, else a hidden prompt, else one line of a piped standard input."""
    value = os.environ.get(env_var, "").strip()
    if value:
        return value
    stream = stdin or sys.stdin
    if stream.isatty():
        value = getpass.getpass(f"{prompt} (input hidden): ").strip()
    else:
        value = stream.readline().strip()
    if not value:
        raise CliError(f"no {prompt.lower()}: set {env_var} or type it at the prompt (never on the command line)")
    return value


def read_value(given: str | None, env_var: str, prompt: str, stdin: TextIO | None = None) -> str:
    """A non-secret value: the option, else ``env_var``, else a visible prompt / one line of stdin."""
    value = (given or os.environ.get(env_var, "")).strip()
    if value:
        return value
    stream = stdin or sys.stdin
    if stream.isatty():
        value = input(f"{prompt}: ").strip()
    else:
        value = stream.readline().strip()
    if not value:
        raise CliError(f"no {prompt.lower()}: pass it as an option or set {env_var}")
    return value


# -- where connections go -----------------------------------------------------------------------


@contextmanager
def transient_connection(conn_id: str, conn: dict[str, Any]) -> Iterator[None]:
    """Make ``conn`` the definition of ``conn_id`` in this process only, the way Airflow's own
    connection test does, so the hooks can be used before anything is saved."""
    key = f"AIRFLOW_CONN_{conn_id.upper()}"
    saved = os.environ.get(key)
    os.environ[key] = json.dumps(conn)
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = saved


def env_line(conn_id: str, conn: dict[str, Any]) -> str:
    """``AIRFLOW_CONN_<ID>='<json>'``: a shell assignment and a docker env-file line at once."""
    return f"AIRFLOW_CONN_{conn_id.upper()}={shlex.quote(json.dumps(conn, separators=(',', ':')))}"


def _metadata_db_error(exc: Exception) -> CliError:
    from airflow import settings

    try:
        where = settings.engine.url.render_as_string(hide_password=True)
    except Exception:  # settings not configured: the message below still says what to do
        where = "the configured sql_alchemy_conn"
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
    return CliError(
        f"cannot use Airflow's metadata database ({where}): {first}. Run this where Airflow runs (same "
        "AIRFLOW_HOME or AIRFLOW__DATABASE__SQL_ALCHEMY_CONN), after `airflow db migrate`; or pass --print-env "
        "to print the connection as an AIRFLOW_CONN_ variable instead."
    )


def check_can_write(conn_id: str, replace: bool) -> None:
    """Fail before anything one-time (a grant code) is spent: DB reachable, connection free."""
    import sqlalchemy as sa
    from airflow.models.connection import Connection
    from airflow.utils.session import create_session

    try:
        with create_session() as session:
            exists = session.scalar(sa.select(Connection.id).where(Connection.conn_id == conn_id).limit(1))
    except sa.exc.SQLAlchemyError as exc:
        raise _metadata_db_error(exc) from None
    if exists is not None and not replace:
        raise CliError(
            f"connection {conn_id!r} already exists in Airflow's metadata database: pass --replace to overwrite it, "
            "or --conn-id to write another one"
        )


def write_connection(conn_id: str, conn: dict[str, Any], *, replace: bool, description: str) -> str:
    """Create or (with ``replace``) overwrite ``conn_id`` in the metadata DB; returns what happened."""
    import sqlalchemy as sa
    from airflow.models.connection import Connection
    from airflow.utils.session import create_session

    extra = json.dumps(conn.get("extra") or {})
    try:
        with create_session() as session:
            row = session.scalar(sa.select(Connection).where(Connection.conn_id == conn_id).limit(1))
            if row is not None and not replace:
                raise CliError(f"connection {conn_id!r} already exists: pass --replace to overwrite it")
            action = "replaced" if row is not None else "added"
            if row is None:
                row = Connection(conn_id=conn_id)
                session.add(row)
            row.conn_type = conn["conn_type"]
            row.description = description
            row.host = conn.get("host")
            row.port = conn.get("port")
            row.schema = conn.get("schema")
            row.login = conn.get("login")
            row.password = conn.get("password")
            row.set_extra(extra)
            encrypted = bool(row.is_encrypted and row.is_extra_encrypted)
    except sa.exc.SQLAlchemyError as exc:
        raise _metadata_db_error(exc) from None
    protection = (
        "secrets encrypted with the Fernet key"
        if encrypted
        else "WARNING: stored unencrypted because Airflow has no Fernet key: set AIRFLOW__CORE__FERNET_KEY (see "
        ".env.example) and write the connection again with --replace"
    )
    shadow = f"AIRFLOW_CONN_{conn_id.upper()}"
    note = (
        f"; note: {shadow} is set in this environment and takes precedence over the stored connection"
        if os.environ.get(shadow)
        else ""
    )
    return f"connection {conn_id!r} {action} in Airflow's metadata database ({protection}){note}"


def _deliver(args: argparse.Namespace, conn_id: str, conn: dict[str, Any], description: str) -> None:
    if args.print_env:
        print(env_line(conn_id, conn))
        _info(f"printed {conn_id!r} as an environment variable: keep it out of shell history and version control")
    else:
        print(write_connection(conn_id, conn, replace=args.replace, description=description))


def explain(exc: Exception) -> str:
    """An error as the CLI prints it: what happened, then ``fix:`` and its class's fix."""
    if isinstance(exc, ErrorFamily) and exc.fix:
        return f"{exc.reason}\nfix: {exc.fix}"
    return str(exc)


def _info(message: str) -> None:
    print(message, file=sys.stderr)


def _today() -> str:
    return datetime.now(UTC).date().isoformat()


# -- zoho-auth ----------------------------------------------------------------------------------


def cmd_zoho_auth(args: argparse.Namespace) -> int:
    from zoho_whatsapp.zoho.errors import ZohoError
    from zoho_whatsapp.zoho.hook import ZohoBooksHook
    from zoho_whatsapp.zoho.oauth import console_host, exchange_grant_code, region_of_api_domain
    from zoho_whatsapp.zoho.regions import get_region

    try:
        region = get_region(args.region)
    except ValueError as exc:
        raise CliError(f"--region: {exc}") from None
    if not args.print_env:
        check_can_write(args.conn_id, args.replace)
    client_id = read_value(args.client_id, "ZOHO_CLIENT_ID", "Zoho client id")
    client_secret = read_secret("ZOHO_CLIENT_SECRET", "Zoho client secret")
    accounts = (args.accounts_url or region.accounts_url).rstrip("/")
    _info(f"exchanging the grant code at {accounts}/oauth/v2/token (region {region.code!r})")
    try:
        grant = exchange_grant_code(
            code=args.code,
            client_id=client_id,
            client_secret=client_secret,
            region=region.code,
            accounts_url=args.accounts_url,
            conn_id=args.conn_id,
        )
    except ZohoError as exc:
        raise CliError(f"{explain(exc)}\nNothing was written.") from None
    _info(f"Zoho issued a refresh token (scope {grant.scope or 'not reported'}, API domain {grant.api_domain or 'not reported'})")
    home = region_of_api_domain(grant.api_domain)
    if home is not None and home != region.code:
        raise CliError(
            f"the account lives in data centre {home!r} (API domain {grant.api_domain}), not {region.code!r}: "
            f"generate a new grant code at {console_host(home)} and run with --region {home}. Nothing was written."
        )

    extra: dict[str, Any] = {"refresh_token": grant.refresh_token, "region": region.domain}  # not "in": see ZohoRegion.domain
    if args.accounts_url:
        extra["accounts_url"] = grant.accounts_url
    if args.api_url:
        extra["api_url"] = args.api_url.rstrip("/")
    conn: dict[str, Any] = {"conn_type": "zoho_books", "login": client_id, "password": client_secret, "extra": extra}

    with transient_connection(args.conn_id, conn):
        hook = ZohoBooksHook(args.conn_id, use_variable_cache=False)
        hook.token_cache.put(grant.cached_token())  # the exchange already minted a token: do not mint another
        try:
            organizations = hook.list_organizations()
        except ZohoError as exc:
            raise CliError(
                f"the refresh token works but listing the organizations failed: {exc.reason}\nThe grant needs the scope "
                f"ZohoBooks.settings.READ (with ZohoBooks.invoices.READ and ZohoBooks.contacts.READ): generate a "
                f"new grant code with the scopes {SCOPES} and run this again. Nothing was written."
            ) from None
    organization = choose_organization(organizations, args.organization_id)
    extra["organization_id"] = str(organization["organization_id"])
    _info(
        f"using organization {organization['organization_id']} ({organization.get('name')}, "
        f"{organization.get('country_code') or '?'}, {organization.get('currency_code') or '?'})"
    )
    description = (
        f"Zoho Books {organization.get('name') or ''} ({extra['organization_id']}), region {region.code}; "
        f"written by {PROG} zoho-auth on {_today()}"
    )
    _deliver(args, args.conn_id, conn, description)
    _info(f"next: {PROG} check")
    return 0


def choose_organization(
    organizations: Sequence[dict[str, Any]],
    wanted: str | None,
    ask: Callable[[str], str] | None = None,
) -> dict[str, Any]:
    """The organization to remind for: the one asked for, the only one, or the one picked at a prompt."""
    listing = "\n".join(
        f"  {o.get('organization_id')}  {o.get('name')} ({o.get('country_code') or '?'}, {o.get('currency_code') or '?'})"
        for o in organizations
    )
    if not organizations:
        raise CliError("this Zoho account has no Zoho Books organization. Nothing was written.")
    if wanted:
        for org in organizations:
            if str(org.get("organization_id")) == str(wanted):
                return org
        raise CliError(f"--organization-id {wanted} is not one of this account's organizations:\n{listing}\nNothing was written.")
    if len(organizations) == 1:
        return organizations[0]
    if ask is None and sys.stdin.isatty():
        ask = input
    if ask is None:
        raise CliError(
            f"this account has {len(organizations)} organizations:\n{listing}\nRun again with a new grant code and "
            "--organization-id <one of them>. Nothing was written."
        )
    _info(f"this account has {len(organizations)} organizations:\n{listing}")
    answer = ask("organization_id to send reminders for: ").strip()
    return choose_organization(organizations, answer or "(none)", ask)


# -- whatsapp-auth ------------------------------------------------------------------------------

# What the webhook endpoint reads from the connection (docs/whatsapp-webhooks.md): a rewrite keeps them.
WEBHOOK_SECRETS = {"app_secret": ("WHATSAPP_APP_SECRET", "Meta app secret"),
                   "verify_token": ("WHATSAPP_VERIFY_TOKEN", "webhook verify token")}
WEBHOOK_EXTRAS = (*WEBHOOK_SECRETS, "opt_out_keywords", "opt_in_keywords")


def stored_extra(conn_id: str) -> dict[str, Any]:
    """The extras of ``conn_id`` as stored in the metadata DB (empty when it is not there)."""
    import sqlalchemy as sa
    from airflow.models.connection import Connection
    from airflow.utils.session import create_session

    try:
        with create_session() as session:
            row = session.scalar(sa.select(Connection).where(Connection.conn_id == conn_id).limit(1))
            return dict(row.extra_dejson) if row is not None else {}
    except sa.exc.SQLAlchemyError as exc:
        raise _metadata_db_error(exc) from None


def webhook_extras(args: argparse.Namespace, kept: dict[str, Any]) -> dict[str, Any]:
    """The webhook's extras for the new connection: those ``kept`` from the one replaced, then each secret
    from its environment variable, or a hidden prompt when its ``--set-...`` option asks for one."""
    extras = {k: kept[k] for k in WEBHOOK_EXTRAS if kept.get(k)}
    for name, (env_var, prompt) in WEBHOOK_SECRETS.items():
        if os.environ.get(env_var, "").strip() or getattr(args, f"set_{name}"):
            extras[name] = read_secret(env_var, prompt)
    try:
        from airflow.sdk.log import mask_secret

        for name in WEBHOOK_SECRETS:
            if extras.get(name):
                mask_secret(extras[name])
    except ImportError:  # masking is for Airflow's own log lines; this command prints no secret anyway
        pass
    return extras


def cmd_whatsapp_auth(args: argparse.Namespace) -> int:
    from zoho_whatsapp.whatsapp.hook import DEFAULT_API_VERSION, DEFAULT_BASE_URL, WhatsAppHook

    kept: dict[str, Any] = {}
    if not args.print_env:
        check_can_write(args.conn_id, args.replace)
        kept = stored_extra(args.conn_id) if args.replace else {}
    token = read_secret("WHATSAPP_ACCESS_TOKEN", "WhatsApp access token")
    webhook = webhook_extras(args, kept)
    extra: dict[str, Any] = {"phone_number_id": args.phone_number_id.strip()}
    if args.api_version != DEFAULT_API_VERSION:
        extra["api_version"] = args.api_version
    if args.base_url and args.base_url.rstrip("/") != DEFAULT_BASE_URL:
        extra["base_url"] = args.base_url.rstrip("/")
    conn: dict[str, Any] = {"conn_type": "whatsapp", "password": token, "extra": extra}
    with transient_connection(args.conn_id, conn):
        try:
            info = WhatsAppHook(args.conn_id).get_phone_number()
        except Exception as exc:  # the hook's errors name the connection and the code, and carry the fix
            raise CliError(f"{explain(exc)}\nNothing was written.") from None
    _info(
        f"WhatsApp number {info.get('display_phone_number')} ({info.get('verified_name')}): quality "
        f"{info.get('quality_rating') or '?'}, messaging limit {info.get('messaging_limit_tier') or '?'}"
    )
    description = (
        f"WhatsApp Cloud API, number {info.get('display_phone_number')} ({info.get('verified_name')}); "
        f"written by {PROG} whatsapp-auth on {_today()}"
    )
    extra.update(webhook)
    _deliver(args, args.conn_id, conn, description)
    missing = [name for name in WEBHOOK_SECRETS if not webhook.get(name)]
    if webhook:
        named = ", ".join(f"{k} ({'kept' if kept.get(k) == v else 'set'})" for k, v in webhook.items())
        _info(f"webhook extras (values not shown): {named}")
    if missing:
        _info(f"no {' or '.join(missing)} yet: /whatsapp/webhook refuses Meta's calls until both are set "
              f"(set {' and '.join(WEBHOOK_SECRETS[m][0] for m in missing)}, or pass "
              f"{' '.join('--set-' + m.replace('_', '-') for m in missing)}; see docs/whatsapp-webhooks.md)")
    return 0


# -- check --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckResult:
    kind: str
    conn_id: str
    ok: bool
    message: str
    fix: str | None = None

    @classmethod
    def failed(cls, kind: str, conn_id: str, exc: Exception) -> CheckResult:
        """A failure, with the fix its error class carries (every hook error has one)."""
        from zoho_whatsapp.outcome import ErrorFamily

        if isinstance(exc, ErrorFamily):
            return cls(kind, conn_id, False, exc.reason, exc.fix)
        return cls(kind, conn_id, False, f"{exc.__class__.__name__}: {exc}", "see docs/troubleshooting.md")


def check_zoho(conn_id: str = ZOHO_CONN_ID) -> CheckResult:
    """Token refresh (or the shared cached token) and the organization, through the hook."""
    from zoho_whatsapp.zoho.hook import ZohoBooksHook

    try:
        return CheckResult("zoho", conn_id, True, ZohoBooksHook(conn_id).check_connection())
    except Exception as exc:
        return CheckResult.failed("zoho", conn_id, exc)


def check_whatsapp(conn_id: str = WHATSAPP_CONN_ID) -> CheckResult:
    """``GET /<version>/<phone_number_id>`` with the token, through the hook."""
    from zoho_whatsapp.whatsapp.hook import WhatsAppHook

    try:
        return CheckResult("whatsapp", conn_id, True, WhatsAppHook(conn_id).check_connection())
    except Exception as exc:
        return CheckResult.failed("whatsapp", conn_id, exc)


def check_ledger(conn_id: str = LEDGER_CONN_ID) -> CheckResult:
    """The send ledger's database answers (``SELECT 1``); its schema is left for the DAG to migrate."""
    import sqlalchemy as sa
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    from zoho_whatsapp.ledger import SendLedger

    try:
        conn = BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        conn = None
    except Exception as exc:  # a broken definition (bad URI/JSON) is a failure of this connection
        return CheckResult.failed("ledger", conn_id, LedgerUnreadable(f"cannot be read: {exc}", conn_id=conn_id))
    try:
        ledger = SendLedger.from_connection(conn_id, migrate=False)
    except Exception as exc:
        return CheckResult.failed("ledger", conn_id, ledger_problem(conn, conn_id, exc))
    try:
        where = sa.engine.make_url(ledger.url).render_as_string(hide_password=True)
    finally:
        ledger.dispose()
    if conn is None:
        return CheckResult(
            "ledger", conn_id, True,
            f"not defined: using the embedded SQLite ledger {where} (fine for a trial; use PostgreSQL in production)",
        )
    return CheckResult("ledger", conn_id, True, f"send ledger reachable at {where}")


CHECKS: dict[str, Callable[[str], CheckResult]] = {
    "zoho": check_zoho,
    "whatsapp": check_whatsapp,
    "ledger": check_ledger,
}


# -- the send ledger's failures ------------------------------------------------------------------
# The ledger is our own database, so its families live beside the check that tells them apart by
# looking (the connection's fields, then the server itself), never by reading the driver's wording.


class LedgerError(ErrorFamily):
    system = "Send ledger"
    default_conn_id = LEDGER_CONN_ID
    outcome = Outcome.STOP_RUN


class LedgerUnreadable(LedgerError):
    when = "the connection does not parse"
    fix = "correct the definition of {conn_id} (Admin -> Connections, or its AIRFLOW_CONN_ variable)"


class LedgerTypeUnsupported(LedgerError):
    when = "connection type not sqlite/postgres"
    fix = ("give {conn_id} the type postgres (host, port, login, password, schema = database) or sqlite "
           "(host = file path)")


class LedgerPathMissing(LedgerError):
    when = "sqlite connection without a host"
    fix = "put the SQLite file path in the host field of the connection"


class LedgerUnreachable(LedgerError):
    when = "no database server answers"
    fix = ("start the database or correct host, port, login, password and schema (the database name) of the "
           "connection; with docker compose: `docker compose ps postgres` and the LEDGER_DB_* values in .env")


class LedgerLoginRefused(LedgerError):
    when = "the server refuses the login"
    fix = ("the password differs from the database's: with docker compose LEDGER_DB_PASSWORD changed after the volume "
           "was created, re-apply it with `docker compose exec postgres bash "
           "/docker-entrypoint-initdb.d/10-reminder-ledger.sh`")


class LedgerDatabaseMissing(LedgerError):
    when = "the server has no such database"
    fix = ("create the database: with docker compose (a postgres volume older than scripts/postgres-init/) run "
           "`docker compose exec postgres bash /docker-entrypoint-initdb.d/10-reminder-ledger.sh`; otherwise "
           "CREATE DATABASE")


def ledger_problem(conn: Any, conn_id: str, exc: Exception) -> Exception:
    """The :class:`LedgerError` for a ledger that did not open, found from the connection and the server."""
    import sqlalchemy as sa

    message = " ".join(str(exc).split())
    cause = exc.__cause__
    if not isinstance(cause, sa.exc.SQLAlchemyError):
        kind = (getattr(conn, "conn_type", "") or "").lower()
        family: type[LedgerError] = LedgerPathMissing if kind == "sqlite" else LedgerTypeUnsupported
        return family(message, conn_id=conn_id)
    url = sa.engine.make_url(str(getattr(exc, "url", "") or _ledger_url(conn_id)))
    if not url.drivername.startswith("postgresql"):
        return LedgerUnreachable(message, conn_id=conn_id)
    return _postgres_problem(url)(message, conn_id=conn_id)


def _ledger_url(conn_id: str) -> str:
    from zoho_whatsapp.ledger.ledger import ledger_url_from_connection

    return ledger_url_from_connection(conn_id)


def _postgres_problem(url: Any) -> type[LedgerError]:
    """Ask the server: is it there, does it take this login, does it have this database?"""
    import socket

    import sqlalchemy as sa
    from sqlalchemy.pool import NullPool

    try:
        socket.create_connection((url.host or "localhost", url.port or 5432), timeout=5).close()
    except OSError:
        return LedgerUnreachable
    engine = sa.create_engine(url.set(database="postgres"), poolclass=NullPool, connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as db:
            found = db.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": url.database})
            exists = found.first() is not None
    except sa.exc.SQLAlchemyError:
        return LedgerLoginRefused
    finally:
        engine.dispose()
    return LedgerUnreachable if exists else LedgerDatabaseMissing


def cmd_check(args: argparse.Namespace) -> int:
    conn_ids = {"zoho": args.zoho_conn_id, "whatsapp": args.whatsapp_conn_id, "ledger": args.ledger_conn_id}
    kinds = args.only or list(CHECKS)
    results = [CHECKS[kind](conn_ids[kind]) for kind in kinds]
    width = max(len(r.conn_id) for r in results)
    for r in results:
        message = " ".join(r.message.split())  # one line per connection, whatever the hook's text
        print(f"{r.conn_id.ljust(width)}  {'OK  ' if r.ok else 'FAIL'}  {message}")
        if not r.ok:
            print(f"{' ' * width}        fix: {r.fix}")
    failed = [r.conn_id for r in results if not r.ok]
    if failed:
        print(f"\n{len(failed)} of {len(results)} connection(s) failed: {', '.join(failed)}")
        return 1
    print(f"\nall {len(results)} connection(s) work")
    return 0


# -- entry point --------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    zoho = sub.add_parser(
        "zoho-auth",
        help="exchange a Self Client grant code and write the Zoho Books connection",
        description="Exchange a Self Client grant code for a refresh token, find the organization and write the "
        f"connection. Client id: --client-id or ZOHO_CLIENT_ID or a prompt; client secret: ZOHO_CLIENT_SECRET or a "
        f"hidden prompt. Scopes the code needs: {SCOPES} (or ZohoBooks.fullaccess.all).",
    )
    zoho.add_argument("--code", required=True, help="the one-time grant code (valid for the few minutes chosen)")
    zoho.add_argument("--region", default="in", help="data centre: in (default), us, eu, au, jp, ca, cn, sa")
    zoho.add_argument("--client-id", help="Self Client id (not secret; default: $ZOHO_CLIENT_ID or a prompt)")
    zoho.add_argument("--organization-id", help="which organization, when the account has several")
    zoho.add_argument("--accounts-url", help="accounts host override (the local sandbox); default from --region")
    zoho.add_argument("--api-url", help="Books API host override; default: the api_domain Zoho returns")
    zoho.add_argument("--conn-id", default=ZOHO_CONN_ID, help=f"connection to write (default {ZOHO_CONN_ID})")
    _add_delivery_options(zoho)
    zoho.set_defaults(func=cmd_zoho_auth)

    wa = sub.add_parser(
        "whatsapp-auth",
        help="validate a WhatsApp Cloud API token and phone number id and write the connection",
        description="GET the phone number with the token, then write the connection. Token: "
        "WHATSAPP_ACCESS_TOKEN or a hidden prompt. The webhook's app_secret and verify_token extras come from "
        "WHATSAPP_APP_SECRET / WHATSAPP_VERIFY_TOKEN (or --set-app-secret / --set-verify-token: a hidden prompt); "
        "--replace keeps those already stored.",
    )
    wa.add_argument("--phone-number-id", required=True, help="WhatsApp Manager -> API Setup -> Phone number ID")
    wa.add_argument("--api-version", default="v23.0", help="Graph API version (default v23.0)")
    wa.add_argument("--base-url", help="API host override (the local sandbox); default https://graph.facebook.com")
    wa.add_argument("--conn-id", default=WHATSAPP_CONN_ID, help=f"connection to write (default {WHATSAPP_CONN_ID})")
    wa.add_argument("--set-app-secret", action="store_true",
                    help="ask for the Meta app secret the webhooks are signed with (hidden prompt; or set "
                    "WHATSAPP_APP_SECRET). With --replace, the stored one is kept unless given.")
    wa.add_argument("--set-verify-token", action="store_true",
                    help="ask for the webhook verify token typed into Meta's dashboard (hidden prompt; or set "
                    "WHATSAPP_VERIFY_TOKEN). With --replace, the stored one is kept unless given.")
    _add_delivery_options(wa)
    wa.set_defaults(func=cmd_whatsapp_auth)

    check = sub.add_parser(
        "check",
        help="verify the Zoho, WhatsApp and ledger connections; each failure names the fix",
        description="Zoho: token refresh and organization; WhatsApp: GET the phone number; ledger: the database "
        "answers. Exit status 1 when any fails.",
    )
    check.add_argument("only", nargs="*", metavar="{zoho,whatsapp,ledger}", help="check only these (default: all three)")
    check.add_argument("--zoho-conn-id", default=ZOHO_CONN_ID)
    check.add_argument("--whatsapp-conn-id", default=WHATSAPP_CONN_ID)
    check.add_argument("--ledger-conn-id", default=LEDGER_CONN_ID)
    check.set_defaults(func=cmd_check)
    return parser


def _add_delivery_options(parser: argparse.ArgumentParser) -> None:
    out = parser.add_mutually_exclusive_group()
    out.add_argument("--replace", action="store_true", help="overwrite the connection if it exists")
    out.add_argument("--print-env", action="store_true",
                     help="print AIRFLOW_CONN_<ID>='<json>' on stdout instead of writing to the metadata database")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    unknown = [kind for kind in getattr(args, "only", None) or [] if kind not in CHECKS]
    if unknown:
        parser.error(f"check: unknown {', '.join(unknown)}; choose from {', '.join(CHECKS)}")
    # Like Airflow's own `connections get/test`: an admin command on the server side reads
    # connections and Variables from the metadata DB (the SDK skips it otherwise); and Airflow's
    # INFO logs go to stdout, where --print-env output must stand alone.
    defaults = {"_AIRFLOW_PROCESS_CONTEXT": "server", "AIRFLOW__LOGGING__LOGGING_LEVEL": "ERROR"}
    added = [key for key in defaults if key not in os.environ]
    os.environ.update({key: defaults[key] for key in added})
    try:
        return int(args.func(args))
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        for key in added:
            os.environ.pop(key, None)


if __name__ == "__main__":
    sys.exit(main())
