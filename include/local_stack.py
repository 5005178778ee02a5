"""``make stack``: docker-compose.yaml's CeleryExecutor deployment as processes on this machine's loopback.

    .venv/bin/python include/local_stack.py [--invoices 320] [--concurrency 4,4] [--keep]    # Ctrl-C stops it all

Starts what the compose file declares, as local processes (there is no Docker engine here): the
machine's PostgreSQL (a metadata database and a ledger database of this stack's own) and Redis (a
database of its own as the Celery broker), then ``api-server``, ``scheduler``, ``dag-processor``,
``triggerer`` and two Celery workers, and the sandbox (the compose file's ``sandbox`` profile). The
environment is the compose file's ``x-airflow-common`` environment itself, read from the YAML, with
container values turned into local ones in ONE place (:func:`localize`: hosts to loopback, mounted
paths to the checkout, ``.env`` secrets generated), so the two cannot drift; the tests in
``tests/stack/`` check that every setting of the compose file is used or overridden for a reason.
The service commands and health checks come from the compose file too. Everything started is
stopped (process groups, the tasks' own groups included) on exit, Ctrl-C or SIGTERM.

Dev tooling only, like ``local_airflow``: not in the production image.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit, urlunsplit

_INCLUDE = Path(__file__).resolve().parent
if str(_INCLUDE) not in sys.path:
    sys.path.insert(0, str(_INCLUDE))
import local_airflow  # noqa: E402  (include/ is not on sys.path before the lines above)

local_airflow.add_source_paths()
from bench.harness import SandboxProcess, niceness  # noqa: E402  (the repository is on sys.path from here on)

REPO = local_airflow.REPO
COMPOSE_FILE = REPO / "docker-compose.yaml"
BIN = Path(sys.executable).parent
POSTGRES_ADMIN_URL = os.environ.get("ZW_STACK_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
REMINDER_DAG, ALERT_DAG = "zoho_books_payment_reminders", "zoho_books_invoice_alerts"
ADMIN = "admin"

# The compose services this stack runs, in start order; the worker runs once per entry of ``workers``.
SERVICES = ("airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer", "airflow-worker")
# The worker only the alert DAG's Celery queue reaches (compose's concurrency): started once, after the others.
ALERT_WORKER = "airflow-alert-worker"

# -- the one place where the compose file's container values become local ones ------------------------------

# Compose's service names (and the ports the services listen on inside their containers) on loopback.
HOSTS = {"postgres": "127.0.0.1:5432", "redis": f"{REDIS_HOST}:{REDIS_PORT}", "airflow-apiserver:8080": "127.0.0.1:{api}"}
# Settings whose compose value is replaced, and why (a test refuses a replacement without a reason).
OVERRIDES: dict[str, str] = {
    "AIRFLOW__CORE__AUTH_MANAGER": (
        "the official image ships the FAB provider, this venv installs requirements.txt only: Airflow's simple "
        "auth manager, with the admin user airflow-init would create; it guards only the UI and REST API, "
        "scheduling and execution are the same"),
    "AIRFLOW__CELERY__BROKER_URL": (
        "a Redis database of this stack's own: parallel stacks share the machine's Redis and would take each "
        "other's tasks from one queue"),
}
# Settings compose does not have, which processes sharing one host (not one container each) need.
ADDED: dict[str, str] = {
    "AIRFLOW_HOME": "the image's /opt/airflow; here a throw-away directory per stack",
    "AIRFLOW__CORE__DAGS_FOLDER": "compose mounts ./dags at the image's default; here the checkout's dags/",
    "AIRFLOW__CORE__PLUGINS_FOLDER": "compose mounts ./plugins at the image's default; here the checkout's plugins/",
    "AIRFLOW__LOGGING__BASE_LOG_FOLDER": "compose mounts ./logs; here the stack's home, shared by its processes",
    "AIRFLOW__CORE__UNIT_TEST_MODE": "off, as in the image (a caller's test settings must not leak in)",
    "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO, the image's default",
    "AIRFLOW__API__HOST": "compose publishes the API server on 127.0.0.1 only; here it binds there itself",
    "AIRFLOW__API__PORT": "compose maps 127.0.0.1:8080 to the container; here a free loopback port (parallel stacks)",
    "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_HOST": "the health check compose curls, on loopback",
    "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT": "8974 in its container; here a free port",
    "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": "8794 in its container; here a free port",
    "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": "8793 in each worker's container; here a free port per worker",
    "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "the admin user airflow-init creates (_AIRFLOW_WWW_USER_USERNAME)",
    "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": "its password (_AIRFLOW_WWW_USER_PASSWORD, generated)",
    "AIRFLOW_CONN_ZOHO_BOOKS_DEFAULT": "the sandbox's Zoho connection (sandbox-connect stores it with zoho-auth)",
    "AIRFLOW_CONN_WHATSAPP_DEFAULT": "the sandbox's WhatsApp connection (sandbox-connect: whatsapp-auth)",
    "PYTHONPATH": "the image installs the project; here plugins/ and include/ of the checkout",
    "PATH": "the venv's bin/ first: the compose health checks call airflow and celery by name",
    "HOSTNAME": "per worker: the container's host name compose's worker health check pings",
}
# Service-level settings of the compose file and what the stack does instead.
SERVICE_SETTINGS: dict[str, str] = {
    "DUMB_INIT_SETSID": "the image's dumb-init only; the stack stops a worker with SIGTERM to its group (warm shutdown)",
    "_AIRFLOW_DB_MIGRATE": "the stack runs `airflow db migrate` before starting the services",
    "_AIRFLOW_WWW_USER_CREATE": "the admin user of the simple auth manager (see AIRFLOW__CORE__AUTH_MANAGER)",
    "_AIRFLOW_WWW_USER_USERNAME": "that user's name",
    "_AIRFLOW_WWW_USER_PASSWORD": "that user's password, generated",
    "CONNECTION_CHECK_MAX_COUNT": "airflow-cli only (debug profile): the stack runs the CLI with Stack.airflow()",
    "PYTHONPATH": "the sandbox's: the stack runs it with include/ on PYTHONPATH",
}
SIMPLE_AUTH_MANAGER = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"

_VAR = re.compile(r"\$\$|\$\{(\w+)(?:(:?[-?])([^}]*))?\}")


def compose() -> dict[str, Any]:
    """docker-compose.yaml, its YAML anchors and merge keys resolved."""
    import yaml

    return yaml.safe_load(COMPOSE_FILE.read_text())


def interpolate(value: str, dotenv: Mapping[str, str]) -> str:
    """Compose's ``${NAME}``, ``${NAME:-default}``, ``${NAME:?error}`` and ``$$``, from ``dotenv``."""

    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, op, arg = match.group(1), match.group(2), match.group(3)
        have = dotenv.get(name)
        if op and op.endswith("-"):
            return have if have or (have is not None and op == "-") else arg
        if op and op.endswith("?") and not have:
            raise KeyError(f"{name}: {arg}")
        return have or ""

    return _VAR.sub(one, value)


