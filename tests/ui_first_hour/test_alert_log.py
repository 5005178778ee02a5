"""An alert's task log has no "Skipping masking for a secret as it's too short" warning.

Airflow's Task SDK registers every value of a connection's extras as a secret when a task reads the
connection; the Zoho connection's data centre used to be ``region: "in"``, two characters, which the
masker refuses and warns about (once per process) in the first task that reads it.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.webhooks.helpers import INVOICES, client, flat_invoice_body, headers, install_secret, usable_invoice

pytestmark = pytest.mark.dag


def test_an_alert_logs_no_short_secret_warning(sandbox: Any, sqlite_ledger: Any, set_connection: Any, run_dag: Any,
                                               capfd: Any, caplog: Any) -> None:
    from airflow.sdk._shared.secrets_masker.secrets_masker import SecretsMasker

    assert sandbox.connections()["zoho_books_default"]["extra"]["region"] == "zoho.in"
    secret = sandbox.credentials["webhook_secret"]
    install_secret(set_connection, secret)
    invoice, _, _ = usable_invoice(sandbox)
    with client() as c:
        assert c.post(INVOICES, json=flat_invoice_body(invoice, "9820012345"), headers=headers(secret)).status_code == 202
    SecretsMasker._has_warned_short_secret = False  # it warns once per process: this run must be able to
    result = run_dag("zoho_books_invoice_alerts")
    assert result["state"] == "success", result["states"]
    assert len(sandbox.messages()) == 1  # the alert went out, reading both connections
    logged = capfd.readouterr().out + caplog.text
    assert "send_alert" in logged  # the task's log is what we read
    assert "too short" not in logged
