"""docker-compose.yaml, Dockerfile and .env.example, validated without a Docker engine.

The structural assertions parse the files with PyYAML and always run; `docker compose config` /
`docker-compose config` runs too when one of them is installed (Debian: apt-get install docker-compose).
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.helpers import REPO

COMPOSE = REPO / "docker-compose.yaml"
ENV_EXAMPLE = REPO / ".env.example"
INIT_SCRIPT = REPO / "scripts" / "postgres-init" / "10-reminder-ledger.sh"
AIRFLOW_SERVICES = {
    "airflow-apiserver": "api-server",
    "airflow-scheduler": "scheduler",
    "airflow-dag-processor": "dag-processor",
    "airflow-worker": "celery worker --queues alerts,default",  # alerts first: docs/stack.md
    "airflow-alert-worker": "celery worker --queues alerts --concurrency 4",
    "airflow-triggerer": "triggerer",
}
REQUIRED_SECRETS = {"POSTGRES_PASSWORD", "LEDGER_DB_PASSWORD", "AIRFLOW_FERNET_KEY", "AIRFLOW_JWT_SECRET",
                    "_AIRFLOW_WWW_USER_PASSWORD"}
TEST_ENV = {
    "POSTGRES_PASSWORD": "a1" * 12,
    "LEDGER_DB_PASSWORD": "b2" * 12,
    "AIRFLOW_FERNET_KEY": "x" * 43 + "=",
    "AIRFLOW_JWT_SECRET": "c3" * 16,
    "_AIRFLOW_WWW_USER_PASSWORD": "d4" * 8,
    "ZOHO_WEBHOOK_SECRET": "e5" * 16,
}


def raw() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def env_example() -> dict[str, str]:
    pairs = {}
    for text in ENV_EXAMPLE.read_text().splitlines():
        if text.strip() and not text.lstrip().startswith("#"):
            key, _, value = text.partition("=")
            pairs[key.strip()] = value
    return pairs


_VAR = re.compile(r"\$\$|\$\{(\w+)(?:(:?[-?])([^}]*))?\}")


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's interpolation (``$$``, ``${V}``, ``${V:-d}``, ``${V-d}``, ``${V:?e}``, ``${V?e}``)."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def one(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        name, op, arg = m.group(1), m.group(2), m.group(3)
        current = env.get(name)
        empty = current is None or (current == "" and op and op.startswith(":"))
        if op and op.endswith("?") and empty:
            raise KeyError(f"{name}: {arg}")
        if op and op.endswith("-") and empty:
            return arg
        return current or ""

    return _VAR.sub(one, value)


def resolved(env: dict[str, str] | None = None) -> dict[str, Any]:
    return interpolate(raw(), {**env_example(), **TEST_ENV, **(env or {})})


def test_services_follow_airflows_official_structure() -> None:
    services = raw()["services"]
    assert {"postgres", "redis", "airflow-init", *AIRFLOW_SERVICES} <= set(services)
    assert services["postgres"]["image"].startswith("postgres:")
    assert services["redis"]["image"].startswith("redis:")
    for name, command in AIRFLOW_SERVICES.items():
        svc = services[name]
        assert svc["command"] == command
        assert "healthcheck" in svc and svc["restart"] == "always"
        assert svc["depends_on"]["airflow-init"] == {"condition": "service_completed_successfully"}
        assert svc["depends_on"]["postgres"] == {"condition": "service_healthy"}
        assert svc["depends_on"]["redis"] == {"condition": "service_healthy"}
        assert "profiles" not in svc
    assert services["airflow-worker"]["depends_on"]["airflow-apiserver"] == {"condition": "service_healthy"}
    assert services["airflow-worker"]["environment"]["DUMB_INIT_SETSID"] == "0"
    assert services["airflow-apiserver"]["healthcheck"]["test"][-1] == "http://localhost:8080/api/v2/monitor/health"


def test_every_airflow_container_gets_the_image_env_and_mounts_the_product_needs() -> None:
    services = resolved()["services"]
    for name in [*AIRFLOW_SERVICES, "airflow-init", "airflow-cli", "sandbox-connect"]:
        svc = services[name]
        assert svc["build"] == "." and svc["image"] == "zoho-books-whatsapp-airflow:3.3.2", name
        env = svc["environment"]
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
        assert env["AIRFLOW__CELERY__BROKER_URL"] == "redis://:@redis:6379/0"
        assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == f"postgresql+psycopg2://airflow:{TEST_ENV['POSTGRES_PASSWORD']}@postgres/airflow"
        assert env["AIRFLOW__CELERY__RESULT_BACKEND"].startswith("db+postgresql+psycopg2://airflow:")
        assert env["AIRFLOW__CORE__FERNET_KEY"] == TEST_ENV["AIRFLOW_FERNET_KEY"]
        assert env["AIRFLOW__API_AUTH__JWT_SECRET"] == TEST_ENV["AIRFLOW_JWT_SECRET"]
        assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/"
        assert env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "false"
        assert env["AIRFLOW__CORE__TEST_CONNECTION"] == "Disabled"
        assert env["AIRFLOW_CONN_REMINDER_LEDGER_DEFAULT"].startswith("postgres://reminder_ledger:")
        assert "_PIP_ADDITIONAL_REQUIREMENTS" not in env
        mounts = {m.split(":")[1]: m.split(":")[0] for m in svc["volumes"]}
        for folder in ("dags", "plugins", "include/templates", "include/config", "logs", "config"):
            assert mounts[f"/opt/airflow/{folder}"] == f"./{folder}", (name, folder)
        # the sandbox and the dev tooling in include/ are not mounted into the production containers
        assert "/opt/airflow/include" not in mounts and not any("sandbox" in m for m in mounts), name
        assert svc["user"] == "50000:0" or name == "airflow-init"
    code = "\n".join(t for t in COMPOSE.read_text().splitlines() if not t.lstrip().startswith("#"))
    assert "_PIP_ADDITIONAL_REQUIREMENTS" not in code  # requirements come through the Dockerfile


def test_test_connection_is_off_and_says_why() -> None:
    text = COMPOSE.read_text()
    assert "AIRFLOW__CORE__TEST_CONNECTION: 'Disabled'" in text
    before = text[: text.index("AIRFLOW__CORE__TEST_CONNECTION:")].splitlines()[-5:]
    reason = " ".join(line.strip().lstrip("#") for line in before if line.strip().startswith("#"))
    assert "re-uses the stored password" in reason and "official" in reason
    assert "Enabled" not in code_only(text)


def code_only(text: str) -> str:
    return "\n".join(t for t in text.splitlines() if not t.lstrip().startswith("#"))


def published(svc: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(host address, host port, container port) of each short-syntax port mapping; address "" = every interface."""
    found = []
    for spec in svc.get("ports", []):
        parts = str(spec).split(":")
        address = parts[0] if len(parts) == 3 else ""
        found.append((address, parts[-2], parts[-1]))
    return found


