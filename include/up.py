"""``make up``: the product on this machine, to click through in the Airflow UI. Ctrl-C stops everything.

Starts, on loopback only:

* the sandbox (Zoho OAuth, Zoho Books, WhatsApp Cloud API), seeded, which POSTs Meta-style signed
  status webhooks and replies to this Airflow's ``/whatsapp/webhook`` a moment after each message;
* ``airflow standalone`` (api-server, scheduler, dag-processor, triggerer) in its own AIRFLOW_HOME,
  ``.airflow-up/`` (kept between runs: DAG runs, the send ledger ``reminder_ledger.db``), with the
  plugin loaded and the connections ``zoho_books_default``, ``whatsapp_default``,
  ``reminder_ledger_default`` and ``zoho_books_webhook`` pointing at the sandbox and the ledger
  (stored in Airflow, so they show under Admin → Connections);

then prints where everything is and the login. From there: trigger the reminder DAG with its params
form, clear a batch, create a backfill, and watch "WhatsApp reminders" (the audit page) fill.

    make up                                  # Airflow on 127.0.0.1:8080, the sandbox on 127.0.0.1:8765
    make up ARGS="--port 8081 --fresh"       # another port; start from an empty .airflow-up/

Dev tooling: not part of the image (like the sandbox).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import local_airflow

REPO = local_airflow.REPO
HOME = REPO / ".airflow-up"
LOG = "standalone.log"


def connections(sandbox: Any, home: Path) -> dict[str, dict[str, Any]]:
    """The four connections, pointing at ``sandbox`` and at the ledger file in ``home``."""
    conns = sandbox.connections()
    conns["whatsapp_default"]["extra"].update(sandbox.webhook_extras())  # checks the sandbox's signed webhooks
    return {
        **conns,
        **local_airflow.sqlite_ledger(home / "reminder_ledger.db"),
        "zoho_books_webhook": {"conn_type": "zoho_books_webhook", "password": sandbox.credentials["webhook_secret"]},
    }


def store_connections(env: dict[str, str], conns: dict[str, dict[str, Any]], home: Path) -> None:
    """Write the connections into Airflow's metadata DB (replacing those of an earlier run)."""
    path = home / "up-connections.json"
    exported = {cid: {**c, "extra": json.dumps(c["extra"]) if isinstance(c.get("extra"), dict) else c.get("extra")}
                for cid, c in conns.items()}
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)  # holds the sandbox's secrets
    with os.fdopen(fd, "w") as out:
        json.dump(exported, out)
    try:
        airflow = str(Path(sys.executable).with_name("airflow"))
        done = subprocess.run([airflow, "connections", "import", str(path), "--overwrite"], env=env,
                              capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            raise RuntimeError(f"`airflow connections import` failed:\n{done.stdout}{done.stderr}")
    finally:
        path.unlink(missing_ok=True)


def wait_for(url: str, what: str, child: subprocess.Popen, timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise RuntimeError(f"airflow standalone exited ({child.returncode}) before {what}; see {log}")
        try:
            with urllib.request.urlopen(url, timeout=5) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(1)
    raise TimeoutError(f"waited {timeout:.0f}s for {what}; see {log}")


def login(home: Path) -> tuple[str, str]:
    """The admin login ``airflow standalone`` generated (simple auth manager) in ``home``."""
    path = home / "simple_auth_manager_passwords.json.generated"
    for _ in range(60):
        if path.exists():
            passwords = json.loads(path.read_text() or "{}")
            if passwords:
                user = "admin" if "admin" in passwords else next(iter(passwords))
                return user, passwords[user]
        time.sleep(1)
    return "admin", f"(see {path})"


def stop(child: subprocess.Popen) -> None:
    """Stop standalone and every component it started (its own process group)."""
    if child.poll() is not None:
        return
    os.killpg(child.pid, signal.SIGTERM)
    try:
        child.wait(timeout=45)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait(timeout=10)


def banner(port: int, sandbox: Any, user: str, password: str, home: Path) -> str:
    base = f"http://127.0.0.1:{port}"
    secret = sandbox.credentials["webhook_secret"]
    body = json.dumps({"invoice_id": "INV-000142", "customer_name": "Priya Textiles", "mobile": "9820012345",
                       "total": 48500, "balance": 48500, "due_date": "2026-12-31", "status": "sent",
                       "currency_code": "INR"})
    return "\n".join([
        "",
        f"  Airflow          {base}    user {user}    password {password}",
        f"  Audit page       {base}/plugin/whatsapp-reminders    (on its own: {base}/whatsapp-audit/)",
        f"  Sandbox          {sandbox.url}    Zoho OAuth + Books + WhatsApp Cloud API, seed {sandbox.seed}",
        f"                   WhatsApp statuses and replies are POSTed to {base}/whatsapp/webhook",
        "  Zoho webhooks    the sandbox does not send Zoho workflow events; to send one (the alerts DAG runs it):",
        f"                   curl -X POST {base}/zoho-books/webhooks/invoices -H 'Content-Type: application/json' \\",
        f"                        -H 'X-Zoho-Webhook-Secret: {secret}' -d '{body}'",
        f"  AIRFLOW_HOME     {home} (logs: {home / LOG})",
        "",
        "  Trigger zoho_books_payment_reminders from its page (params form), then open WhatsApp reminders.",
        "  Its scheduled runs are dry runs until the Variable zoho_whatsapp_go_live is true (Admin -> Variables).",
        "  Ctrl-C stops everything.",
        "",
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make up", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8080, help="Airflow's API server / UI port (default 8080)")
    parser.add_argument("--sandbox-port", type=int, default=8765, help="the sandbox's port (default 8765)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--invoices", type=int, default=320, help="overdue invoices the sandbox seeds")
    parser.add_argument("--fresh", action="store_true", help=f"delete {HOME.name}/ first (runs, ledger, login)")
    parser.add_argument("--home", type=Path, default=HOME, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    local_airflow.add_source_paths()
    from sandbox import Sandbox

    home: Path = args.home
    if args.fresh and home.exists():
        shutil.rmtree(home)
    home.mkdir(parents=True, exist_ok=True)
    base = f"http://127.0.0.1:{args.port}"
    sandbox = Sandbox(host="127.0.0.1", port=args.sandbox_port, seed=args.seed, invoices=args.invoices,
                      callback_url=f"{base}/whatsapp/webhook").start()

    def _on_signal(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt  # Ctrl-C or SIGTERM, while starting or running: the finally below cleans up

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)  # also when started where SIGINT was ignored (a background job)
    child: subprocess.Popen | None = None
    log = home / LOG
    try:
        env = local_airflow.environment(home, drop=("AIRFLOW", "PYTEST"), extra={
            **local_airflow.server_settings(args.port),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
            "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",  # the Test button of Admin -> Connections
        })
        # standalone starts each component as `airflow <component>`: this virtualenv's, whatever PATH says.
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        print(f"sandbox on {sandbox.url}; preparing Airflow in {home} ...", flush=True)
        local_airflow.migrate_db(env)
        store_connections(env, connections(sandbox, home), home)
        airflow = str(Path(sys.executable).with_name("airflow"))
        with open(log, "ab") as out:
            child = subprocess.Popen([airflow, "standalone"], env=env, stdout=out, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        print(f"starting airflow standalone (log: {log}) ...", flush=True)
        wait_for(f"{base}/api/v2/monitor/health", "the API server", child, 300, log)
        wait_for(f"{base}/whatsapp-audit/static/audit.css", "the plugin", child, 60, log)
        user, password = login(home)
        print(banner(args.port, sandbox, user, password, home), flush=True)
        while child.poll() is None:
            time.sleep(1)
        print(f"airflow standalone exited ({child.returncode}); see {log}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        print("stopping Airflow and the sandbox ...", flush=True)
        if child is not None:
            stop(child)
        sandbox.stop()
        print("stopped.", flush=True)


if __name__ == "__main__":
    sys.exit(main())