def compose_environment(service: str | None = None) -> dict[str, str]:
    """The environment compose gives ``service`` (default: the shared ``x-airflow-common`` one), uninterpolated."""
    data = compose()
    env = data["x-airflow-common"]["environment"] if service is None else data["services"][service].get(
        "environment", {})
    return {str(k): str(v) for k, v in env.items()}


def _map_host(netloc: str, ports: Mapping[str, int]) -> str:
    auth, _, hostport = netloc.rpartition("@")
    host = hostport.split(":")[0]
    target = HOSTS.get(hostport) or HOSTS.get(host)
    if target is None:
        return netloc
    target = target.format(**ports)
    return f"{auth}@{target}" if auth else target


def localize(key: str, value: str, *, dotenv: Mapping[str, str], ports: Mapping[str, int],
             paths: Mapping[str, Path]) -> str:
    """A compose environment value, interpolated from ``dotenv``, with hosts and mounted paths made local."""
    value = interpolate(value, dotenv)
    if "://" in value and not value.lstrip().startswith("{"):
        parts = urlsplit(value)
        value = urlunsplit(parts._replace(netloc=_map_host(parts.netloc, ports)))
    for container, local in paths.items():
        if value == container or value.startswith(container + "/"):
            value = str(local) + value[len(container):]
    return value