def test_only_the_webhook_proxy_listens_beyond_loopback() -> None:
    services = resolved()["services"]
    assert published(services["airflow-apiserver"]) == [("127.0.0.1", "8080", "8080")]
    assert published(services["flower"]) == [("127.0.0.1", "5555", "5555")]
    assert published(resolved({"AIRFLOW_API_PORT": "9090"})["services"]["airflow-apiserver"]) == [
        ("127.0.0.1", "9090", "8080")]
    open_to_all = {name for name, svc in services.items() for address, _, _ in published(svc) if address != "127.0.0.1"}
    assert open_to_all == {"webhook-proxy"}
    proxy = services["webhook-proxy"]
    assert proxy["profiles"] == ["proxy"]
    assert {(a, h) for a, h, _ in published(proxy)} == {("", "80"), ("", "443")}
    assert "./docs/deploy/Caddyfile:/etc/caddy/Caddyfile:ro" in proxy["volumes"]
    assert (REPO / "docs" / "deploy" / "Caddyfile").is_file()
    assert proxy["environment"]["AIRFLOW_UPSTREAM"] == "airflow-apiserver:8080"
    # WEBHOOK_DOMAIN is optional for the stack; the proxy itself refuses to start without it
    assert "test -n \"${WEBHOOK_DOMAIN}\"" in proxy["command"][-1]
    assert resolved()["services"]["webhook-proxy"]["environment"]["WEBHOOK_DOMAIN"] == ""


