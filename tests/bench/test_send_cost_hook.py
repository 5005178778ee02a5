"""The hook reads its environment once per session, not on every send, and still honours it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from zoho_whatsapp.rules.templates import build_template_message, load_templates
from zoho_whatsapp.whatsapp.hook import WhatsAppHook


def _body(i: int) -> dict[str, Any]:
    spec = load_templates()["payment_reminder"]
    return build_template_message(spec, f"+9198200{i:05d}", {"party_name": "Priya Textiles", "invoice_number": f"INV-{i}",
                                                          "amount_due": "₹1,48,500.00", "due_date": "1 December 2030"})


def test_sends_do_not_read_the_environment(sandbox, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Set after the session exists, a proxy variable and a ~/.netrc change nothing: the messages still
    reach the sandbox directly, with the connection's token (before, requests re-read both per request)."""
    hook = WhatsAppHook()
    hook.send_message(_body(0))
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens there: a send through it would fail
    monkeypatch.setenv("NO_PROXY", "")
    netrc = tmp_path / ".netrc"
    netrc.write_text("machine 127.0.0.1 login someone password not-the-token\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    wamids = [hook.send_message(_body(i)) for i in range(1, 4)]
    assert len(set(wamids)) == 3
    received = [m["wamid"] for m in sandbox.messages()]
    assert set(wamids) <= set(received)


def test_a_proxy_set_before_the_session_is_still_used(sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    """Deployments behind a proxy keep working: the variables are read when the session is built."""
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("NO_PROXY", "")
    monkeypatch.delenv("no_proxy", raising=False)
    hook = WhatsAppHook(timeout=2.0)
    assert hook.get_conn().proxies.get("http") == "http://127.0.0.1:9"