def mounted_paths(home: Path) -> dict[str, Path]:
    """Compose's volumes of ``x-airflow-common``, container path -> local path.

    The code (dags, plugins, templates) is the checkout's, as compose mounts it; logs and config go to the
    stack's own ``home`` instead of the checkout's, so that parallel stacks never write into one directory.
    """
    out: dict[str, Path] = {}
    for volume in compose()["x-airflow-common"]["volumes"]:
        source, container = interpolate(volume, {}).split(":")[:2]
        own = container in ("/opt/airflow/logs", "/opt/airflow/config")  # not include/config: the checkout's
        out[container] = home / Path(container).name if own else REPO / source
    return out


def fresh_dotenv(name: str, *, webhook_secret: str, password: str) -> dict[str, str]:
    """What ``.env`` holds in a deployment (see .env.example), for the stack ``name``: its own databases, new secrets."""
    from cryptography.fernet import Fernet

    return {
        "POSTGRES_USER": "postgres",  # the machine's server: trust authentication on loopback
        "POSTGRES_PASSWORD": secrets.token_hex(12),
        "POSTGRES_DB": f"{name}_airflow",
        "LEDGER_DB_NAME": f"{name}_ledger",
        "LEDGER_DB_USER": "postgres",
        "LEDGER_DB_PASSWORD": secrets.token_hex(12),
        "AIRFLOW_FERNET_KEY": Fernet.generate_key().decode(),
        "AIRFLOW_JWT_SECRET": secrets.token_hex(32),
        "ZOHO_WEBHOOK_SECRET": webhook_secret,
        "_AIRFLOW_WWW_USER_USERNAME": ADMIN,
        "_AIRFLOW_WWW_USER_PASSWORD": password,
    }


def stack_environment(*, home: Path, dotenv: Mapping[str, str], ports: Mapping[str, int], redis_db: int,
                      connections: Mapping[str, Mapping[str, Any]],
                      overrides: Mapping[str, tuple[str, str]] | None = None) -> dict[str, str]:
    """The environment of every process of a stack: compose's ``x-airflow-common`` environment, localized,
    then :data:`OVERRIDES` and :data:`ADDED` (each with its reason), then ``overrides`` of this one use.

    ``dotenv`` is what a deployment's ``.env`` holds; ``ports`` the stack's ``api``, ``scheduler_health``
    and ``trigger_logs`` ports; ``connections`` the sandbox's Zoho and WhatsApp connections.
    """
    paths = mounted_paths(home)
    env = {key: localize(key, value, dotenv=dotenv, ports=ports, paths=paths)
           for key, value in compose_environment().items()}
    broker = urlsplit(env["AIRFLOW__CELERY__BROKER_URL"])
    env.update({
        "AIRFLOW__CORE__AUTH_MANAGER": SIMPLE_AUTH_MANAGER,
        "AIRFLOW__CELERY__BROKER_URL": urlunsplit(broker._replace(path=f"/{redis_db}")),
    })
    added = {
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(paths["/opt/airflow/logs"]),
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(ports["api"]),
        "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_HOST": "127.0.0.1",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT": str(ports["scheduler_health"]),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(ports["trigger_logs"]),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{dotenv['_AIRFLOW_WWW_USER_USERNAME']}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "simple_auth_manager_passwords.json"),
        **local_airflow.connection_env(connections),
        **env,
        **{key: value for key, (value, _reason) in (overrides or {}).items()},
    }
    out = local_airflow.environment(home, drop=("AIRFLOW", "PYTEST"), extra=added)
    out["PATH"] = f"{BIN}{os.pathsep}{out.get('PATH', '')}"
    return out


# -- processes -----------------------------------------------------------------------------------------------