def test_secrets_have_no_defaults_and_env_example_holds_none() -> None:
    text = COMPOSE.read_text()
    for name in REQUIRED_SECRETS:
        assert re.search(r"\$\{" + name + r":\?", text), f"{name} must be required (${{{name}:?...}})"
        assert not re.search(r"\$\{" + name + r":?-", text), f"{name} must not have a default"
    example = env_example()
    assert {k: example[k] for k in REQUIRED_SECRETS} == dict.fromkeys(REQUIRED_SECRETS, "")
    assert example["ZOHO_WEBHOOK_SECRET"] == ""
    with pytest.raises(KeyError, match="POSTGRES_PASSWORD: set POSTGRES_PASSWORD in .env"):
        interpolate(raw(), env_example())
    assert ".env" in (REPO / ".gitignore").read_text().split()
    assert ".env" in (REPO / ".dockerignore").read_text().split()


def test_every_variable_compose_reads_is_documented_in_env_example() -> None:
    used = {m.group(1) for m in _VAR.finditer(COMPOSE.read_text()) if m.group(1)}
    undocumented = used - set(env_example()) - {"AIRFLOW_PROJ_DIR", "SANDBOX_URL", "HOSTNAME"}
    assert not undocumented, f"add to .env.example: {sorted(undocumented)}"


def test_ledger_connection_is_its_own_database_on_the_same_postgres(monkeypatch) -> None:
    from zoho_whatsapp.ledger.ledger import ledger_url_from_connection

    env = resolved()["services"]["airflow-worker"]["environment"]
    monkeypatch.setenv("AIRFLOW_CONN_REMINDER_LEDGER_DEFAULT", env["AIRFLOW_CONN_REMINDER_LEDGER_DEFAULT"])
    url = ledger_url_from_connection()
    assert url == f"postgresql+psycopg2://reminder_ledger:{TEST_ENV['LEDGER_DB_PASSWORD']}@postgres:5432/reminder_ledger"
    assert not env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].endswith("/reminder_ledger")

    webhook = json.loads(env["AIRFLOW_CONN_ZOHO_BOOKS_WEBHOOK"])
    assert webhook == {"conn_type": "generic", "password": TEST_ENV["ZOHO_WEBHOOK_SECRET"]}

    postgres = resolved()["services"]["postgres"]
    assert "./scripts/postgres-init:/docker-entrypoint-initdb.d:ro" in postgres["volumes"]
    assert postgres["environment"]["LEDGER_DB_PASSWORD"] == TEST_ENV["LEDGER_DB_PASSWORD"]
    assert postgres["environment"]["LEDGER_DB_NAME"] == "reminder_ledger"
    assert os.access(INIT_SCRIPT, os.X_OK)


def test_init_service_migrates_creates_the_admin_and_checks_the_ledger() -> None:
    init = resolved()["services"]["airflow-init"]
    assert init["environment"]["_AIRFLOW_DB_MIGRATE"] == "true"
    assert init["environment"]["_AIRFLOW_WWW_USER_CREATE"] == "true"
    assert init["environment"]["_AIRFLOW_WWW_USER_PASSWORD"] == TEST_ENV["_AIRFLOW_WWW_USER_PASSWORD"]
    script = init["command"][-1]
    assert "/entrypoint airflow version" in script  # the image's entrypoint migrates and creates the user
    assert "PYTHONPATH=/opt/airflow/plugins /entrypoint python -m zoho_whatsapp.cli check ledger" in script


def test_sandbox_is_an_optional_profile_next_to_the_worker() -> None:
    services = raw()["services"]
    in_profile = {name for name, svc in services.items() if "sandbox" in svc.get("profiles", [])}
    assert in_profile == {"sandbox", "sandbox-connect"}
    for name in in_profile:
        assert services[name]["network_mode"] == "service:airflow-worker"
    assert services["sandbox"]["entrypoint"][:3] == ["python", "-m", "sandbox"]
    # the image has no sandbox: in this profile it comes from the checkout
    assert services["sandbox"]["volumes"] == ["${AIRFLOW_PROJ_DIR:-.}/include/sandbox:/opt/airflow/include/sandbox:ro"]
    assert services["sandbox"]["environment"]["PYTHONPATH"] == "/opt/airflow/include"
    assert services["sandbox-connect"]["depends_on"] == {"sandbox": {"condition": "service_healthy"}}


