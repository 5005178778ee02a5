"""Run one batch send in its own process, so a test can kill it like a worker dies.

Usage: python send_batch_child.py '<BatchRef json>' <try_number> <max_workers>
With a SIGTERM the process behaves like Airflow's task runner: an exception in the main thread.
"""

import json
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "plugins"))

from zoho_whatsapp.ledger import RunInfo, SendLedger  # noqa: E402
from zoho_whatsapp.rules.templates import load_templates  # noqa: E402
from zoho_whatsapp.whatsapp.batch import BatchRef, BatchSender  # noqa: E402
from zoho_whatsapp.whatsapp.hook import WhatsAppHook  # noqa: E402


class Terminated(Exception):
    pass


def _terminate(signum, frame):  # noqa: ANN001
    raise Terminated("SIGTERM")


def main() -> None:
    signal.signal(signal.SIGTERM, _terminate)
    ref = BatchRef.from_dict(json.loads(sys.argv[1]))
    run = RunInfo(dag_id="zoho_books_payment_reminders", run_id="run-killed", map_index=ref.batch,
                  try_number=int(sys.argv[2]))
    ledger = SendLedger.from_connection()
    sender = BatchSender(WhatsAppHook(timeout=60), ledger, load_templates(), run, messages_per_second=100,
                         max_workers=int(sys.argv[3]), pair_interval=0.0)
    print("starting", flush=True)
    print(json.dumps(sender.send(ref).as_dict()), flush=True)


if __name__ == "__main__":
    main()