def ensure_services() -> None:
    """The machine's PostgreSQL and Redis, started when stopped (CI starts from stopped ones)."""
    subprocess.run([str(REPO / "scripts" / "ensure-postgres.sh")], check=True)
    if subprocess.run(["redis-cli", "-h", REDIS_HOST, "-p", str(REDIS_PORT), "ping"], capture_output=True,
                      text=True).stdout.strip() != "PONG":
        subprocess.run(["redis-server", "--daemonize", "yes", "--port", str(REDIS_PORT), "--bind", REDIS_HOST,
                        "--save", "", "--appendonly", "no"], check=True)
        wait_for("Redis", lambda: subprocess.run(["redis-cli", "-p", str(REDIS_PORT), "ping"], capture_output=True,
                                                 text=True).stdout.strip() == "PONG", 30)


def wait_for(what: str, check: Callable[[], Any], timeout: float, every: float = 0.5) -> Any:
    """``check()``'s first truthy value; exceptions count as not yet. TimeoutError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except Exception as exc:  # not up yet
            last = exc
        time.sleep(every)
    raise TimeoutError(f"waited {timeout:.0f}s for {what}" + (f" (last error: {last!r})" if last else ""))


def process_groups(pid: int) -> set[int]:
    """The process groups of ``pid`` and every descendant (a task runs in a group of its own)."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return set()
    groups = set()
    for proc in procs:
        try:
            groups.add(os.getpgid(proc.pid))
        except ProcessLookupError:
            pass
    return groups


def signal_groups(groups: set[int], sig: int) -> None:
    for group in groups:
        try:
            os.killpg(group, sig)
        except ProcessLookupError:
            pass


def nice_of(cpu_shares: int | None) -> int:
    """The nice level that gives a process about the CPU weight compose's ``cpu_shares`` gives a container.

    Both only matter when the CPU is short. Docker's default weight is 1024 and each nice step is a factor of
    about 1.25 in the kernel's weight table, so ``cpu_shares: 4096`` (four times the default) is nice -6.

    >>> nice_of(4096), nice_of(None), nice_of(256)
    (-6, 0, 6)
    """
    if not cpu_shares:
        return 0
    return max(-20, min(19, -round(math.log(cpu_shares / 1024) / math.log(1.25))))