def test_dockerfile_installs_the_pinned_requirements_and_registers_the_provider() -> None:
    text = (REPO / "Dockerfile").read_text()
    pinned = re.search(r"^apache-airflow==(\S+)$", (REPO / "requirements.txt").read_text(), re.M).group(1)
    assert re.search(rf"^ARG AIRFLOW_VERSION={re.escape(pinned)}$", text, re.M)
    assert re.search(r"^ARG PYTHON_VERSION=3\.11$", text, re.M)
    assert "FROM apache/airflow:${AIRFLOW_VERSION}-python${PYTHON_VERSION}" in text
    assert 'pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" -r /opt/airflow/requirements.txt' in text
    assert "pip install --no-cache-dir --no-deps -e /opt/airflow" in text
    for folder in ("plugins", "dags", "include/templates", "include/config"):
        assert f"COPY --chown=airflow:0 {folder} /opt/airflow/{folder}" in text
    assert "COPY --chown=airflow:0 pyproject.toml /opt/airflow/pyproject.toml" in text
    assert "_PIP_ADDITIONAL_REQUIREMENTS" not in text


# Never in the production image: the sandbox serves its credentials over HTTP; the rest is dev tooling.
NOT_IN_IMAGE = ("include/sandbox", "include/demo.py", "include/local_airflow.py", "bench", "tests", "scripts",
                "docs", ".env", ".git", ".venv")
NEEDED_IN_IMAGE = ("requirements.txt", "pyproject.toml", "plugins/zoho_whatsapp/__init__.py",
                   "plugins/zoho_whatsapp_plugin.py", "dags/zoho_books_payment_reminders.py",
                   "dags/zoho_books_invoice_alerts.py", "include/templates/whatsapp_templates.yaml",
                   "include/config/reminder_policy.yaml", "include/config/organizations.yaml")


def context_copies(dockerfile: str) -> list[str]:
    """The build-context sources of every COPY / ADD (continuation lines joined, JSON form read, stages skipped)."""
    sources: list[str] = []
    for line in re.sub(r"\\\n", " ", dockerfile).splitlines():
        words = line.split(maxsplit=1)
        if len(words) < 2 or words[0].upper() not in ("COPY", "ADD"):
            continue
        args = words[1].split()
        flags = [a for a in args if a.startswith("--")]
        if any(f.startswith("--from") for f in flags):
            continue  # from another stage, not from the checkout
        rest = " ".join(a for a in args if not a.startswith("--"))
        paths = json.loads(rest) if rest.startswith("[") else rest.split()
        sources += paths[:-1]
    return sources


def _clean(path: str) -> str:
    path = path.strip().removeprefix("./").rstrip("/")
    return "" if path in (".", "") else path


def brings_in(source: str, target: str) -> bool:
    """Whether a COPY source (a path or a glob, relative to the context) would copy `target` or something in it."""
    source, target = _clean(source), _clean(target)
    if source == "" or source == target or target.startswith(source + "/") or source.startswith(target + "/"):
        return True
    parts = target.split("/")
    return any(fnmatch.fnmatchcase("/".join(parts[:i]), source) for i in range(1, len(parts) + 1))


def copied_files(dockerfile: str) -> set[str]:
    """Files of this checkout the Dockerfile's COPY lines would take (ignoring .dockerignore on purpose)."""
    files = {p.relative_to(REPO).as_posix() for p in REPO.rglob("*")
             if p.is_file() and ".git" not in p.parts and ".venv" not in p.parts}
    return {f for f in files for src in context_copies(dockerfile) if brings_in(src, f)}


def forbidden_copies(dockerfile: str) -> list[str]:
    bad = [f"{src} -> {item}" for src in context_copies(dockerfile) for item in NOT_IN_IMAGE if brings_in(src, item)]
    bad += [f"{f} (a file under include/ outside templates and config)" for f in copied_files(dockerfile)
            if f.startswith("include/") and not f.startswith(("include/templates/", "include/config/"))]
    return bad


