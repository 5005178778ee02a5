"""Several Zoho Books organizations: one reminder DAG each, nothing mixed, one WhatsApp number's cap for all.

The sandbox serves two organizations of one Zoho login, each with its own customers, numbers and
invoices (``Sandbox(organizations=2)``). The reminder DAG file is parsed with
``tests/dags/two_organizations.yaml``: ``main`` through ``zoho_books_default``, ``exports`` through a
connection of its own. What is checked is what a user would see: the Zoho requests each DAG made,
the ledger rows, and the messages that reached the sandbox's WhatsApp API.
"""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import local_airflow
import pendulum
import pytest
import yaml

from zoho_whatsapp.organizations import (
    WHATSAPP_SENDS_POOL,
    WHATSAPP_SENDS_SLOTS,
    OrganizationsError,
    ZohoOrganization,
    load_organizations,
    parse_organizations,
)

REPO = local_airflow.REPO
DAG_ID = "zoho_books_payment_reminders"
EXPORTS_DAG_ID = f"{DAG_ID}__exports"
TWO_ORGANIZATIONS = Path(__file__).with_name("two_organizations.yaml")
ORGANIZATIONS_ENV = "ZOHO_WHATSAPP_ORGANIZATIONS"


# -- the organizations file ---------------------------------------------------------------------------


def test_the_default_file_is_one_organization_keeping_the_dag_id(monkeypatch) -> None:
    monkeypatch.delenv(ORGANIZATIONS_ENV, raising=False)
    [org] = load_organizations()
    assert org == ZohoOrganization("main", "zoho_books_default", None, None, primary=True)
    assert org.dag_id(DAG_ID) == DAG_ID
    # without the file (an image that does not ship include/config/) nothing changes either
    monkeypatch.setattr("zoho_whatsapp.organizations.DEFAULT_ORGANIZATIONS_PATH", Path("/nonexistent/orgs.yaml"))
    assert [o.dag_id(DAG_ID) for o in load_organizations()] == [DAG_ID]


def test_the_two_organizations_file() -> None:
    main, exports = load_organizations(TWO_ORGANIZATIONS)
    assert (main.dag_id(DAG_ID), exports.dag_id(DAG_ID)) == (DAG_ID, EXPORTS_DAG_ID)
    assert (main.zoho_conn_id, exports.zoho_conn_id) == ("zoho_books_default", "zoho_books_exports")
    assert (main.schedule, exports.schedule) == (None, "30 9 * * *")


@pytest.mark.parametrize("entries,error", [
    ([{"name": "main", "zoho_conn": "x"}], "unknown keys ['zoho_conn']"),
    ([{"name": "Main Org"}], "name 'Main Org'"),
    ([{"name": "main"}, {"name": "main", "zoho_conn_id": "other"}], "names must be unique"),
    ([{"name": "a"}, {"name": "b"}], "reach the same organization"),
    ([{"name": "a", "organization_id": "60x"}], "must be digits"),
    ([{"name": "a", "schedule": "daily"}], "cron expression"),
    ([], "non-empty list"),
])
def test_a_wrong_file_is_refused_saying_why(entries: list, error: str) -> None:
    with pytest.raises(OrganizationsError, match=error.replace("[", r"\[").replace("]", r"\]")):
        parse_organizations({"organizations": entries})


def test_an_unquoted_organization_id_keeps_its_digits_and_a_named_file_must_exist(tmp_path, monkeypatch) -> None:
    [org] = parse_organizations(yaml.safe_load("organizations: [{name: a, organization_id: 60012345678}]"))
    assert org.organization_id == "60012345678"
    monkeypatch.setenv(ORGANIZATIONS_ENV, str(tmp_path / "missing.yaml"))
    with pytest.raises(OrganizationsError, match="does not exist"):
        load_organizations()


def test_the_module_examples_hold() -> None:
    import doctest

    import zoho_whatsapp.organizations

    result = doctest.testmod(zoho_whatsapp.organizations)
    assert result.attempted >= 1 and result.failed == 0


# -- parsing ------------------------------------------------------------------------------------------

PARSE_PROBE = r"""
import json, runpy, sys
import airflow.sdk  # the dag-processor has Airflow loaded before it parses a file
events = []
def hook(event, args):
    if event in ("socket.connect", "socket.getaddrinfo", "sqlite3.connect", "sqlite3.connect/handle"):
        events.append([event, repr(args)[:200]])
    elif event == "open" and isinstance(args[0], str) and not args[0].endswith((".py", ".pyc", ".so")) \
            and "site-packages" not in args[0] and "/lib/python" not in args[0]:
        events.append(["open", args[0]])
sys.addaudithook(hook)
from airflow.sdk.definitions._internal.contextmanager import DagContext
DagContext.current_autoregister_module_name = "__main__"  # collect the DAGs as the dag-processor does
runpy.run_path(sys.argv[1])
print(json.dumps({"events": events, "dags": sorted(d.dag_id for d, _ in DagContext.autoregistered_dags)}))
"""