@dataclass
class Component:
    """One service process of the stack: its command, its own environment on top of the stack's, its log."""

    name: str
    command: list[str]
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    nice: int = 0  # compose's cpu_shares as a nice level (:func:`nice_of`); its tasks inherit it

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class Stack:
    """The compose deployment as local processes; a context manager (``with Stack() as stack:``).

    ``workers``: Celery concurrency of each worker (two, as the issue asks: one can die while the other
    carries on). ``overrides``: more ``{setting: (value, reason)}`` for one use (tests shorten timeouts).
    ``sandbox``: settings of the sandbox (``invoices``, ``whatsapp_latency_ms``, ...). ``start_timeout``: seconds
    for the services to pass their health checks (a busy CI machine needs more than a laptop).
    """

    def __init__(self, *, workers: tuple[int, ...] = (4, 4), overrides: Mapping[str, tuple[str, str]] | None = None,
                 sandbox: Mapping[str, Any] | None = None, home: Path | None = None, keep: bool = False,
                 log: IO[str] | None = None, start_timeout: float = 300) -> None:
        self.workers = tuple(workers)
        self.start_timeout = start_timeout
        self.overrides = dict(overrides or {})
        self.sandbox_settings = {"invoices": 320, **(sandbox or {})}
        self.home = home or Path(tempfile.mkdtemp(prefix="zw-stack-"))
        self.keep = keep
        self.out = log or sys.stderr
        self.name = f"zw_stack_{os.getpid()}_{secrets.token_hex(3)}"
        self.components: dict[str, Component] = {}
        self.env: dict[str, str] = {}
        self.ports: dict[str, int] = {}
        self.password = secrets.token_urlsafe(18)
        self.sandbox: SandboxProcess | None = None
        self.metadata_url = self.ledger_url = ""
        self.dotenv: dict[str, str] = {}
        self.redis_db: int | None = None
        self._exit = ExitStack()
        self._token: str | None = None

    # -- lifecycle -----------------------------------------------------------------------------------------

    def __enter__(self) -> Stack:
        try:
            return self.start(timeout=self.start_timeout)
        except BaseException:
            # the logs go with the stack's home: show their ends while they are there (CI keeps nothing else)
            print(self.tails(), file=self.out, flush=True)
            self.stop()
            raise

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def say(self, text: str) -> None:
        print(f"stack: {text}", file=self.out, flush=True)

    def start(self, *, unpause: tuple[str, ...] = (REMINDER_DAG, ALERT_DAG), timeout: float = 300) -> Stack:
        """Databases, broker, sandbox, migrations, then every service; returns when all are healthy."""
        clock = time.monotonic()
        self.home.mkdir(parents=True, exist_ok=True)
        ensure_services()
        self.metadata_url = self._exit.enter_context(
            local_airflow.scratch_postgres(POSTGRES_ADMIN_URL, f"{self.name}_airflow"))
        self.ledger_url = self._exit.enter_context(
            local_airflow.scratch_postgres(POSTGRES_ADMIN_URL, f"{self.name}_ledger"))
        self.redis_db = self._claim_redis_db()
        self.sandbox = self._exit.enter_context(SandboxProcess(**self.sandbox_settings))
        self.ports = {"api": local_airflow.free_port(), "scheduler_health": local_airflow.free_port(),
                      "trigger_logs": local_airflow.free_port()}
        self.env = self.environment()
        self.say(f"home {self.home}; sandbox {self.sandbox.url}; migrating the metadata database")
        local_airflow.migrate_db(self.env)
        for name in SERVICES[:-1]:
            self._add(name)
        for number, concurrency in enumerate(self.workers, 1):
            self._add("airflow-worker", number=number, concurrency=concurrency)
        self._add(ALERT_WORKER)
        for component in self.components.values():
            self.launch(component)
        self.wait_healthy(timeout=timeout)
        self._wait_for_dags(unpause, timeout=timeout)
        for dag_id in unpause:
            self.api("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": False}).raise_for_status()
        self.say(f"up in {time.monotonic() - clock:.0f}s: {self.url} (user {ADMIN}, password {self.password})")
        return self

    def stop(self) -> None:
        """SIGTERM to every component's process groups (warm shutdown), SIGKILL after 20 s; drop what was made."""
        groups = {c.name: process_groups(c.proc.pid) for c in self.components.values() if c.alive and c.proc}
        for gids in groups.values():
            signal_groups(gids, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for component in self.components.values():
            if component.proc is not None:
                try:
                    component.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    pass
        for gids in groups.values():
            signal_groups(gids, signal.SIGKILL)
        for component in self.components.values():
            if component.proc is not None and component.proc.poll() is None:
                component.proc.wait(timeout=10)
        self.components.clear()
        self._release_redis_db()
        self._exit.close()  # the sandbox, then the two databases (dropped WITH (FORCE))
        if not self.keep:
            import shutil

            shutil.rmtree(self.home, ignore_errors=True)

    # -- environment ---------------------------------------------------------------------------------------

    def environment(self) -> dict[str, str]:
        """The stack's environment (see :func:`stack_environment`), with a fresh ``.env`` for this stack."""
        assert self.sandbox is not None and self.redis_db is not None
        secret = self.sandbox.get("/credentials")["credentials"]["webhook_secret"]
        self.dotenv = fresh_dotenv(self.name, webhook_secret=secret, password=self.password)
        passwords = self.home / "simple_auth_manager_passwords.json"
        passwords.write_text(json.dumps({ADMIN: self.password}))
        passwords.chmod(0o600)
        return stack_environment(home=self.home, dotenv=self.dotenv, ports=self.ports, redis_db=self.redis_db,
                                 connections=self.sandbox.connections(), overrides=self.overrides)

    # -- services ------------------------------------------------------------------------------------------

    def _add(self, service: str, *, number: int = 0, concurrency: int = 0) -> Component:
        spec = compose()["services"][service]
        command = shlex.split(spec["command"]) if isinstance(spec["command"], str) else list(spec["command"])
        name, env = service, {}
        if service == "airflow-apiserver":
            command += ["--port", str(self.ports["api"])]
        elif service in ("airflow-worker", ALERT_WORKER):
            name = f"airflow-worker-{number}" if service == "airflow-worker" else service
            env = {"HOSTNAME": name, "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(local_airflow.free_port())}
            command += ["--celery-hostname", f"celery@{name}", "--pid", str(self.home / f"{name}.pid")]
            if service == "airflow-worker":
                command += ["--concurrency", str(concurrency)]
        component = Component(name, [str(BIN / "airflow"), *command], env, nice=nice_of(spec.get("cpu_shares")))
        self.components[name] = component
        return component

    def launch(self, component: Component) -> None:
        """Start (or start again) one component, in a session of its own, its output appended to its log."""
        component.log_path = self.home / "logs" / f"{component.name}.log"
        component.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(component.log_path, "ab") as log:
            component.proc = subprocess.Popen(component.command, env={**self.env, **component.env}, stdout=log,
                                              stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                              start_new_session=True, cwd=self.home,
                                              preexec_fn=niceness(component.nice, f"{component.name}'s cpu_shares"))

    def kill(self, name: str, sig: int = signal.SIGKILL) -> set[int]:
        """Send ``sig`` to every process group of component ``name`` (its tasks' too); returns the groups."""
        component = self.components[name]
        assert component.proc is not None
        groups = process_groups(component.proc.pid)
        signal_groups(groups, sig)
        return groups

    def restart(self, name: str, *, timeout: float = 300) -> None:
        """Stop ``name`` (SIGTERM, then SIGKILL after 30 s, as ``docker compose restart``), start it, wait healthy."""
        component = self.components[name]
        if component.alive and component.proc is not None:
            groups = self.kill(name, signal.SIGTERM)
            try:
                component.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                signal_groups(groups, signal.SIGKILL)
                component.proc.wait(timeout=10)
        self.launch(component)
        self.wait_healthy((name,), timeout=timeout)

    def healthcheck(self, name: str) -> list[str]:
        """Compose's health check of the service behind ``name``, as a local command line."""
        service = "airflow-worker" if name.startswith("airflow-worker") else name
        test = list(compose()["services"][service]["healthcheck"]["test"])
        kind, rest = test[0], test[1:]
        text = " ".join(rest) if kind == "CMD-SHELL" else shlex.join(rest)
        text = (text.replace("http://localhost:8080", self.url)
                .replace("http://localhost:8974", f"http://127.0.0.1:{self.ports['scheduler_health']}")
                .replace("$${HOSTNAME}", self.components[name].env.get("HOSTNAME", socket.gethostname()))
                .replace("$$", "$"))
        if kind == "CMD-SHELL" and "--hostname" in text:  # this host's name, where the container has its own
            text = text.replace('"${HOSTNAME}"', shlex.quote(socket.getfqdn()))
        return ["bash", "-c", text]

    def wait_healthy(self, names: tuple[str, ...] | None = None, *, timeout: float = 300) -> None:
        """Until compose's health check of every component (or of ``names``) passes; a dead one fails at once."""
        pending = set(names or self.components)
        deadline = time.monotonic() + timeout
        while pending:
            for name in sorted(pending):
                component = self.components[name]
                if not component.alive:
                    raise RuntimeError(f"{name} exited ({component.proc.returncode if component.proc else '-'}); "
                                       f"see {component.log_path}:\n{self.log_tail(name)}")
                env = {**self.env, **component.env}
                try:  # a check that cannot finish in time (a busy machine: it imports Airflow) is a "not yet"
                    check = subprocess.run(self.healthcheck(name), env=env, capture_output=True,
                                           timeout=max(30.0, min(120.0, deadline - time.monotonic())))
                except subprocess.TimeoutExpired:
                    continue
                if check.returncode == 0:
                    pending.discard(name)
            if pending and time.monotonic() > deadline:
                raise TimeoutError(f"not healthy after {timeout:.0f}s: {', '.join(sorted(pending))}")
            if pending:
                time.sleep(1)

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.components[name].log_path
        if path is None or not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def tails(self, lines: int = 40, task_logs: int = 3) -> str:
        """The last ``lines`` of every component's log and of the ``task_logs`` newest task logs: what a
        failure report shows, since the stack's home (and so every log) is removed when it stops."""
        out = []
        for name, component in self.components.items():
            state = "running" if component.alive else (
                f"exited {component.proc.returncode}" if component.proc else "not started")
            out.append(f"===== {name} ({state}): {component.log_path} =====\n{self.log_tail(name, lines)}")
        logs = self.home / "logs"
        newest = sorted((p for p in logs.glob("dag_id=*/**/*.log") if p.is_file()) if logs.exists() else [],
                        key=lambda p: p.stat().st_mtime)[-task_logs:]
        for path in newest:
            text = "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
            out.append(f"===== task log {path.relative_to(logs)} =====\n{text}")
        return "\n".join(out)

    def _wait_for_dags(self, dag_ids: tuple[str, ...], timeout: float) -> None:
        for dag_id in dag_ids:
            wait_for(f"the dag-processor to serialize {dag_id}",
                     lambda d=dag_id: self.api("GET", f"/api/v2/dags/{d}").status_code == 200, timeout, every=1)

    # -- Redis ---------------------------------------------------------------------------------------------

    def _claim_redis_db(self) -> int:
        """A Redis database (1-15) no live stack holds, claimed by this process's pid."""
        import redis

        admin = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=0)
        for number in range(1, 16):
            key = f"zw-stack:db:{number}"
            holder = admin.get(key)
            if holder is not None and _alive(int(holder)):
                continue
            if holder is not None:
                admin.delete(key)
            if admin.set(key, os.getpid(), nx=True, ex=7 * 86400):
                redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=number).flushdb()
                return number
        raise RuntimeError("every Redis database 1-15 is held by a running stack")

    def _release_redis_db(self) -> None:
        if self.redis_db is None:
            return
        import redis

        redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=self.redis_db).flushdb()
        redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=0).delete(f"zw-stack:db:{self.redis_db}")
        self.redis_db = None

    # -- using it ------------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.ports['api']}"

    def token(self) -> str:
        """A JWT for the REST API, from the simple auth manager's ``/auth/token``."""
        import httpx

        if self._token is None:
            answer = httpx.post(f"{self.url}/auth/token", json={"username": ADMIN, "password": self.password},
                                timeout=30)
            answer.raise_for_status()
            self._token = answer.json()["access_token"]
        return self._token

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        """One request to the API server's REST API, authenticated; returns the ``httpx.Response``."""
        import httpx

        headers = {"Authorization": f"Bearer {self.token()}", **kwargs.pop("headers", {})}
        return httpx.request(method, f"{self.url}{path}", headers=headers, timeout=kwargs.pop("timeout", 60), **kwargs)

    def trigger(self, dag_id: str, *, conf: Mapping[str, Any] | None = None, logical_date: str | None = None,
                run_id: str | None = None) -> str:
        """Trigger a run through ``POST /api/v2/dags/{dag_id}/dagRuns``; returns its run id."""
        body: dict[str, Any] = {"conf": dict(conf or {}), "logical_date": logical_date}
        if run_id:
            body["dag_run_id"] = run_id
        answer = self.api("POST", f"/api/v2/dags/{dag_id}/dagRuns", json=body)
        if answer.status_code >= 400:
            raise RuntimeError(f"trigger {dag_id}: HTTP {answer.status_code} {answer.text[:500]}")
        return answer.json()["dag_run_id"]

    def run_state(self, dag_id: str, run_id: str) -> str:
        answer = self.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")
        answer.raise_for_status()
        return answer.json()["state"]

    def wait_for_run(self, dag_id: str, run_id: str, *, timeout: float = 600) -> str:
        """The run's final state (success or failed)."""
        return wait_for(f"{dag_id} run {run_id} to finish",
                        lambda: (s := self.run_state(dag_id, run_id)) in ("success", "failed") and s, timeout, every=1)

    def runs(self, dag_id: str) -> list[dict[str, Any]]:
        answer = self.api("GET", f"/api/v2/dags/{dag_id}/dagRuns", params={"limit": 100, "order_by": "id"})
        answer.raise_for_status()
        return answer.json()["dag_runs"]

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        answer = self.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances", params={"limit": 1000})
        answer.raise_for_status()
        return answer.json()["task_instances"]

    def reset_data(self) -> None:
        """The sandbox back to its seeded data and an empty message log, and every ledger table emptied.

        Call it with no run in flight. The ledger's tables are emptied, not dropped: the API server and the
        triggerer keep their connections, and row ids go on rising (the inbox trigger remembers the last one).
        """
        import sqlalchemy as sa

        assert self.sandbox is not None
        self.sandbox.reset()
        engine = sa.create_engine(self.ledger_url)
        try:
            with engine.begin() as conn:
                tables = [t for t in sa.inspect(conn).get_table_names() if t != "schema_version"]
                if tables:
                    conn.execute(sa.text("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " CASCADE"))
        finally:
            engine.dispose()

    def airflow(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """``airflow ARGS`` in the stack's environment (what ``docker compose run airflow-cli`` does)."""
        return subprocess.run([str(BIN / "airflow"), *args], env=self.env, capture_output=True, text=True,
                              timeout=timeout, cwd=self.home)

    def worker_running(self, pid: int) -> str | None:
        """The worker component whose process tree holds ``pid`` (a task's), or None."""
        import psutil

        for name, component in self.components.items():
            if name.startswith("airflow-worker") and component.alive and component.proc is not None:
                try:
                    tree = {p.pid for p in psutil.Process(component.proc.pid).children(recursive=True)}
                except psutil.NoSuchProcess:
                    continue
                if pid in tree:
                    return name
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make stack", description=__doc__.split("\n\n")[0])
    parser.add_argument("--invoices", type=int, default=320, help="overdue invoices the sandbox seeds (default 320)")
    parser.add_argument("--concurrency", default="4,4",
                        help="Celery concurrency of each worker, comma-separated: one worker per value (default 4,4)")
    parser.add_argument("--whatsapp-latency-ms", type=float, default=0, help="the sandbox's WhatsApp answer delay")
    parser.add_argument("--keep", action="store_true", help="keep the stack's home (logs) after it stops")
    args = parser.parse_args(argv)

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)
    workers = tuple(int(c) for c in args.concurrency.split(",") if c.strip())
    stack = Stack(workers=workers, keep=args.keep,
                  sandbox={"invoices": args.invoices, "whatsapp_latency_ms": args.whatsapp_latency_ms})
    try:
        with stack:
            print(f"\nAirflow UI and REST API  {stack.url}   (user {ADMIN}, password {stack.password})")
            print(f"Zoho webhooks            {stack.url}/zoho-books/webhooks/invoices | payments")
            print(f"sandbox (Zoho + Meta)    {stack.sandbox.url if stack.sandbox else ''}/_sandbox/messages")
            print(f"logs                     {stack.home / 'logs'}")
            print(f"CLI                      AIRFLOW_HOME={stack.home} ... (or Stack.airflow())")
            print("\nBoth DAGs are unpaused: the reminder DAG's latest 09:00 run starts now. Ctrl-C stops everything.",
                  flush=True)
            while True:
                for name, component in stack.components.items():
                    if not component.alive:
                        print(f"{name} exited; see {component.log_path}", file=sys.stderr)
                        return 1
                time.sleep(2)
    except KeyboardInterrupt:
        print("\nstopping the stack ...", file=sys.stderr)
        return 0


if __name__ == "__main__":
    sys.exit(main())
