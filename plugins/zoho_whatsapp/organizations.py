"""Several Zoho Books organizations: one reminder DAG each, one WhatsApp number's send rate for all.

Which organizations there are is read from ``include/config/organizations.yaml`` (or the file
``$ZOHO_WHATSAPP_ORGANIZATIONS`` names) when Airflow parses the reminder DAG file: a small YAML
file, no database and no network, so parsing stays cheap. The first organization's DAG keeps the
id ``zoho_books_payment_reminders``; every other is ``zoho_books_payment_reminders__<name>``.

Every organization sends from the same WhatsApp number, so all their send tasks together must stay
under its ``messages_per_second``. They share the Airflow pool :data:`WHATSAPP_SENDS_POOL`, whose
:data:`WHATSAPP_SENDS_SLOTS` slots are the most send tasks that run at once across every DAG and
run; each task sends at ``messages_per_second / WHATSAPP_SENDS_SLOTS`` (see ``pipeline.batch``).

>>> [o.dag_id("zoho_books_payment_reminders") for o in parse_organizations(
...     {"organizations": [{"name": "main"}, {"name": "exports", "organization_id": 60012345678}]})]
['zoho_books_payment_reminders', 'zoho_books_payment_reminders__exports']
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "DEFAULT_ORGANIZATIONS_PATH",
    "ORGANIZATIONS_PATH_ENV",
    "WHATSAPP_SENDS_POOL",
    "WHATSAPP_SENDS_POOL_DESCRIPTION",
    "WHATSAPP_SENDS_SLOTS",
    "OrganizationsError",
    "ZohoOrganization",
    "dag_per_organization",
    "load_organizations",
    "parse_organizations",
]

DEFAULT_ORGANIZATIONS_PATH: Path = Path(__file__).resolve().parents[2] / "include" / "config" / "organizations.yaml"
ORGANIZATIONS_PATH_ENV = "ZOHO_WHATSAPP_ORGANIZATIONS"
DEFAULT_ZOHO_CONN_ID = "zoho_books_default"  # ZohoBooksHook.default_conn_name, without importing the hook

# The pool every organization's send tasks draw from. A send task sends at 1/WHATSAPP_SENDS_SLOTS of
# messages_per_second, so the pool must have exactly this many slots: more would let the tasks
# together exceed the number's rate, fewer only slows them.
WHATSAPP_SENDS_POOL = "whatsapp_sends"
WHATSAPP_SENDS_SLOTS = 4
WHATSAPP_SENDS_POOL_DESCRIPTION = (
    f"WhatsApp send tasks of every organization's reminder DAG: {WHATSAPP_SENDS_SLOTS} slots, each task sends at "
    f"messages_per_second/{WHATSAPP_SENDS_SLOTS} (one WhatsApp number's rate shared by all); keep {WHATSAPP_SENDS_SLOTS}"
)

_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")
_KEYS = {"name", "zoho_conn_id", "organization_id", "schedule"}


class OrganizationsError(ValueError):
    """The organizations file is not valid: the DAG file fails to import and the UI shows why."""


@dataclass(frozen=True)
class ZohoOrganization:
    """One Zoho Books organization whose overdue invoices get WhatsApp reminders.

    :param name: names its DAG (``<base>__<name>``, except the primary's) and its tag in the UI.
    :param zoho_conn_id: the Airflow connection of the Zoho login that reaches it.
    :param organization_id: which organization of that login; ``None``: the connection's own.
    :param schedule: cron in Asia/Kolkata; ``None``: the DAG's default.
    :param primary: the first one in the file, whose DAG keeps the base id.
    """

    name: str
    zoho_conn_id: str = DEFAULT_ZOHO_CONN_ID
    organization_id: str | None = None
    schedule: str | None = None
    primary: bool = False

    def dag_id(self, base: str) -> str:
        return base if self.primary else f"{base}__{self.name}"

    def describe(self) -> str:
        """One line for the DAG's page: which organization this DAG reminds for, through what."""
        which = f"organization {self.organization_id}" if self.organization_id else "the connection's organization"
        return f"Zoho Books organization **{self.name}**: {which}, connection `{self.zoho_conn_id}`."


def parse_organizations(data: Any, *, where: str = "organizations") -> list[ZohoOrganization]:
    """The organizations of a parsed file: ``{"organizations": [{name, zoho_conn_id?, organization_id?, schedule?}]}``.

    Unknown keys are refused (a typo must not silently drop a setting), as are two entries with one
    name, or with the same connection and organization (one organization reminded by two DAGs).
    """
    if not isinstance(data, Mapping) or set(data) != {"organizations"}:
        raise OrganizationsError(f"{where}: expected one key, organizations: a list of organizations")
    entries = data["organizations"]
    if not isinstance(entries, list) or not entries:
        raise OrganizationsError(f"{where}: organizations must be a non-empty list")
    found: list[ZohoOrganization] = []
    for index, entry in enumerate(entries):
        at = f"{where}: organizations[{index}]"
        if not isinstance(entry, Mapping):
            raise OrganizationsError(f"{at}: expected a mapping with at least a name, got {entry!r}")
        unknown = sorted(set(map(str, entry)) - _KEYS)
        if unknown:
            raise OrganizationsError(f"{at}: unknown keys {unknown} (known: {sorted(_KEYS)})")
        name = entry.get("name")
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise OrganizationsError(f"{at}: name {name!r} must be lower-case letters, digits and _ (at most 40), "
                                     "starting with a letter")
        conn_id = entry.get("zoho_conn_id") or DEFAULT_ZOHO_CONN_ID
        if not isinstance(conn_id, str):
            raise OrganizationsError(f"{at}: zoho_conn_id must be a connection id, got {conn_id!r}")
        org_id = entry.get("organization_id")
        if org_id is not None:
            # YAML reads an unquoted 60012345678 as a number: the id is its digits either way.
            org_id = str(org_id).strip()
            if not org_id.isdigit():
                raise OrganizationsError(f"{at}: organization_id {entry['organization_id']!r} must be digits")
        schedule = entry.get("schedule")
        if schedule is not None and (not isinstance(schedule, str) or len(schedule.split()) not in (5, 6)):
            raise OrganizationsError(f"{at}: schedule {schedule!r} must be a cron expression such as '0 9 * * *'")
        found.append(ZohoOrganization(name, conn_id, org_id, schedule, primary=not found))
    names = [o.name for o in found]
    if len(set(names)) != len(names):
        raise OrganizationsError(f"{where}: names must be unique, got {names}")
    targets = [(o.zoho_conn_id, o.organization_id) for o in found]
    if len(set(targets)) != len(targets):
        raise OrganizationsError(f"{where}: two entries reach the same organization (same zoho_conn_id and "
                                 "organization_id): each organization gets one DAG")
    return found


def resolve_organizations_path() -> Path:
    """``$ZOHO_WHATSAPP_ORGANIZATIONS`` when set, else ``include/config/organizations.yaml``."""
    named = os.environ.get(ORGANIZATIONS_PATH_ENV, "").strip()
    return Path(named) if named else DEFAULT_ORGANIZATIONS_PATH


def load_organizations(path: Path | None = None) -> list[ZohoOrganization]:
    """The configured organizations; one, reached by ``zoho_books_default``, when the default file is absent.

    A file named by ``path`` or the environment must exist: a deployment that points at a file it
    lacks would otherwise lose its other organizations' DAGs without a word.
    """
    named = path is not None or bool(os.environ.get(ORGANIZATIONS_PATH_ENV, "").strip())
    source = Path(path) if path is not None else resolve_organizations_path()
    try:
        text = source.read_text(encoding="utf-8")
    except FileNotFoundError:
        if named:
            raise OrganizationsError(f"the organizations file {source} does not exist") from None
        return [ZohoOrganization("main", primary=True)]
    except OSError as exc:
        raise OrganizationsError(f"cannot read the organizations file {source}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise OrganizationsError(f"{source}: not valid YAML: {exc}") from None
    return parse_organizations(data, where=str(source))


def dag_per_organization(
    *, dag_id: str, schedule: str, tags: list[str], doc_md: str | None = None, **dag_kwargs: Any
) -> Callable[[Callable[[ZohoOrganization], None]], Callable[[], list[Any]]]:
    """Like ``@dag(...)``, but the decorated body takes a :class:`ZohoOrganization` and calling it
    builds one DAG per configured organization.

    ``dag_id`` and ``schedule`` are the primary organization's (the others: ``<dag_id>__<name>``, their
    own schedule if set). Every other argument goes to ``airflow.sdk.dag`` unchanged, so all the DAGs
    share the params, default args and task layout. The organization reaches the body as an argument
    of a closure, not as a DAG param: a run cannot be pointed at another organization's Zoho login.
    """

    def decorate(body: Callable[[ZohoOrganization], None]) -> Callable[[], list[Any]]:
        def build() -> list[Any]:
            from airflow.sdk import dag

            built = []
            for org in load_organizations():
                kwargs = {
                    **dag_kwargs,
                    "dag_id": org.dag_id(dag_id),
                    "schedule": org.schedule or schedule,
                    "tags": [*tags, f"zoho-org:{org.name}"],
                    "doc_md": f"{doc_md or ''}\n\n{org.describe()}\n",
                }
                built.append(dag(**kwargs)(_bind(body, org))())
            return built

        build.__name__ = build.__qualname__ = body.__name__
        build.__doc__ = body.__doc__
        return build

    return decorate


def _bind(body: Callable[[ZohoOrganization], None], org: ZohoOrganization) -> Callable[[], None]:
    # No parameters on purpose: ``@dag`` turns the arguments of the function it wraps into DAG params.
    def reminder_dag_body() -> None:
        body(org)

    return reminder_dag_body
