"""Where the Zoho access token lives between calls, tasks and DAG runs.

Zoho allows 10 token requests per 10 minutes per refresh token, so minting a token per task
would lock a busy deployment out. The token is kept in an Airflow Variable: tasks may write
Variables in Airflow 3 (through the execution API), the metadata DB encrypts them with the
Fernet key, every worker of every run sees the same value, and a key containing
``access_token`` is masked in the UI. Outside a task (CLI, tests, API server) Variables are
read-only, so the process-wide memory layer carries the token there.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from dataclasses import asdict, dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CachedToken:
    access_token: str
    expires_at: float
    api_domain: str | None = None

    def valid_for(self, seconds: float, now: float | None = None) -> bool:
        return self.expires_at - (now if now is not None else time.time()) > seconds


class TokenCache:
    """Two layers: this process's memory, then an Airflow Variable shared by all workers.

    ``key`` folds in a fingerprint of client id and refresh token, so rotating either
    credential never reuses a token minted for the old one.
    """

    _memory: dict[str, CachedToken] = {}
    _lock = threading.Lock()

    def __init__(self, conn_id: str, client_id: str, refresh_token: str, *, use_variables: bool = True) -> None:
        fingerprint = hashlib.sha256(f"{client_id}:{refresh_token}".encode()).hexdigest()[:16]
        self.variable_key = f"{conn_id}_access_token"
        self.fingerprint = fingerprint
        self.memory_key = f"{self.variable_key}:{fingerprint}"
        self.use_variables = use_variables

    def get(self) -> CachedToken | None:
        """The shared Variable wins: another worker may have refreshed since we last looked."""
        if self.use_variables:
            stored = self._read_variable()
            if stored is not None:
                return stored
        with self._lock:
            return self._memory.get(self.memory_key)

    def put(self, token: CachedToken) -> None:
        with self._lock:
            self._memory[self.memory_key] = token
        if self.use_variables:
            self._write_variable(token)

    def forget(self) -> None:
        with self._lock:
            self._memory.pop(self.memory_key, None)

    @classmethod
    def clear_memory(cls) -> None:
        with cls._lock:
            cls._memory.clear()

    def _read_variable(self) -> CachedToken | None:
        from airflow.sdk import Variable

        try:
            raw = Variable.get(self.variable_key, default=None)
        except Exception as exc:  # a secrets backend failing must not stop the send
            log.warning("could not read Variable %s (%s): requesting a new token", self.variable_key, exc)
            return None
        if not raw:
            return None
        try:
            data = json.loads(raw)
            if data.get("fingerprint") != self.fingerprint:
                return None
            return CachedToken(data["access_token"], float(data["expires_at"]), data.get("api_domain"))
        except (ValueError, KeyError, TypeError):
            log.warning("Variable %s does not hold a cached Zoho token; ignoring it", self.variable_key)
            return None

    def _write_variable(self, token: CachedToken) -> None:
        from airflow.sdk import Variable

        payload = json.dumps({**asdict(token), "fingerprint": self.fingerprint})
        try:
            Variable.set(
                self.variable_key,
                payload,
                description="Zoho Books access token cache (managed by ZohoBooksHook; safe to delete)",
            )
        except (ImportError, RuntimeError, AttributeError) as exc:
            # Outside a running task the Task SDK cannot write Variables.
            log.debug("token kept in process memory only: %s", exc)
