"""CLI: ``python -m sandbox --host 127.0.0.1 --port 8765`` or ``--print-connections``."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import sys
import threading
from typing import Any

from .scenarios import SCENARIOS
from .seed import make_credentials
from .server import Sandbox, base_url, connections_for, is_loopback


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m sandbox", description=__doc__)
    p.add_argument("--host", default="127.0.0.1", help="loopback address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--invoices", type=int, default=320, help="number of overdue invoices to seed")
    p.add_argument("--organizations", type=int, default=1)
    p.add_argument("--scenario", choices=sorted(SCENARIOS), default=None,
                   help="extra data on top of the seed (collections: every reminder-policy rule)")
    p.add_argument("--whatsapp-latency-ms", type=float, default=0)
    p.add_argument("--whatsapp-rate-cap", type=int, default=80)
    p.add_argument("--zoho-latency-ms", type=float, default=0)
    p.add_argument("--zoho-rate-limit-per-minute", type=int, default=100)
    p.add_argument("--zoho-daily-quota", type=int, default=5000)
    p.add_argument("--token-ttl-seconds", type=float, default=3600)
    p.add_argument("--callback-url", default=os.environ.get("SANDBOX_CALLBACK_URL") or None,
                   help="POST signed WhatsApp status webhooks and replies here after each accepted message, e.g. "
                        "http://127.0.0.1:8080/whatsapp/webhook (default: $SANDBOX_CALLBACK_URL; off when unset)")
    p.add_argument("--verbose", action="store_true", help="log every HTTP request to stderr")
    p.add_argument("--print-connections", action="store_true",
                   help="print export AIRFLOW_CONN_...='json' lines for --host/--port/--seed and exit")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if not is_loopback(args.host):
        print(f"sandbox: refusing non-loopback --host {args.host!r}", file=sys.stderr)
        return 2
    if args.print_connections:
        conns = connections_for(base_url(args.host, args.port), make_credentials(args.seed))
        for conn_id, conn in conns.items():
            print(f"export AIRFLOW_CONN_{conn_id.upper()}={shlex.quote(json.dumps(conn))}")
        return 0
    settings: dict[str, Any] = {
        "whatsapp_latency_ms": args.whatsapp_latency_ms,
        "whatsapp_rate_cap": args.whatsapp_rate_cap,
        "zoho_latency_ms": args.zoho_latency_ms,
        "zoho_rate_limit_per_minute": args.zoho_rate_limit_per_minute,
        "zoho_daily_quota": args.zoho_daily_quota,
        "token_ttl_seconds": args.token_ttl_seconds,
        "callback_url": args.callback_url,
    }
    sb = Sandbox(host=args.host, port=args.port, seed=args.seed, invoices=args.invoices,
                 organizations=args.organizations, verbose=args.verbose, scenario=args.scenario, **settings)
    stop = threading.Event()

    def _on_signal(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    sb.start()
    print(f"sandbox listening on {sb.url}", flush=True)
    if args.callback_url:
        print(f"sandbox POSTs signed WhatsApp webhooks to {args.callback_url}; the receiver's whatsapp_default "
              f"extras (app_secret, verify_token): GET {sb.url}/_sandbox/whatsapp/callbacks", flush=True)
    while not stop.wait(0.5):
        pass
    sb.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