def test_the_image_ships_what_production_runs_and_not_the_sandbox_or_dev_tooling() -> None:
    text = (REPO / "Dockerfile").read_text()
    assert forbidden_copies(text) == []
    shipped = copied_files(text)
    assert set(NEEDED_IN_IMAGE) <= shipped
    assert not any(f.startswith(("include/sandbox/", "tests/", "bench/")) for f in shipped)


@pytest.mark.parametrize("line", [
    "COPY include /opt/airflow/include",
    "COPY --chown=airflow:0 include/ /opt/airflow/include/",
    "COPY . /opt/airflow",
    "COPY ./ /opt/airflow/",
    'COPY ["include", "/opt/airflow/include"]',
    "ADD bench /opt/airflow/bench",
    "COPY include/*.py /opt/airflow/include/",
    "COPY include/sandbox \\\n     /opt/airflow/include/sandbox",
    "COPY tests/conftest.py /opt/airflow/",
])
def test_the_image_check_catches_the_sandbox_or_tooling_coming_back(line: str) -> None:
    text = (REPO / "Dockerfile").read_text() + "\n" + line + "\n"
    assert forbidden_copies(text)


def test_the_image_check_lets_other_stages_and_needed_files_through() -> None:
    text = (REPO / "Dockerfile").read_text() + "\nCOPY --from=builder /opt/airflow/include /opt/x\n"
    assert forbidden_copies(text) == []


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parent folders decides."""
    parts = path.split("/")
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        regex = re.escape(pattern.lstrip("!").strip("/")).replace(r"\*\*", ".*").replace(r"\*", "[^/]*")
        if any(re.fullmatch(regex, "/".join(parts[:i])) for i in range(1, len(parts) + 1)):
            excluded = not negate
    return excluded


def test_dockerignore_keeps_the_sandbox_and_secrets_out_of_the_build_context() -> None:
    patterns = [p.strip() for p in (REPO / ".dockerignore").read_text().splitlines()
                if p.strip() and not p.startswith("#")]
    files = {p.relative_to(REPO).as_posix() for p in REPO.rglob("*")
             if p.is_file() and ".git" not in p.parts and ".venv" not in p.parts}
    context = {f for f in files if not dockerignored(f, patterns)}
    assert set(NEEDED_IN_IMAGE) <= context
    assert not [f for f in context if any(brings_in(item, f) for item in NOT_IN_IMAGE)]
    assert not [f for f in context if "__pycache__" in f or f.endswith(".db")]
    assert dockerignored("include/sandbox/server.py", patterns)
    assert dockerignored(".env", patterns) and not dockerignored("include/templates/x.yaml", patterns)


def _compose_cli() -> list[str] | None:
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True)
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


@pytest.fixture
def compose_cli() -> list[str]:
    found = _compose_cli()
    if found is None:
        pytest.skip("neither `docker compose` nor `docker-compose` is installed (Debian: apt-get install docker-compose); "
                    "the structural tests above still ran")
    return found


def test_docker_compose_config_accepts_the_file(compose_cli, tmp_path: Path) -> None:
    env_file = tmp_path / "test.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in {**env_example(), **TEST_ENV}.items()))
    base = [*compose_cli, "--env-file", str(env_file), "-f", str(COMPOSE)]
    done = subprocess.run([*base, "config"], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr
    normalized = yaml.safe_load(done.stdout)
    worker = normalized["services"]["airflow-worker"]
    assert worker["environment"]["AIRFLOW__CORE__FERNET_KEY"] == TEST_ENV["AIRFLOW_FERNET_KEY"]
    assert {v["target"] if isinstance(v, dict) else v.split(":")[1] for v in worker["volumes"]} >= {
        "/opt/airflow/dags", "/opt/airflow/plugins", "/opt/airflow/include/templates", "/opt/airflow/include/config"}

    for name, port in (("airflow-apiserver", 8080), ("flower", 5555)):
        if name not in normalized["services"]:
            continue  # flower is in a profile some versions leave out
        (spec,) = normalized["services"][name]["ports"]
        host_ip = spec.get("host_ip") if isinstance(spec, dict) else str(spec).split(":")[0]
        assert host_ip == "127.0.0.1", (name, spec)
        assert (spec.get("target") if isinstance(spec, dict) else int(str(spec).split(":")[2].split("/")[0])) == port

    done = subprocess.run([*base, "--profile", "sandbox", "config", "--services"], capture_output=True, text=True,
                          cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert {"sandbox", "sandbox-connect", "airflow-worker"} <= set(done.stdout.split())


def test_docker_compose_config_refuses_the_example_env_until_filled_in(compose_cli) -> None:
    done = subprocess.run([*compose_cli, "--env-file", str(ENV_EXAMPLE), "-f", str(COMPOSE), "config"],
                          capture_output=True, text=True, cwd=REPO)
    assert done.returncode != 0
    assert "in .env" in done.stderr and "set " in done.stderr


def test_sandbox_connect_script_connects_airflow_to_a_sandbox(airflow_db, tmp_path: Path) -> None:
    """The sandbox profile's one-shot service, run here against a local sandbox: grant code, zoho-auth,
    whatsapp-auth, check (the same steps as README's real-account section)."""
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed (the Airflow image has it)")
    from cryptography.fernet import Fernet

    from sandbox import Sandbox

    # a private copy of the session's migrated metadata DB, so what the script writes stays here
    source = Path(os.environ["AIRFLOW_HOME"]) / "airflow.db"
    with sqlite3.connect(source) as src, sqlite3.connect(tmp_path / "airflow.db") as dst:
        src.backup(dst)
    script = raw()["services"]["sandbox-connect"]["command"][-1].replace("$$", "$")
    sb = Sandbox(host="127.0.0.1", port=0, seed=42).start()
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_CONN_")}
        env.update({
            "SANDBOX_URL": sb.url,
            "AIRFLOW_HOME": str(tmp_path),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{tmp_path / 'airflow.db'}",
            "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}",
            "PYTHONPATH": str(REPO / "plugins"),
        })
        done = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=300,
                              stdin=subprocess.DEVNULL)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "connection 'zoho_books_default' added" in done.stdout
        assert "connection 'whatsapp_default' added" in done.stdout
        assert "all 3 connection(s) work" in done.stdout
        for secret in (sb.credentials["zoho_client_secret"], sb.credentials["whatsapp_token"]):
            assert secret not in done.stdout + done.stderr
        assert [r["form"]["grant_type"] for r in sb.requests(service="zoho_oauth")][:1] == ["authorization_code"]
    finally:
        sb.stop()


