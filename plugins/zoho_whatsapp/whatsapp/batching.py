"""How planned messages are cut into batches and ordered within one. Pure functions: no I/O.

Meta allows one message per 6 seconds to the same recipient (its pair rate) and a number's
throughput per second across all of them; these rules spend both as well as they can.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = ["assign_batches", "batch_size_for", "pair_rate_order"]


def batch_size_for(planned: int, batch_size: int, max_batches: int, max_parallel: int) -> int:
    """Messages per batch so that the batches fill whole waves of ``max_parallel`` equal batches.

    ``batch_size`` is the most a batch should hold; it is raised only when ``max_batches`` mapped
    tasks could not carry ``planned`` messages otherwise.

    >>> batch_size_for(5000, 1000, 1000, 4)  # 5 batches' worth -> 2 waves of 4 batches of 625
    625
    """
    if planned <= 0:
        return max(1, batch_size)
    parallel = max(1, max_parallel)
    waves = math.ceil(planned / (max(1, batch_size) * parallel))
    batches = waves * parallel
    if batches > max_batches:
        batches = max(parallel, max_batches - max_batches % parallel)
    return max(1, math.ceil(planned / batches))


def assign_batches(planned: Iterable[tuple[int, str | None]], batch_size: int) -> dict[int, int]:
    """Number the batches of planned rows ``(row id, recipient)``, one recipient's rows in one batch.

    Returns ``{row id: batch}``. A recipient may get several messages (one per invoice); keeping
    them together lets one sender space them out by the pair rate. ``ceil(planned / batch_size)``
    batches of (nearly) equal size are filled with the recipients that have most messages first:
    their spacing sets how long a batch lasts, so they share as few batches as possible and the
    other batches run at full rate.

    >>> assign_batches([(1, "+91a"), (2, "+91b"), (3, "+91a"), (4, "+91c")], 2)
    {1: 0, 3: 0, 2: 1, 4: 1}
    """
    groups: dict[str, list[int]] = {}
    for row_id, recipient in sorted(planned):
        groups.setdefault(recipient or "", []).append(row_id)
    remaining = sum(len(ids) for ids in groups.values())
    count = max(1, math.ceil(remaining / max(1, batch_size)))
    target = math.ceil(remaining / count)
    batches: dict[int, int] = {}
    batch, in_batch = 0, 0
    for ids in sorted(groups.values(), key=lambda ids: (-len(ids), ids[0])):
        if in_batch >= target and batch < count - 1:
            remaining -= in_batch
            batch, in_batch = batch + 1, 0
            target = math.ceil(remaining / (count - batch))  # share what is left evenly
        batches.update((row_id, batch) for row_id in ids)
        in_batch += len(ids)
    return batches


def pair_rate_order(rows: Sequence[Mapping[str, Any]], interval: float, pair_interval: float) -> list[Mapping[str, Any]]:
    """The send order in which Meta's pair rate (one message per recipient per 6 s) costs least.

    A recipient with k messages needs at least ``(k - 1) * pair_interval`` seconds, so the batch
    can end no sooner than its longest chain; the chain only stays that short if it starts at
    once and every later message goes out as soon as its spacing allows. This walks the batch's
    own clock, one send slot every ``interval`` seconds: at each slot the recipient allowed to
    send with the most messages left goes first, others fill the gaps. With one message per
    recipient it is plain row order.
    """
    queues: dict[str, deque[Mapping[str, Any]]] = {}
    for row in sorted(rows, key=lambda r: r["id"]):
        queues.setdefault(str(row.get("recipient") or ""), deque()).append(row)
    ready = [(-len(q), q[0]["id"], recipient) for recipient, q in queues.items()]
    heapq.heapify(ready)
    waiting: list[tuple[float, int, str]] = []  # (may send again at, next row id, recipient)
    clock = 0.0
    order: list[Mapping[str, Any]] = []
    while ready or waiting:
        while waiting and waiting[0][0] <= clock:
            _, _, recipient = heapq.heappop(waiting)
            left = queues[recipient]
            heapq.heappush(ready, (-len(left), left[0]["id"], recipient))
        if not ready:
            clock = waiting[0][0]
            continue
        _, _, recipient = heapq.heappop(ready)
        left = queues[recipient]
        order.append(left.popleft())
        if left:
            heapq.heappush(waiting, (clock + pair_interval, left[0]["id"], recipient))
        clock += interval
    return order