def test_parsing_the_dag_file_reads_the_organizations_file_and_nothing_else(airflow_db) -> None:
    """No network and no database at parse time: the only file the DAG file opens is the organizations file."""
    env = local_airflow.environment(Path(os.environ["AIRFLOW_HOME"]), extra={ORGANIZATIONS_ENV: str(TWO_ORGANIZATIONS)})
    done = subprocess.run([sys.executable, "-c", PARSE_PROBE, str(REPO / "dags" / "zoho_books_payment_reminders.py")],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["dags"] == [DAG_ID, EXPORTS_DAG_ID]
    assert [e for e in result["events"] if e[0] != "open"] == []  # no socket, no database
    # of the project's files and Airflow's home (the metadata DB, airflow.cfg), only the organizations file
    ours = (str(REPO), os.environ["AIRFLOW_HOME"])
    assert [e[1] for e in result["events"] if e[0] == "open" and e[1].startswith(ours)] == [str(TWO_ORGANIZATIONS)]


# -- the generated DAGs -------------------------------------------------------------------------------


@pytest.fixture
def two_organizations(monkeypatch, airflow_db) -> dict[str, Any]:
    """The reminder DAGs of both organizations, parsed as the dag-processor does with the two-organization file."""
    monkeypatch.setenv(ORGANIZATIONS_ENV, str(TWO_ORGANIZATIONS))
    return {dag_id: local_airflow.load_dag(dag_id) for dag_id in (DAG_ID, EXPORTS_DAG_ID)}


def test_each_organization_gets_the_same_dag_with_its_own_id_schedule_and_tag(two_organizations) -> None:
    main, exports = two_organizations[DAG_ID], two_organizations[EXPORTS_DAG_ID]
    assert main.task_ids == exports.task_ids
    assert dict(main.params) == dict(exports.params)
    assert "expression='0 9 * * *'" in repr(main.timetable) and "expression='30 9 * * *'" in repr(exports.timetable)
    assert "Asia/Kolkata" in repr(exports.timetable)
    assert "zoho-org:main" in main.tags and "zoho-org:exports" in exports.tags
    assert "zoho_books_exports" in exports.doc_md and "zoho_books_exports" not in main.doc_md
    # the organization is not a param: a run cannot be pointed at another organization's login
    assert not {"books", "org", "organization", "zoho_conn_id"} & set(exports.params)


def test_every_send_task_of_every_organization_draws_from_the_one_pool(two_organizations) -> None:
    for dag in two_organizations.values():
        send = dag.get_task("send_reminders")
        assert send.pool == WHATSAPP_SENDS_POOL
        assert send.partial_kwargs.get("pool_slots", 1) == 1
        # one DAG alone never takes more than the pool either (each task's share: 1/WHATSAPP_SENDS_SLOTS)
        assert send.partial_kwargs["max_active_tis_per_dag"] == WHATSAPP_SENDS_SLOTS
    # and the pool exists where the tasks run: local Airflows (local_airflow.migrate_db) and docker compose
    from airflow.models.pool import Pool

    assert Pool.get_pool(WHATSAPP_SENDS_POOL).slots == WHATSAPP_SENDS_SLOTS
    init = yaml.safe_load((REPO / "docker-compose.yaml").read_text())["services"]["airflow-init"]["command"][-1]
    assert f"airflow pools set {WHATSAPP_SENDS_POOL} {WHATSAPP_SENDS_SLOTS} " in init


# -- end to end against the sandbox -------------------------------------------------------------------


def _exports_connection(sandbox: Any, set_connection: Any) -> str:
    """``zoho_books_exports``: the same Zoho login, pointed at the sandbox's second organization."""
    main_id = sandbox.credentials["organization_id"]
    [other] = [o["organization_id"] for o in sandbox.organizations() if o["organization_id"] != main_id]
    conn = json.loads(json.dumps(sandbox.connections()["zoho_books_default"]))
    conn["extra"]["organization_id"] = other
    set_connection("zoho_books_exports", conn)
    return other


def _digits(number: str | None) -> str:
    return "".join(ch for ch in str(number or "") if ch.isdigit())


def _customer_numbers(sandbox: Any, customer_id: str) -> set[str]:
    """Every number the customer's Zoho contact holds, as WhatsApp would be given it (digits of E.164)."""
    from zoho_whatsapp.rules.phone import UnusableNumber, to_whatsapp_number

    with sandbox.store.lock:
        contact = dict(sandbox.store.contacts[customer_id])
    typed = [contact.get("mobile"), contact.get("phone"), (contact.get("billing_address") or {}).get("phone")]
    typed += [p.get(k) for p in contact.get("contact_persons") or () for k in ("mobile", "phone")]
    numbers = set()
    for raw in typed:
        try:
            numbers.add(_digits(to_whatsapp_number(raw)))
        except (UnusableNumber, ValueError):
            continue
    return numbers


def _invoice_orgs(sandbox: Any) -> dict[str, tuple[str, str]]:
    """{invoice_id: (organization_id, customer_id)}: the sandbox's ground truth."""
    with sandbox.store.lock:
        return {i: (inv["_org"], inv["customer_id"]) for i, inv in sandbox.store.invoices.items()}


@pytest.mark.dag
@pytest.mark.sandbox(organizations=2, invoices=40)
def test_two_organizations_never_mix_invoices_numbers_or_ledger_rows(
    sandbox, sqlite_ledger, set_connection, two_organizations, run_dag
) -> None:
    main_org = sandbox.credentials["organization_id"]
    exports_org = _exports_connection(sandbox, set_connection)
    org_of_dag = {DAG_ID: main_org, EXPORTS_DAG_ID: exports_org}
    truth = _invoice_orgs(sandbox)
    overdue = {org: {i["invoice_id"] for i in sandbox.invoices("overdue", org)} for org in (main_org, exports_org)}
    assert overdue[main_org] and overdue[exports_org] and not overdue[main_org] & overdue[exports_org]

    for dag_id, org in org_of_dag.items():
        first = len(sandbox.requests("zoho_books"))
        result = run_dag(dag_id)
        assert result["state"] == "success", (dag_id, result["states"])
        # every Zoho Books request this DAG made named its own organization, never the other
        asked = {r["query"].get("organization_id") for r in sandbox.requests("zoho_books")[first:]
                 if r["path"].rstrip("/") != "/books/v3/organizations"}
        assert asked == {org}, (dag_id, asked)

    rows = sqlite_ledger.rows()
    for org in (main_org, exports_org):
        mine = [r for r in rows if r["organization_id"] == org]
        # every overdue invoice of the organization is in its ledger rows, and nothing of another organization
        assert overdue[org] <= {r["invoice_id"] for r in mine}
        assert {truth[r["invoice_id"]][0] for r in mine} == {org}
        assert {r["dag_id"] for r in mine if r.get("dag_id")} <= {d for d, o in org_of_dag.items() if o == org}
        assert any(r["status"] == "sent" for r in mine)

    by_wamid: dict[str, list[dict]] = {}
    for r in rows:
        if r["status"] == "sent":
            by_wamid.setdefault(r["wamid"], []).append(r)
    received = sandbox.messages()
    assert {m["wamid"] for m in received} == set(by_wamid)  # one message per sent wamid, none other
    per_org: dict[str, set[str]] = {main_org: set(), exports_org: set()}
    for message in received:
        org = message["biz_opaque_callback_data"].split(":", 1)[0]
        carried = by_wamid[message["wamid"]]
        # the message, its ledger rows and its invoices all belong to one organization ...
        assert {r["organization_id"] for r in carried} == {org}
        assert {truth[r["invoice_id"]][0] for r in carried} == {org}
        # ... and it went to a number of that organization's customer who owes those invoices
        [customer] = {truth[r["invoice_id"]][1] for r in carried}
        assert _digits(message["to"]) in _customer_numbers(sandbox, customer), message["to"]
        assert {_digits(r["recipient"]) for r in carried} == {_digits(message["to"])}
        per_org[org].add(_digits(message["to"]))
    for org in per_org:
        sent_to = {_digits(r["recipient"]) for r in rows if r["organization_id"] == org and r["status"] == "sent"}
        assert per_org[org] == sent_to and sent_to


def _call_task(dag: Any, task_id: str, **context: Any) -> Any:
    """Run a @task of ``dag`` in this thread with what it asks for: its own body, its organization's closure."""
    function = dag.get_task(task_id).python_callable
    wanted = inspect.signature(function).parameters
    return function(*context.pop("_args", ()), **{k: v for k, v in context.items() if k in wanted})


def _peak_per_second(stamps: list[float]) -> int:
    """Most requests within any sliding second (Meta counts a number's throughput this way)."""
    stamps = sorted(stamps)
    peak, start = 0, 0
    for end, stamp in enumerate(stamps):
        while stamp - stamps[start] >= 1.0:
            start += 1
        peak = max(peak, end - start + 1)
    return peak


CAP = 20  # msg/s: the WhatsApp number's rate, as the sandbox enforces it (130429 above it)
# messages_per_second a little under the number's cap, as docs/configuration.md advises: the pacing
# allows 50 ms of lateness per request, and this test shares 2 busy cores with its own sandbox.
RATE = 16


@pytest.mark.dag
@pytest.mark.sandbox(organizations=2, invoices=100, whatsapp_rate_cap=CAP, whatsapp_latency_ms=40)
def test_both_organizations_sending_at_once_stay_under_the_numbers_cap(
    sandbox, sqlite_ledger, set_connection, two_organizations
) -> None:
    """Each DAG's own tasks fetch and plan; then every send batch of both organizations runs in threads,
    as many at once as the shared pool has slots. Together they stay within the number's cap.

    Without the pool (each DAG limited only to its own 4 tasks: 8 at once) the same batches reached 25
    requests in a second and 10 refusals (130429) against this cap of 20: this test fails then."""
    from zoho_whatsapp.whatsapp.operator import WhatsAppOperator

    orgs = {DAG_ID: sandbox.credentials["organization_id"], EXPORTS_DAG_ID: _exports_connection(sandbox, set_connection)}
    when = pendulum.now("Asia/Kolkata").replace(hour=9, minute=0, second=0, microsecond=0)
    batches: list[tuple[str, dict, dict]] = []
    for dag_id, dag in two_organizations.items():
        params = {**{k: dag.params[k] for k in dag.params}, "batch_size": 10, "messages_per_second": RATE}
        run = SimpleNamespace(run_id=f"cap_{dag_id}", run_after=when, run_type="manual")
        org = _call_task(dag, "refresh_zoho_token")
        assert org["organization_id"] == orgs[dag_id]
        fetched = _call_task(dag, "fetch_overdue_invoices", _args=(org,), logical_date=when, dag_run=run,
                             ti=SimpleNamespace(dag_id=dag_id, run_id=run.run_id), params=params)
        refs = _call_task(dag, "plan_reminders", _args=(fetched,), params=params)
        assert len(refs) >= WHATSAPP_SENDS_SLOTS and {r["organization_id"] for r in refs} == {orgs[dag_id]}
        assert {r["parallel_share"] for r in refs} == {WHATSAPP_SENDS_SLOTS}
        batches += [(dag_id, ref, params) for ref in refs]
    max_workers = two_organizations[DAG_ID].get_task("send_reminders").partial_kwargs["max_workers"]

    pool = threading.BoundedSemaphore(WHATSAPP_SENDS_SLOTS)  # what the pool whatsapp_sends does across DAGs
    errors: list[BaseException] = []
    results: list[dict] = []

    def send(index: int, dag_id: str, ref: dict, params: dict) -> None:
        with pool:
            try:
                operator = WhatsAppOperator(task_id=f"send_{index}", batch=ref, messages_per_second=RATE,
                                            max_workers=max_workers, min_days_between_reminders=3, dry_run=False)
                ti = SimpleNamespace(dag_id=dag_id, run_id=f"cap_{dag_id}", map_index=index, try_number=1)
                results.append(operator.execute({"ti": ti, "params": params}))
            except BaseException as exc:  # reported below, with the others
                errors.append(exc)

    first = len(sandbox.requests("whatsapp"))
    threads = [threading.Thread(target=send, args=(i, *batch)) for i, batch in enumerate(batches)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not errors, errors

    sends = [r for r in sandbox.requests("whatsapp")[first:] if r["method"] == "POST"]
    received = sandbox.messages()
    by_org = {o: [m for m in received if m["biz_opaque_callback_data"].startswith(f"{o}:")] for o in orgs.values()}
    assert all(len(messages) >= 20 for messages in by_org.values()), {o: len(m) for o, m in by_org.items()}
    # both organizations were sending at the same time, not one after the other
    windows = {o: (min(m["received_at"] for m in ms), max(m["received_at"] for m in ms)) for o, ms in by_org.items()}
    (a_start, a_end), (b_start, b_end) = windows.values()
    assert a_start < b_end and b_start < a_end, windows
    assert [r["code"] for r in sends if r["code"] == 130429] == []  # no throughput refusal from WhatsApp
    # within the cap, and near the whole rate: the pool's slots were all sending, not waiting
    assert RATE / 2 < _peak_per_second([r["ts"] for r in sends]) <= CAP
    sent_rows = [r for r in sqlite_ledger.rows() if r["status"] == "sent"]
    assert len({r["wamid"] for r in sent_rows}) == len(received) == sum(r.get("sent", 0) for r in results)
