"""Plumbing shared by the benchmark sections: the sandbox in its own process, children with their own env.

The orchestrating process never imports Airflow: Airflow reads its configuration (AIRFLOW_HOME,
connections) when first imported, so every measurement runs in a fresh child whose environment is
fixed before that import, and whose peak memory is its own.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import queue
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_INCLUDE = Path(__file__).resolve().parents[1] / "include"
if str(_INCLUDE) not in sys.path:
    sys.path.insert(0, str(_INCLUDE))
import local_airflow  # noqa: E402  (include/ is not on sys.path before the line above)

REPO = local_airflow.REPO
PYTHON = sys.executable


@dataclass
class Figure:
    """One row of the results table: a measured value against its target.

    ``better`` says which way is good: ``"<="`` (time, memory, calls) or ``">="`` (rate, speed-up).
    ``ratio`` is always value / target, so the reader sees how far above or below the target it is.
    """

    section: str
    name: str
    value: float
    unit: str
    target: float | None = None
    better: str = "<="
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.target in (None, 0):
            return None
        return self.value / self.target

    @property
    def ok(self) -> bool | None:
        if self.target is None:
            return None
        return self.value <= self.target if self.better == "<=" else self.value >= self.target

    def as_dict(self) -> dict[str, Any]:
        ratio = self.ratio
        return {
            "section": self.section,
            "name": self.name,
            "value": round(self.value, 3),
            "unit": self.unit,
            "target": self.target,
            "better": self.better,
            "ratio": round(ratio, 3) if ratio is not None else None,
            "ok": self.ok,
            "note": self.note,
        }


@dataclass
class Section:
    """What one part of the benchmark measured: its figures and the details behind them."""

    name: str
    figures: list[Figure] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def add(self, name: str, value: float, unit: str, target: float | None = None, better: str = "<=",
            note: str = "") -> Figure:
        fig = Figure(self.name, name, float(value), unit, target, better, note)
        self.figures.append(fig)
        return fig


def zoho_budget(overdue_rows: int, listing: dict[str, Any]) -> int:
    """The Zoho calls a reminder run may make: a page per 200 rows of each listing (the overdue one; the
    due-soon one when a pre-due stage asks for it, at least a page), a page per 200 customers listed, plus 2
    (the token and the organization)."""
    upcoming = max(1, math.ceil((listing.get("upcoming_invoices") or 0) / 200)) if listing.get("upcoming_listed") else 0
    return math.ceil(overdue_rows / 200) + upcoming + math.ceil((listing.get("customers_listed") or 0) / 200) + 2


def base_env(airflow_home: Path) -> dict[str, str]:
    """Environment of a child that may import Airflow: its own home, our dags and plugins, no examples."""
    env = local_airflow.environment(airflow_home, logging_level="WARNING", drop=("AIRFLOW_CONN_", "AIRFLOW__"))
    env["BENCH_CHILD_LOG"] = str(airflow_home / "bench-child.log")
    return env


def enter_child(env: dict[str, str]) -> None:
    """First thing a child does, before anything imports Airflow.

    Its output (Airflow's task logs, which dag.test prints) goes to ``BENCH_CHILD_LOG`` so the
    table stays readable; the file is named in the error when a child fails.
    """
    os.environ.clear()
    os.environ.update(env)
    log_path = env.get("BENCH_CHILD_LOG")
    if log_path:
        sys.stdout.flush()
        sys.stderr.flush()
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
    local_airflow.add_source_paths()
    import logging

    logging.getLogger().setLevel(logging.WARNING)


def _child_main(func: Callable[..., Any], env: dict[str, str], kwargs: dict[str, Any], out: Any) -> None:
    enter_child(env)
    try:
        out.put(("ok", func(**kwargs)))
    except BaseException as exc:  # report it to the parent rather than dying silently
        import traceback

        out.put(("error", f"{exc.__class__.__name__}: {exc}\n{traceback.format_exc()}"))


def run_child(func: Callable[..., Any], env: dict[str, str], timeout: float = 1800, **kwargs: Any) -> Any:
    """Run ``func(**kwargs)`` in a fresh spawned interpreter with ``env``; return its (picklable) result."""
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    proc = ctx.Process(target=_child_main, args=(func, env, kwargs, out), daemon=False)
    proc.start()
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                status, value = out.get(timeout=1.0)
                break
            except queue.Empty:
                if not proc.is_alive():
                    raise RuntimeError(
                        f"{func.__name__} died in its child process (exit code {proc.exitcode}){_log_tail(env)}"
                    ) from None
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{func.__name__} did not finish within {timeout:.0f}s") from None
    finally:
        proc.join(timeout=30)
        if proc.is_alive():
            proc.terminate()
            proc.join(5)
    if status != "ok":
        raise RuntimeError(f"{func.__name__} failed in its child process: {value}{_log_tail(env)}")
    return value


def run_send_workers(
    target: Callable[..., None],
    args: tuple[Any, ...],
    refs: Sequence[Any],
    slots: int,
    *,
    timeout: float,
    kwargs: dict[str, Any] | None = None,
    around_clock: Callable[[], AbstractContextManager[Any]] | None = None,
) -> tuple[list[dict[str, Any]], float]:
    """Run ``slots`` spawned executor slots over ``refs``; return each slot's result and the wall seconds.

    Every slot is called ``target(*args, queue, ready, start, results, **kwargs)``: it takes
    ``(map_index, ref)`` items from ``queue`` until a ``None``, puts one item on ``ready`` once its
    imports are done, waits for ``start``, then puts one dict on ``results`` (``{"error": ...}`` if it
    failed). The clock starts only when every slot is ready, so process start-up is not measured.
    ``around_clock`` (e.g. a CPU hog and the readings taken beside it) is entered after the slots are
    ready and left as soon as every result is in, before the processes are joined.

    >>> got, wall = run_send_workers(send_worker, (env, settings, params), refs, slots=4, timeout=900)
    """
    ctx = multiprocessing.get_context("spawn")
    work, ready, results = ctx.Queue(), ctx.Queue(), ctx.Queue()
    for i, ref in enumerate(refs):
        work.put((i, ref))
    for _ in range(slots):
        work.put(None)  # one end mark per slot: each stops when it takes one
    start = ctx.Event()
    workers = [ctx.Process(target=target, args=(*args, work, ready, start, results), kwargs=kwargs or {})
               for _ in range(slots)]
    for w in workers:
        w.start()
    try:
        for _ in workers:
            ready.get(timeout=300)
        got: list[dict[str, Any]] = []
        with around_clock() if around_clock else nullcontext():
            began = time.perf_counter()
            start.set()
            for _ in workers:
                item = results.get(timeout=timeout)
                if "error" in item:
                    raise RuntimeError(f"a send worker failed: {item['error']}")
                got.append(item)
            wall = time.perf_counter() - began
    finally:
        for w in workers:
            w.join(30)
            if w.is_alive():  # a slot still waiting for work or for the start: nothing left to give it
                w.terminate()
                w.join(5)
    return got, wall


def _log_tail(env: dict[str, str], lines: int = 30) -> str:
    path = env.get("BENCH_CHILD_LOG")
    if not path or not Path(path).exists():
        return ""
    tail = Path(path).read_text(errors="replace").splitlines()[-lines:]
    return f"\n--- last lines of {path} ---\n" + "\n".join(tail)


# The nice level the benches give the sandbox where load is put beside the sender (root only): Meta's servers
# are not on the sender's CPUs, and a starved sandbox counts its own late wake-ups as the sender's bursts.
PROVIDER_NICE = -10


def niceness(level: int, what: str) -> Callable[[], None] | None:
    """What Popen runs in the child before the command: nice ``level`` (none at level 0).

    Below 0 needs root; without it the child runs at 0, and says so on its stderr, naming ``what`` asked for it.
    """
    if not level:
        return None

    def apply() -> None:
        try:
            os.setpriority(os.PRIO_PROCESS, 0, level)
        except PermissionError:
            os.write(2, f"cannot set nice {level} ({what}) without root; running at 0\n".encode())

    return apply


class SandboxProcess:
    """``python -m sandbox`` on a free loopback port, driven over its ``/_sandbox`` control endpoints.

    The sandbox runs in a process of its own so that it competes for the GIL with nobody we measure
    and its seeded data never counts toward a measured process's memory.

    >>> with SandboxProcess(invoices=100, whatsapp_latency_ms=150) as sb:
    ...     sb.connections()
    """

    CLI_SETTINGS = {
        "whatsapp_latency_ms": "--whatsapp-latency-ms",
        "whatsapp_rate_cap": "--whatsapp-rate-cap",
        "zoho_latency_ms": "--zoho-latency-ms",
        "zoho_rate_limit_per_minute": "--zoho-rate-limit-per-minute",
        "zoho_daily_quota": "--zoho-daily-quota",
    }

    def __init__(self, *, invoices: int, seed: int = 42, nice: int = 0, **settings: Any) -> None:
        self.invoices = invoices
        self.seed = seed
        self.nice = nice
        self.settings = settings
        self.url = ""
        self._proc: subprocess.Popen[str] | None = None
        self._log = tempfile.TemporaryFile(mode="w+")

    def start(self, timeout: float = 120) -> SandboxProcess:
        cmd = [PYTHON, "-m", "sandbox", "--host", "127.0.0.1", "--port", "0", "--seed", str(self.seed),
               "--invoices", str(self.invoices)]
        extra = {}
        for name, value in self.settings.items():
            if name in self.CLI_SETTINGS:
                cmd += [self.CLI_SETTINGS[name], str(value)]
            else:
                extra[name] = value
        env = {**os.environ, "PYTHONPATH": str(REPO / "include")}
        self._proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self._log, text=True, env=env,
                                      preexec_fn=niceness(self.nice, "the sandbox ahead of the load"))
        deadline = time.monotonic() + timeout
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()  # blocks until the sandbox has bound its port
        if "listening on" not in line:
            self.stop()
            self._log.seek(0)
            raise RuntimeError(f"the sandbox did not start: {line!r} {self._log.read()[-2000:]}")
        self.url = line.strip().rsplit(" ", 1)[-1]
        while time.monotonic() < deadline:
            try:
                self.get("/health")
                break
            except OSError:
                time.sleep(0.1)
        if extra:
            self.post("/faults", extra)
        return self

    @property
    def pid(self) -> int:
        """The sandbox's process id (its CPU time is measured apart from the sender's)."""
        if self._proc is None:
            raise RuntimeError("the sandbox is not running")
        return self._proc.pid

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(5)
        self._proc = None

    def __enter__(self) -> SandboxProcess:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- control endpoints ------------------------------------------------------------------------

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(f"{self.url}/_sandbox{path}", timeout=120) as resp:
            return json.load(resp)

    def post(self, path: str, body: dict[str, Any]) -> Any:
        req = urllib.request.Request(
            f"{self.url}/_sandbox{path}", data=json.dumps(body).encode(), method="POST",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=120) as resp:
            return json.load(resp)

    def connections(self) -> dict[str, dict[str, Any]]:
        return self.get("/credentials")["connections"]

    def connection_env(self) -> dict[str, str]:
        """``AIRFLOW_CONN_*`` variables for the Zoho and WhatsApp connections."""
        return local_airflow.connection_env(self.connections())

    def messages(self) -> list[dict[str, Any]]:
        return self.get("/messages")["messages"]

    def requests(self, service: str | None = None) -> list[dict[str, Any]]:
        return self.get(f"/requests?service={service}" if service else "/requests")["requests"]

    def overdue_invoices(self) -> list[dict[str, Any]]:
        return self.get("/zoho/overdue-invoices")["invoices"]

    def reset(self) -> None:
        self.post("/reset", {"faults_only": False})


@contextmanager
def scratch_dir(prefix: str) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix=prefix) as path:
        yield Path(path)


def migrate_airflow_db(env: dict[str, str]) -> None:
    """``airflow db migrate`` in the child's AIRFLOW_HOME (dag.test needs a metadata DB)."""
    local_airflow.migrate_db(env)


def ledger_env(path: Path, url: str | None = None) -> dict[str, str]:
    """The ledger connection: a SQLite file (the embedded default), or any SQLAlchemy ``url``."""
    if url:
        return local_airflow.connection_env(
            {local_airflow.LEDGER_CONN_ID: {"conn_type": "postgres", "extra": {"sqlalchemy_url": url}}})
    return local_airflow.connection_env(local_airflow.sqlite_ledger(path))


@contextmanager
def scratch_postgres(admin_url: str) -> Iterator[str]:
    """A fresh PostgreSQL database on the server of ``admin_url`` for one benchmark; dropped afterwards."""
    with local_airflow.scratch_postgres(admin_url, f"zw_bench_{os.getpid()}") as url:
        yield url


def cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU seconds the OS has charged to process ``pid`` (default: this one), all its threads.

    Read from ``/proc/<pid>/stat`` (utime, stime) for another process, from ``getrusage`` for this
    one: what the kernel accounted, so a busy machine slows the wall clock but not this figure.
    """
    import resource

    if pid is None or pid == os.getpid():
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()  # the command name may hold spaces: fields start after ")"
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5), counted from 1 with pid, comm
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb() -> float:
    """This process's peak resident set size (``ru_maxrss`` is in KiB on Linux)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
