"""Helpers of the deployment tests (a plain module: conftest files are not imported by name)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Run:
    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err


def db_connection(conn_id: str) -> dict[str, Any] | None:
    """The connection as stored in Airflow's metadata DB (decrypted), or None."""
    import sqlalchemy as sa
    from airflow.models.connection import Connection
    from airflow.utils.session import create_session

    with create_session() as session:
        row = session.scalar(sa.select(Connection).where(Connection.conn_id == conn_id))
        if row is None:
            return None
        return {
            "conn_type": row.conn_type,
            "login": row.login,
            "password": row.password,
            "extra": json.loads(row.extra or "{}"),
            "description": row.description,
            "encrypted": bool(row.is_encrypted and row.is_extra_encrypted),
        }


def delete_db_connections(*conn_ids: str) -> None:
    import sqlalchemy as sa
    from airflow.models.connection import Connection
    from airflow.utils.session import create_session

    with create_session() as session:
        session.execute(sa.delete(Connection).where(Connection.conn_id.in_(conn_ids)))