def test_ledger_init_script_creates_a_database_the_ledger_can_use(postgres_url, tmp_path: Path) -> None:
    """scripts/postgres-init/10-reminder-ledger.sh against this machine's PostgreSQL: twice (idempotent),
    then the send ledger migrates its schema as the new role in the new database."""
    if postgres_url is None or shutil.which("psql") is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL and psql are needed here; `make services` starts the server")
        pytest.skip("no PostgreSQL server or psql client on this machine")
    import sqlalchemy as sa

    from zoho_whatsapp.ledger import SendLedger

    admin = sa.engine.make_url(postgres_url)
    name = f"zw_ledger_init_{os.getpid()}"
    env = {**os.environ, "PGHOST": admin.host or "127.0.0.1", "PGPORT": str(admin.port or 5432),
           "POSTGRES_USER": admin.username or "postgres", "POSTGRES_DB": admin.database,
           "LEDGER_DB_NAME": name, "LEDGER_DB_USER": name, "LEDGER_DB_PASSWORD": "f6" * 12}
    if admin.password:
        env["PGPASSWORD"] = admin.password
    engine = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    try:
        for _ in range(2):
            done = subprocess.run(["bash", str(INIT_SCRIPT)], env=env, capture_output=True, text=True, timeout=60)
            assert done.returncode == 0, done.stderr
            assert f"send ledger database {name} (owner {name}) is ready" in done.stdout
            assert env["LEDGER_DB_PASSWORD"] not in done.stdout + done.stderr
        with engine.connect() as conn:
            owner = conn.execute(sa.text("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = :n"),
                                 {"n": name}).scalar()
        assert owner == name
        url = admin.set(username=name, password=env["LEDGER_DB_PASSWORD"], database=name)
        ledger = SendLedger(url.render_as_string(hide_password=False))
        try:
            ledger.migrate()  # creating tables works for the new role
            assert ledger.rows() == []
        finally:
            ledger.dispose()
    finally:
        with engine.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(sa.text(f'DROP ROLE IF EXISTS "{name}"'))
        engine.dispose()
