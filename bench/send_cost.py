"""CPU per message of WhatsAppHook.send_message alone: one thread, real HTTP to the sandbox, no ledger.

The tier section's sender figure is this plus the ledger's claim and settle, the batch's threads
and the pacing; measuring the hook apart says which of the two a change moved.
"""

from __future__ import annotations

import time
from typing import Any

from bench.harness import SandboxProcess, base_env, cpu_seconds, run_child


def hook_loop(n: int) -> dict[str, Any]:
    """(child) ``n`` sends in a row on one warm hook; the CPU this process used for them."""
    from zoho_whatsapp.rules.templates import build_template_message, load_templates
    from zoho_whatsapp.whatsapp.hook import WhatsAppHook

    spec = load_templates()["payment_reminder"]
    hook = WhatsAppHook()
    bodies = [
        build_template_message(spec, f"+9196{i:08d}", {"party_name": f"Cost Traders {i}", "invoice_number": f"INV-C{i:06d}",
                                                     "amount_due": "₹22,000.00", "due_date": "1 December 2030"},
                               opaque=f"600900:payment_reminder:{i}:2031-01-01")
        for i in range(n + 1)
    ]
    hook.send_message(bodies[0])  # connected and the connection read, like a warm worker
    cpu, wall = cpu_seconds(), time.perf_counter()
    wamids = [hook.send_message(body) for body in bodies[1:]]
    return {"messages": n, "cpu_seconds": cpu_seconds() - cpu, "wall_seconds": time.perf_counter() - wall,
            "distinct_wamids": len(set(wamids))}


def measure(work: Any, n: int = 1000) -> dict[str, Any]:
    """Hook CPU per 1,000 messages, and the sandbox's for the same requests (no latency, no cap in the way)."""
    with SandboxProcess(invoices=10, whatsapp_latency_ms=0, whatsapp_rate_cap=1_000_000) as sb:
        env = {**base_env(work / "airflow-send-cost"), **sb.connection_env()}
        sandbox_cpu = cpu_seconds(sb.pid)
        got = run_child(hook_loop, env, n=n)
        sandbox_cpu = cpu_seconds(sb.pid) - sandbox_cpu
        received = len(sb.messages())
    return {**got, "received": received, "hook_cpu_ms_per_1000": 1e6 * got["cpu_seconds"] / n,
            "sandbox_cpu_ms_per_1000": 1e6 * sandbox_cpu / max(1, received)}
