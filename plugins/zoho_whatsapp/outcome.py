"""What a failed call means for the run, and the base of every documented error family.

Each remote system keeps its error knowledge in ONE module (``whatsapp/errors.py``,
``zoho/errors.py``), one exception class per documented family, chosen by the code the system
answered with. A class carries its :class:`Outcome` and a one-line ``fix`` a person can follow, so
the hooks' messages, ``python -m zoho_whatsapp.cli check`` and the troubleshooting table in
``docs/`` (``python -m zoho_whatsapp.troubleshooting``) all read the same text.
"""

from __future__ import annotations

import enum
from typing import ClassVar, TypeVar


class Outcome(enum.Enum):
    RETRY_LATER = "retry_later"  # the answer proves nothing happened: safe to try again later
    UNKNOWN = "unknown"  # the request may have been accepted: repeating it may duplicate
    STOP_RUN = "stop_run"  # credentials, account or configuration are broken: every further call fails too
    PERMANENT = "permanent"  # this one item can never succeed as it is: record it and move on


F = TypeVar("F", bound="ErrorFamily")


class ErrorFamily(Exception):
    """One documented error family of a remote system (a mixin for the systems' base exceptions).

    Class attributes describe the family: ``codes`` (what the system answers with: numbers, or the
    OAuth ``error`` strings), ``when`` (how it is recognised when there is no code), ``outcome`` and
    ``fix`` (one line; ``{conn_id}`` is replaced by the connection). An instance has ``conn_id``,
    ``code``, ``status`` and ``fix`` formatted for its connection; its message names the connection
    and ends with the fix.
    """

    system: ClassVar[str] = ""
    default_conn_id: ClassVar[str] = ""
    codes: ClassVar[frozenset[int | str]] = frozenset()
    code_range: ClassVar[range | None] = None  # a documented block of codes, below any exact code
    when: ClassVar[str] = ""
    outcome: Outcome = Outcome.UNKNOWN
    fix: str = ""

    def __init__(
        self,
        message: str,
        *,
        conn_id: str | None = None,
        code: int | None = None,
        status: int | None = None,
        outcome: Outcome | None = None,
    ) -> None:
        self.conn_id = conn_id
        self.code = code
        self.status = status
        if outcome is not None:
            self.outcome = outcome
        self.fix = type(self).fix_for(conn_id)
        if conn_id and f"{conn_id!r}" not in message:
            message = f"connection {conn_id!r}: {message}"
        self.reason = message  # what happened, without the fix
        # Airflow re-creates exceptions from their text (``serialize``): never append the fix twice.
        super().__init__(f"{message}. Fix: {self.fix}" if self.fix and ". Fix: " not in message else message)

    @classmethod
    def fix_for(cls, conn_id: str | None = None) -> str:
        """The class's fix for one connection (the system's default connection when not given)."""
        return cls.fix.format(conn_id=conn_id or cls.default_conn_id) if cls.fix else ""

    @classmethod
    def families(cls: type[F]) -> list[type[F]]:
        """This class and every subclass, parents before children, in definition order."""
        found: list[type[F]] = [cls]
        for sub in cls.__subclasses__():
            found.extend(sub.families())
        return list(dict.fromkeys(found))

    @classmethod
    def for_code(cls: type[F], code: int | str | None) -> type[F] | None:
        """The family whose ``codes`` include ``code`` (else whose ``code_range`` does), or ``None``."""
        if not isinstance(code, (int, str)):
            return None
        families = cls.families()
        for family in families:
            if code in family.__dict__.get("codes", ()):
                return family
        for family in families:
            block = family.__dict__.get("code_range")
            if block is not None and code in block:
                return family
        return None

    @classmethod
    def codes_label(cls) -> str:
        """The codes as the troubleshooting table shows them."""
        own = [str(c) for c in sorted(cls.__dict__.get("codes", ()), key=lambda c: (isinstance(c, str), c))]
        block = cls.__dict__.get("code_range")
        if block is not None:
            own.append(f"{block.start}–{block.stop - 1}")
        if cls.__dict__.get("when"):
            own.append(cls.__dict__["when"])
        return ", ".join(own)
