"""How a reminder run spends WhatsApp's cap: batch planning, pacing, and the order within a batch.

`make bench` measures the figures; these tests pin the design that produces them, fast.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict

from zoho_whatsapp.ledger import RunInfo, SendKey
from zoho_whatsapp.reminder_run import plan_batches
from zoho_whatsapp.rules.reminders import overdue_record
from zoho_whatsapp.rules.templates import load_templates
from zoho_whatsapp.whatsapp.batch import BatchRef, BatchSender
from zoho_whatsapp.whatsapp.hook import WhatsAppHook
from zoho_whatsapp.whatsapp.rate_limit import JITTER_SECONDS, RateLimiter

ORG, KIND, DAY = "600700", "payment_reminder", "2031-02-01"


def record(ledger, customers: list[int]) -> dict:
    """One overdue invoice per entry of ``customers`` (a customer number may repeat)."""
    invoices = [
        overdue_record(
            {"invoice_id": str(982_300_000_000 + i), "invoice_number": f"INV-T{i:05d}", "customer_id": f"c{c}",
             "customer_name": f"Test Traders {c}", "status": "overdue", "due_date": "2031-01-01",
             "currency_code": "INR", "total": 1000.0, "balance": 1000.0},
            (f"98{c:08d}",), "IN",
        )
        for i, c in enumerate(customers)
    ]
    ledger.record_fetched(SendKey(ORG, KIND, DAY), invoices, RunInfo(run_id="r"))
    return {"organization_id": ORG, "occasion": DAY, "country_code": "IN", "overdue_invoices": len(invoices)}


def test_batches_come_in_whole_waves_of_equal_size_and_keep_a_customer_together(sqlite_ledger) -> None:
    customers = [c for c in range(300) for _ in range(1 + c % 4)]  # 300 customers with 1 to 4 invoices: 750
    fetched = record(sqlite_ledger, customers)
    refs = plan_batches(fetched, params={"batch_size": 50, "min_days_between_reminders": 0}, max_batches=1000,
                        max_parallel=4)
    # One message per customer: 300 messages, at most 50 a batch: two whole waves of four batches
    assert len(refs) == 8 and sum(r["messages"] for r in refs) == 300
    assert {r["parallel_share"] for r in refs} == {4}  # each takes a quarter of the rate, whatever else runs
    rows = sqlite_ledger.rows(status=("planned",))
    assert len(rows) == 750
    leads = [r for r in rows if r["message_id"] == r["id"]]
    sizes = Counter(r["batch"] for r in leads)
    assert sum(sizes.values()) == 300 and max(sizes.values()) - min(sizes.values()) <= 1
    batches_of: dict[str, set[int]] = defaultdict(set)
    for r in rows:
        batches_of[r["recipient"]].add(r["batch"])
    assert all(len(b) == 1 for b in batches_of.values())  # a message's invoices travel in its batch
    assert Counter(r["recipient"] for r in leads).most_common(1)[0][1] == 1  # one message per customer


def test_a_customer_with_many_invoices_gets_one_message_not_a_pair_rate_tail(sandbox, sqlite_ledger) -> None:
    fetched = record(sqlite_ledger, [0] * 4 + list(range(1, 61)))
    [ref] = plan_batches(fetched, params={"batch_size": 1000, "min_days_between_reminders": 0}, max_batches=1000,
                         max_parallel=1)
    run = RunInfo(dag_id="d", run_id="r", map_index=0, try_number=1)
    result = BatchSender(WhatsAppHook(), sqlite_ledger, load_templates(), run, messages_per_second=50, max_workers=4,
                         pair_interval=0.2).send(BatchRef.from_dict(ref))
    assert result.counts["sent"] == 61
    received = sandbox.messages()
    [theirs] = [m for m in received if m["to"] == "+919800000000"]
    assert theirs["parameters"]["invoice_count"] == "4"  # its four invoices in one message: no 6 s spacing
    assert len({m["to"] for m in received}) == len(received) == 61


def peak_per_second(arrivals: list[float]) -> int:
    arrivals = sorted(arrivals)
    best, lo = 0, 0
    for hi, t in enumerate(arrivals):
        while arrivals[lo] <= t - 1.0:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def arrivals(limiters: list[RateLimiter], late: float, seed: int) -> list[float]:
    """Slot times of each limiter's first 300 sends, each arriving up to ``late`` seconds after its slot."""
    rng = random.Random(seed)
    out = []
    for limiter in limiters:
        start = rng.random() * limiter.interval
        out += [start + k * limiter.interval + (late if rng.random() < 0.3 else 0.0) for k in range(300)]
    return out


def test_four_paced_batches_stay_under_the_cap_even_when_requests_arrive_late() -> None:
    cap, parallel = 80, 4
    late = JITTER_SECONDS * 0.999  # up to the tolerance (at exactly it, two sends may land exactly 1 s apart)
    for seed in range(30):
        paced = [RateLimiter(cap / parallel) for _ in range(parallel)]
        assert peak_per_second(arrivals(paced, late, seed)) <= cap
    # Spaced exactly 1/rate apart, the same lateness tips a sliding second over the cap (Meta: 130429).
    exact = [RateLimiter(cap / parallel, jitter=0.0) for _ in range(parallel)]
    assert max(peak_per_second(arrivals(exact, late, seed)) for seed in range(30)) > cap
